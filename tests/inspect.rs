//! A group seen and changed from outside, on the memory adapter: lag and owners as a member
//! leaves them, resets (refused while live, dry runs change nothing), bulk letter work.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use ringbus::adapter::memory::MemoryAdapter;
use ringbus::bus::Bus;
use ringbus::config::BusConfig;
use ringbus::consume::filter::Filter;
use ringbus::consume::start::StartAt;
use ringbus::error::Code;
use ringbus::event::Incoming;
use ringbus::group::letters::{Bulk, Selection};
use ringbus::group::GroupOptions;

fn bus(shards: u32) -> Bus {
  let config = BusConfig {
    shards,
    ..BusConfig::default()
  };
  let adapter = Arc::new(MemoryAdapter::new(1 << 20, 1 << 30));
  Bus::start_with_adapter(config, adapter, tokio::runtime::Handle::current()).unwrap()
}

fn opts(group: &str, member: &str) -> GroupOptions {
  GroupOptions {
    member: member.to_string(),
    lease: Duration::from_millis(1000),
    ack_wait: Duration::from_millis(200),
    max_deliveries: 1,
    ..GroupOptions::new(group)
  }
}

async fn produce(bus: &Bus, from: usize, n: usize) {
  for i in from..from + n {
    let key = format!("k{}", i % 8);
    let body = format!(r#"{{"n":{i},"odd":{}}}"#, i % 2 == 1);
    bus
      .ingest(Incoming::json(Bytes::from(body), Some(key.into())).unwrap())
      .unwrap();
  }
  bus.flush().await.unwrap();
}

/// Takes and acks `n` events.
async fn ack_n(m: &ringbus::group::member::Member, n: usize) {
  let mut done = 0;
  while done < n {
    for d in m.next_batch((n - done).min(64), false).await {
      assert!(m.ack(d.event.shard, &d.event.id));
      done += 1;
    }
  }
}

/// Waits until the group's committed lag is `lag` (commits are written in the background).
async fn until_lag(bus: &Bus, group: &str, lag: u64) {
  let deadline = std::time::Instant::now() + Duration::from_secs(10);
  loop {
    let v = bus.group_view(group).await.unwrap();
    if v.lag == lag {
      return;
    }
    assert!(
      std::time::Instant::now() < deadline,
      "lag stays {}: {v:?}",
      v.lag
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_shows_its_owner_lag_and_members_and_resets_only_when_idle() {
  let bus = bus(2);
  produce(&bus, 0, 100).await;
  let m = bus.consumer(opts("billing", "m1")).await.unwrap();
  ack_n(&m, 60).await;
  until_lag(&bus, "billing", 40).await;

  assert_eq!(bus.group_names().await.unwrap(), ["billing"]);
  let v = bus.group_view("billing").await.unwrap();
  assert_eq!(v.members.len(), 1);
  assert_eq!(v.members[0].name, "m1");
  assert!(v.shards.iter().all(|s| s.owner.as_deref() == Some("m1")));
  assert_eq!(v.lag, 40, "{v:?}");
  assert_eq!(v.shards.iter().map(|s| s.lag).sum::<u64>(), 40);
  assert!(v.lag_age_ms.is_some());
  assert_eq!(v.dead_letters, 0);

  // Live: refused, naming the member; nothing changes.
  let e = bus
    .reset_group("billing", &StartAt::Earliest, true)
    .await
    .unwrap_err();
  assert_eq!(e.code, Code::InvalidConfig);
  assert!(e.message.contains("m1"), "{}", e.message);

  m.close().await;
  let v = bus.group_view("billing").await.unwrap();
  assert!(v.members.is_empty());
  assert!(v.shards.iter().all(|s| s.owner.is_none()));
  assert_eq!(v.lag, 40);

  // A dry run says what would move and changes nothing.
  let plan = bus
    .reset_group("billing", &StartAt::Earliest, true)
    .await
    .unwrap();
  assert_eq!(plan.iter().map(|s| s.lag_before).sum::<u64>(), 40);
  assert_eq!(plan.iter().map(|s| s.lag_after).sum::<u64>(), 100);
  assert_eq!(bus.group_view("billing").await.unwrap().lag, 40);

  bus
    .reset_group("billing", &StartAt::Earliest, false)
    .await
    .unwrap();
  assert_eq!(bus.group_view("billing").await.unwrap().lag, 100);
  let m = bus.consumer(opts("billing", "m2")).await.unwrap();
  ack_n(&m, 100).await;
  m.close().await;
  assert_eq!(
    bus.group_view("billing").await.unwrap().lag,
    0,
    "close commits"
  );

  bus
    .reset_group("billing", &StartAt::Latest, false)
    .await
    .unwrap();
  produce(&bus, 100, 5).await;
  assert_eq!(bus.group_view("billing").await.unwrap().lag, 5);

  let e = bus.group_view("nope").await.unwrap_err();
  assert_eq!(e.code, Code::InvalidConfig);
  assert!(e.message.contains("no consumer group"), "{}", e.message);
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_redrive_and_purge_act_on_exactly_the_selected_letters() {
  let bus = bus(1);
  produce(&bus, 0, 10).await;
  let m = bus.consumer(opts("dl", "a")).await.unwrap();
  // Take all ten and let them lapse: maxDeliveries 1 makes each a dead letter.
  let mut taken = 0;
  while taken < 10 {
    taken += m.next_batch(10, false).await.len();
  }
  let deadline = std::time::Instant::now() + Duration::from_secs(10);
  while bus.group_view("dl").await.unwrap().dead_letters < 10 {
    assert!(std::time::Instant::now() < deadline);
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
  let odd = Selection {
    filter: Some(Filter::parse(&serde_json::json!({ "odd": true })).unwrap()),
    ..Selection::default()
  };
  assert_eq!(
    bus
      .dead_letters_bulk("dl", &odd, Bulk::Redeliver, true)
      .await
      .unwrap(),
    5
  );
  assert_eq!(bus.group_view("dl").await.unwrap().dead_letters, 10);
  let two = Selection {
    limit: Some(2),
    ..odd
  };
  assert_eq!(
    bus
      .dead_letters_bulk("dl", &two, Bulk::Redeliver, false)
      .await
      .unwrap(),
    2
  );
  let back = m.next_batch(10, false).await;
  let mut ns: Vec<u64> = back
    .iter()
    .map(|d| {
      serde_json::from_slice::<serde_json::Value>(&d.event.payload).unwrap()["n"]
        .as_u64()
        .unwrap()
    })
    .collect();
  ns.sort();
  assert_eq!(ns, [1, 3], "the two oldest odd letters");
  for d in &back {
    assert!(m.ack(d.event.shard, &d.event.id));
  }
  let first = bus.dead_letters("dl", None, 1, None).await.unwrap().letters[0]
    .id
    .clone();
  let by_id = Selection {
    ids: Some([first, "0-0".to_string()].into_iter().collect()),
    ..Selection::default()
  };
  assert_eq!(
    bus
      .dead_letters_bulk("dl", &by_id, Bulk::Purge, false)
      .await
      .unwrap(),
    1
  );
  assert_eq!(bus.group_view("dl").await.unwrap().dead_letters, 7);
  assert_eq!(
    bus
      .dead_letters_bulk("dl", &Selection::default(), Bulk::Purge, true)
      .await
      .unwrap(),
    7
  );
  assert_eq!(
    bus
      .dead_letters_bulk("dl", &Selection::default(), Bulk::Purge, false)
      .await
      .unwrap(),
    7
  );
  assert_eq!(bus.group_view("dl").await.unwrap().dead_letters, 0);
  m.close().await;
  bus.shutdown().await;
}

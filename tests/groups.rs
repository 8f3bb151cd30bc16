//! Consumer groups on the memory adapter: shard ownership and hand-over, acks, redelivery,
//! dead letters, and `process()` ordering under failures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use ringbus::adapter::memory::MemoryAdapter;
use ringbus::bus::Bus;
use ringbus::config::BusConfig;
use ringbus::event::Incoming;
use ringbus::group::member::{Delivery, Member};
use ringbus::group::worker::{Worker, WorkerOptions};
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
    ..GroupOptions::new(group)
  }
}

/// Ingests `n` events over `keys` keys: `{"k": key, "n": i}` with key `k<i % keys>`.
async fn produce(bus: &Bus, from: usize, n: usize, keys: usize) {
  for i in from..from + n {
    let key = format!("k{}", i % keys);
    let body = format!(r#"{{"k":"{key}","n":{i}}}"#);
    bus
      .ingest(Incoming::json(Bytes::from(body), Some(key.into())).unwrap())
      .unwrap();
  }
  bus.flush().await.unwrap();
}

fn number(d: &Delivery) -> u64 {
  let v: serde_json::Value = serde_json::from_slice(&d.event.payload).unwrap();
  v["n"].as_u64().unwrap()
}

/// Takes and acks events until `stop` says so; returns (key, n) in delivery order.
async fn drain(member: Member, until: impl Fn() -> bool) -> Vec<(String, u64)> {
  let mut seen = Vec::new();
  let deadline = Instant::now() + Duration::from_secs(30);
  while !until() && Instant::now() < deadline {
    let batch = tokio::select! {
      b = member.next_batch(64, false) => b,
      _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
    };
    for d in batch {
      seen.push((d.event.key.as_deref().unwrap().to_string(), number(&d)));
      assert!(member.ack(d.event.shard, &d.event.id));
    }
  }
  seen
}

fn assert_key_order(seen: &[(String, u64)]) {
  let mut last: HashMap<&str, u64> = HashMap::new();
  for (k, n) in seen {
    if let Some(prev) = last.insert(k, *n) {
      assert!(prev < *n, "key {k}: {n} after {prev}");
    }
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_the_shards_and_see_every_event_once() {
  let bus = bus(4);
  produce(&bus, 0, 2000, 40).await;
  let a = bus.consumer(opts("g", "a")).await.unwrap();
  let b = bus.consumer(opts("g", "b")).await.unwrap();
  let total = Arc::new(Mutex::new(0usize));
  let count = |t: &Arc<Mutex<usize>>, goal: usize| {
    let t = t.clone();
    move || *t.lock() >= goal
  };
  // Each drains until the pair has everything; a second wave arrives after the split.
  let run = |m: Member| {
    let total = total.clone();
    let done = count(&total, 4000);
    tokio::spawn(async move {
      let mut seen = Vec::new();
      let deadline = Instant::now() + Duration::from_secs(30);
      while !done() && Instant::now() < deadline {
        let batch = tokio::select! {
          b = m.next_batch(32, false) => b,
          _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
        };
        *total.lock() += batch.len();
        for d in batch {
          seen.push((d.event.key.as_deref().unwrap().to_string(), number(&d)));
          m.ack(d.event.shard, &d.event.id);
        }
      }
      seen
    })
  };
  let (ha, hb) = (run(a.clone()), run(b.clone()));
  // Wait for the split, then write more.
  let deadline = Instant::now() + Duration::from_secs(10);
  while !(a.stats().shards.len() == 2 && b.stats().shards.len() == 2) {
    assert!(
      Instant::now() < deadline,
      "no split: {:?} {:?}",
      a.stats(),
      b.stats()
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
  produce(&bus, 2000, 2000, 40).await;
  let (sa, sb) = (ha.await.unwrap(), hb.await.unwrap());
  assert_key_order(&sa);
  assert_key_order(&sb);
  let mut all: Vec<u64> = sa.iter().chain(sb.iter()).map(|(_, n)| *n).collect();
  all.sort();
  assert_eq!(
    all,
    (0..4000).collect::<Vec<u64>>(),
    "every event exactly once"
  );
  assert!(!sa.is_empty() && !sb.is_empty());
  let (st_a, st_b) = (a.stats(), b.stats());
  assert_eq!(st_a.acked + st_b.acked, 4000);
  assert_eq!(st_a.redelivered + st_b.redelivered, 0);
  // The shards a member owns are disjoint from the other's.
  let sa_shards: HashSet<u32> = st_a.shards.iter().copied().collect();
  assert!(st_b.shards.iter().all(|s| !sa_shards.contains(s)));
  a.close().await;
  b.close().await;
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_member_gets_nothing_already_acked_and_closing_hands_over() {
  let bus = bus(2);
  produce(&bus, 0, 500, 10).await;
  let a = bus.consumer(opts("g", "a")).await.unwrap();
  let seen = drain(a.clone(), {
    let a = a.clone();
    move || a.stats().acked >= 500
  })
  .await;
  assert_eq!(seen.len(), 500);
  // Deliver 100 more to `a` without acking them, then close it: they go to `b`.
  produce(&bus, 500, 100, 10).await;
  let mut held = Vec::new();
  while held.len() < 100 {
    held.extend(a.next_batch(100 - held.len(), false).await);
  }
  a.close().await;
  a.close().await; // idempotent
  let b = bus.consumer(opts("g", "b")).await.unwrap();
  let got = drain(b.clone(), {
    let b = b.clone();
    move || b.stats().acked >= 100
  })
  .await;
  let mut ns: Vec<u64> = got.iter().map(|(_, n)| *n).collect();
  ns.sort();
  assert_eq!(ns, (500..600).collect::<Vec<u64>>());
  assert_key_order(&got);
  // The old member's acks are gone with it.
  assert!(!a.ack(held[0].event.shard, &held[0].event.id));
  b.close().await;
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_events_come_back_and_end_as_dead_letters() {
  let bus = bus(1);
  produce(&bus, 0, 3, 3).await;
  let o = GroupOptions {
    ack_wait: Duration::from_millis(200),
    max_deliveries: 2,
    ..opts("dl", "a")
  };
  let m = bus.consumer(o).await.unwrap();
  let first = m.next_batch(10, false).await;
  assert_eq!(first.len(), 3);
  assert!(first.iter().all(|d| d.deliveries == 1));
  // Ack #0, nack #1 for 50 ms, leave #2 to its deadline.
  assert!(m.ack(0, &first[0].event.id));
  assert!(!m.ack(0, &first[0].event.id), "a second ack is refused");
  assert!(m.nack(0, &first[1].event.id, Duration::from_millis(50)));
  let t0 = Instant::now();
  let again = m.next_batch(10, false).await;
  assert_eq!(again.len(), 1);
  assert_eq!(number(&again[0]), 1);
  assert_eq!(again[0].deliveries, 2);
  assert!(t0.elapsed() >= Duration::from_millis(40));
  let late = m.next_batch(10, false).await;
  assert_eq!((number(&late[0]), late[0].deliveries), (2, 2));
  // Both now reach maxDeliveries without an ack: dead letters, in order.
  let deadline = Instant::now() + Duration::from_secs(5);
  loop {
    let page = bus.dead_letters("dl", None, 10, None).await.unwrap();
    if page.letters.len() == 2 {
      let ns: Vec<u64> = page
        .letters
        .iter()
        .map(|l| {
          let v: serde_json::Value = serde_json::from_slice(&l.event.payload).unwrap();
          v["n"].as_u64().unwrap()
        })
        .collect();
      assert_eq!(ns, vec![1, 2]);
      assert!(page.letters.iter().all(|l| l.deliveries == 2));
      assert!(page.letters[0]
        .reason
        .contains("not acked within ackWaitMs (200 ms)"));
      // Redeliver one: delivered again, acked, gone from the letters.
      let moved = bus
        .redeliver("dl", &[page.letters[1].id.clone(), "nope".into()])
        .await
        .unwrap();
      assert_eq!(moved, 1);
      break;
    }
    assert!(Instant::now() < deadline, "{:?}", m.stats());
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
  let back = m.next_batch(10, false).await;
  assert_eq!(back.len(), 1);
  assert_eq!((number(&back[0]), back[0].deliveries), (2, 1));
  assert!(m.ack(0, &back[0].event.id));
  let s = m.stats();
  assert_eq!(
    (s.dead_lettered, s.acked, s.nacked, s.in_flight),
    (2, 2, 1, 0)
  );
  let page = bus.dead_letters("dl", None, 10, None).await.unwrap();
  assert_eq!(page.letters.len(), 1);
  m.close().await;
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_from_latest_starts_at_the_end_and_then_continues() {
  let bus = bus(3);
  produce(&bus, 0, 300, 30).await;
  let o = GroupOptions {
    from: ringbus::consume::start::StartAt::Latest,
    ..opts("late", "a")
  };
  let m = bus.consumer(o.clone()).await.unwrap();
  produce(&bus, 300, 30, 30).await;
  let got = drain(m.clone(), {
    let m = m.clone();
    move || m.stats().acked >= 30
  })
  .await;
  let mut ns: Vec<u64> = got.iter().map(|(_, n)| *n).collect();
  ns.sort();
  assert_eq!(ns, (300..330).collect::<Vec<u64>>());
  assert_eq!(m.stats().lag, 0);
  m.close().await;
  // The group exists now: `from` no longer matters, it continues where it was.
  produce(&bus, 330, 10, 30).await;
  let m2 = bus.consumer(o).await.unwrap();
  let got = drain(m2.clone(), {
    let m2 = m2.clone();
    move || m2.stats().acked >= 10
  })
  .await;
  assert_eq!(got.len(), 10);
  assert!(got.iter().all(|(_, n)| *n >= 330));
  m2.close().await;
  bus.shutdown().await;
}

/// Drives a worker as the JS side does: takes runnable events and settles each from a task.
async fn drive(
  w: Worker,
  fails: Arc<dyn Fn(u64, u32) -> bool + Send + Sync>,
) -> Vec<(String, u64)> {
  let handled = Arc::new(Mutex::new(Vec::new()));
  loop {
    let taken = w.next_runnable().await;
    if taken.deliveries.is_empty() {
      break;
    }
    for (i, d) in taken.deliveries.into_iter().enumerate() {
      let token = taken.first.wrapping_add(i as u32);
      let (w, handled, fails) = (w.clone(), handled.clone(), fails.clone());
      tokio::spawn(async move {
        let n = number(&d);
        tokio::time::sleep(Duration::from_micros(200 * (n % 3))).await;
        if fails(n, d.deliveries) {
          w.settle(token, Some(format!("boom {n}")), None);
        } else {
          handled
            .lock()
            .push((d.event.key.as_deref().unwrap().to_string(), n));
          // Successes go back in batches from JS; one at a time is a batch of one.
          w.settle_all(&[token]);
        }
      });
    }
  }
  let out = handled.lock().clone();
  out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_retries_failures_before_the_key_moves_on() {
  let bus = bus(2);
  produce(&bus, 0, 600, 12).await;
  let o = GroupOptions {
    max_deliveries: 3,
    ..opts("work", "w1")
  };
  let wopts = WorkerOptions {
    concurrency: 8,
    backoff: Duration::from_millis(5),
  };
  let w = bus.process(o, wopts).unwrap();
  // Every 7th event fails once, every 10th twice; #99 always (poison).
  let fails: Arc<dyn Fn(u64, u32) -> bool + Send + Sync> = Arc::new(|n, deliveries| {
    n == 99 || (n % 7 == 0 && deliveries < 2) || (n % 10 == 0 && deliveries < 3)
  });
  let driver = tokio::spawn(drive(w.clone(), fails));
  let deadline = Instant::now() + Duration::from_secs(30);
  while w.stats().handled < 599 {
    assert!(Instant::now() < deadline, "{:?}", w.stats());
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
  w.close().await;
  let handled = driver.await.unwrap();
  // The successful handlings per key are exactly the ingest order, poison excepted.
  let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
  for (k, n) in &handled {
    per_key.entry(k.clone()).or_default().push(*n);
  }
  for (k, ns) in &per_key {
    let kn: u64 = k[1..].parse().unwrap();
    let expected: Vec<u64> = (0..600u64).filter(|n| n % 12 == kn && *n != 99).collect();
    assert_eq!(ns, &expected, "key {k}");
  }
  let s = w.stats();
  assert_eq!(s.handled, 599);
  assert_eq!(s.member.dead_lettered, 1);
  let page = bus.dead_letters("work", None, 10, None).await.unwrap();
  assert_eq!(page.letters.len(), 1);
  assert_eq!(page.letters[0].deliveries, 3);
  assert!(
    page.letters[0].reason.ends_with("last error: boom 99"),
    "{}",
    page.letters[0].reason
  );
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_members_and_commits_their_acks() {
  let bus = bus(2);
  produce(&bus, 0, 100, 10).await;
  let a = bus.consumer(opts("s", "a")).await.unwrap();
  let got = drain(a.clone(), {
    let a = a.clone();
    move || a.stats().acked >= 100
  })
  .await;
  assert_eq!(got.len(), 100);
  bus.shutdown().await;
  assert!(a.next_batch(10, false).await.is_empty());
  assert!(bus.consumer(opts("s", "b")).await.is_err());
}

// Counts scans through a test hook: `npm test` builds the engine tests with `test-hooks`.
#[cfg(feature = "test-hooks")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacks_do_not_each_scan_every_deadline() {
  // Each nack once woke a scan of every held event under the lock (75,000 nacks blocked
  // the JS thread for seconds to minutes). Now a scan runs when a deadline has passed, at
  // most one per 5 ms.
  let n = 20_000;
  let bus = bus(1);
  produce(&bus, 0, n, 50).await;
  let m = bus
    .consumer(GroupOptions {
      max_in_flight: n + 1000,
      ack_wait: Duration::from_secs(600),
      ..opts("nacks", "a")
    })
    .await
    .unwrap();
  let mut held = Vec::new();
  while held.len() < n {
    held.extend(m.next_batch(1000, false).await);
  }
  let (before, started) = (m.deadline_scans(), Instant::now());
  for d in &held {
    assert!(m.nack(d.event.shard, &d.event.id, Duration::from_millis(200)));
  }
  let (scans, elapsed) = (m.deadline_scans() - before, started.elapsed());
  assert!(
    scans as u128 <= elapsed.as_millis() / 5 + 2,
    "{scans} deadline scans while {n} nacks took {elapsed:?}"
  );
  // Every nacked event still comes back, once, as a second delivery.
  let mut again = HashSet::new();
  let deadline = Instant::now() + Duration::from_secs(30);
  while again.len() < n && Instant::now() < deadline {
    for d in m.next_batch(1000, false).await {
      assert_eq!(d.deliveries, 2);
      again.insert(number(&d));
      m.ack(d.event.shard, &d.event.id);
    }
  }
  assert_eq!(again.len(), n);
  m.close().await;
  bus.shutdown().await;
}

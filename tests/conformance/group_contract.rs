//! The `GroupStore` contract: live members ranked by name with expiry, leases with one
//! holder, commits only by the holder, the first start record, letters paged and taken.

use std::time::Duration;

use bytes::Bytes;
use ringbus::adapter::group_store::{Letter, Tray};
use ringbus::event::{PayloadKind, Stamp, StoredEvent};

use crate::backends::Store;

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(300);
/// Longer than SHORT on any clock the stores use (server time on Redis).
const PAST_SHORT: Duration = Duration::from_millis(1200);

pub async fn members_are_ranked_by_name_and_expire(s: &Store) {
  let g = s.groups();
  for m in ["carol", "alice", "bob"] {
    g.heartbeat("g", m, LONG).await.unwrap();
  }
  assert_eq!(g.members("g").await.unwrap(), ["alice", "bob", "carol"]);
  assert_eq!(g.rank("g", "alice").await.unwrap(), Some((0, 3)));
  assert_eq!(g.rank("g", "carol").await.unwrap(), Some((2, 3)));
  assert_eq!(g.rank("g", "dave").await.unwrap(), None);
  assert!(
    g.members("other").await.unwrap().is_empty(),
    "groups are apart"
  );
  // A renewal changes nothing visible; leaving and expiring take the member out.
  g.heartbeat("g", "bob", LONG).await.unwrap();
  assert_eq!(g.rank("g", "bob").await.unwrap(), Some((1, 3)));
  g.leave("g", "bob").await.unwrap();
  assert_eq!(g.rank("g", "carol").await.unwrap(), Some((1, 2)));
  g.heartbeat("g", "dave", SHORT).await.unwrap();
  assert_eq!(g.rank("g", "dave").await.unwrap(), Some((2, 3)));
  tokio::time::sleep(PAST_SHORT).await;
  assert_eq!(g.rank("g", "dave").await.unwrap(), None);
  assert_eq!(g.members("g").await.unwrap(), ["alice", "carol"]);
}

pub async fn a_lease_has_one_holder_until_it_expires_or_is_released(s: &Store) {
  let g = s.groups();
  assert!(g.lease("g", 0, "a", LONG).await.unwrap());
  assert!(!g.lease("g", 0, "b", LONG).await.unwrap(), "held by a");
  assert!(
    g.lease("g", 0, "a", LONG).await.unwrap(),
    "the holder renews"
  );
  g.release("g", 0, "b").await.unwrap();
  assert!(
    !g.lease("g", 0, "b", LONG).await.unwrap(),
    "only the holder releases"
  );
  g.release("g", 0, "a").await.unwrap();
  assert!(g.lease("g", 0, "b", LONG).await.unwrap());
  assert!(
    g.lease("g", 1, "a", SHORT).await.unwrap(),
    "shards are leased apart"
  );
  tokio::time::sleep(PAST_SHORT).await;
  assert!(
    g.lease("g", 1, "b", LONG).await.unwrap(),
    "an expired lease is free"
  );
  assert!(!g.lease("g", 1, "a", LONG).await.unwrap());
}

pub async fn only_the_lease_holder_commits(s: &Store) {
  let g = s.groups();
  assert_eq!(g.committed("g", 3).await.unwrap(), None);
  assert!(g.lease("g", 3, "b", LONG).await.unwrap());
  assert!(!g.commit("g", 3, "a", "v1|by-a||").await.unwrap());
  assert_eq!(g.committed("g", 3).await.unwrap(), None);
  assert!(g.commit("g", 3, "b", "v1|by-b||").await.unwrap());
  assert!(g.commit("g", 3, "b", "v1|by-b-2||").await.unwrap());
  assert_eq!(
    g.committed("g", 3).await.unwrap().as_deref(),
    Some("v1|by-b-2||")
  );
  assert_eq!(g.committed("g", 4).await.unwrap(), None, "per shard");
}

pub async fn the_first_start_record_wins(s: &Store) {
  let g = s.groups();
  // Reading a missing record writes none: the first start still decides.
  assert_eq!(g.start_record("g").await.unwrap(), None);
  assert_eq!(g.start_record("g").await.unwrap(), None);
  assert_eq!(g.start("g", "earliest").await.unwrap(), "earliest");
  assert_eq!(
    g.start_record("g").await.unwrap().as_deref(),
    Some("earliest")
  );
  assert_eq!(g.start("g", "latest x").await.unwrap(), "earliest");
  assert_eq!(g.start("h", "latest y").await.unwrap(), "latest y");
}

fn letter(n: u64) -> Letter {
  let json = n.is_multiple_of(2);
  Letter {
    id: String::new(),
    event: StoredEvent {
      id: format!("ev-{n}"),
      position: n.to_string(),
      shard: (n % 4) as u32,
      seq: n,
      timestamp_ms: 1_700_000_000_000 + n,
      kind: if json {
        PayloadKind::Json
      } else {
        PayloadKind::Bytes
      },
      key: Some(format!("key-{n}").into()),
      payload: if json {
        Bytes::from(format!(r#"{{"n":{n}}}"#))
      } else {
        Bytes::from(vec![0u8, 10, 255, n as u8])
      },
      message_id: format!("00000000000000ab-0-{}-{n}", n % 4),
      stamp: Stamp { epoch: 1, span: 4 },
      headers: None,
    },
    reason: format!("failed {n} times\nwith a newline"),
    deliveries: n as u32 + 1,
    time_ms: 1_700_000_000_500 + n,
    cut: None,
  }
}

pub async fn letters_page_in_order_and_are_taken_by_id(s: &Store) {
  let g = s.groups();
  let sent: Vec<Letter> = (1..=3).map(letter).collect();
  g.put_letters("g", Tray::Dead, &sent).await.unwrap();
  let first = g.letters("g", Tray::Dead, None, 2).await.unwrap();
  assert_eq!(first.letters.len(), 2);
  assert!(first.has_more);
  let rest = g
    .letters("g", Tray::Dead, first.next.as_deref(), 2)
    .await
    .unwrap();
  assert_eq!(rest.letters.len(), 1);
  assert!(!rest.has_more);
  let got: Vec<Letter> = first.letters.into_iter().chain(rest.letters).collect();
  for (back, sent) in got.iter().zip(&sent) {
    assert!(!back.id.is_empty(), "the store gives each letter an id");
    assert_eq!(back.event.id, sent.event.id);
    assert_eq!(back.event.payload, sent.event.payload);
    assert_eq!(back.event.kind, sent.event.kind);
    assert_eq!(back.event.key, sent.event.key);
    assert_eq!(back.event.message_id, sent.event.message_id);
    assert_eq!(back.reason, sent.reason);
    assert_eq!(back.deliveries, sent.deliveries);
    assert_eq!(back.time_ms, sent.time_ms);
  }
  assert!(
    got.windows(2).all(|w| w[0].id < w[1].id),
    "ids sort in stored order"
  );
  assert!(g
    .letters("g", Tray::Returned, None, 10)
    .await
    .unwrap()
    .letters
    .is_empty());
  assert!(g
    .letters("other", Tray::Dead, None, 10)
    .await
    .unwrap()
    .letters
    .is_empty());
  let taken = g
    .take_letters("g", Tray::Dead, &[got[1].id.clone(), "unknown".to_string()])
    .await
    .unwrap();
  assert_eq!(taken.len(), 1);
  assert_eq!(taken[0].event.id, "ev-2");
  let left = g.letters("g", Tray::Dead, None, 10).await.unwrap();
  let ids: Vec<&str> = left.letters.iter().map(|l| l.event.id.as_str()).collect();
  assert_eq!(ids, ["ev-1", "ev-3"]);
  assert!(g
    .take_letters("g", Tray::Dead, &[got[1].id.clone()])
    .await
    .unwrap()
    .is_empty());
}

pub async fn groups_are_seen_from_outside(s: &Store) {
  let g = s.groups();
  assert!(g.group_names().await.unwrap().is_empty());
  g.start("beta", "earliest").await.unwrap();
  g.start("alpha", "earliest").await.unwrap();
  assert_eq!(g.group_names().await.unwrap(), ["alpha", "beta"]);

  let before = ringbus::clock::now_ms();
  g.heartbeat("alpha", "m2", LONG).await.unwrap();
  g.heartbeat("alpha", "m1", SHORT).await.unwrap();
  let seen = g.member_list("alpha").await.unwrap();
  let names: Vec<&str> = seen.iter().map(|m| m.name.as_str()).collect();
  assert_eq!(names, ["m1", "m2"]);
  for m in &seen {
    // Server clocks (Redis) and this one agree within a second here.
    assert!(m.renewed_ms + 1000 >= before, "{m:?}");
    assert!(m.renewed_ms <= ringbus::clock::now_ms() + 1000, "{m:?}");
    assert!(m.expires_ms > m.renewed_ms, "{m:?}");
  }
  assert!(seen[1].expires_ms >= seen[1].renewed_ms + 59_000);
  tokio::time::sleep(PAST_SHORT).await;
  let names: Vec<String> = g
    .member_list("alpha")
    .await
    .unwrap()
    .into_iter()
    .map(|m| m.name)
    .collect();
  assert_eq!(names, ["m2"], "an expired member is not listed");

  assert_eq!(g.lease_holder("alpha", 3).await.unwrap(), None);
  assert!(g.lease("alpha", 3, "m2", LONG).await.unwrap());
  let lease = g.lease_holder("alpha", 3).await.unwrap().unwrap();
  assert_eq!(lease.member, "m2");
  let now = ringbus::clock::now_ms();
  assert!(
    lease.until_ms > now + 55_000 && lease.until_ms < now + 65_000,
    "{lease:?}"
  );
  g.release("alpha", 3, "m2").await.unwrap();
  assert_eq!(g.lease_holder("alpha", 3).await.unwrap(), None);

  assert_eq!(g.count_letters("alpha", Tray::Dead).await.unwrap(), 0);
  let sent: Vec<Letter> = (1..=3).map(letter).collect();
  g.put_letters("alpha", Tray::Dead, &sent).await.unwrap();
  g.put_letters("beta", Tray::Dead, &sent[..1]).await.unwrap();
  assert_eq!(g.count_letters("alpha", Tray::Dead).await.unwrap(), 3);
  assert_eq!(g.count_letters("alpha", Tray::Returned).await.unwrap(), 0);
  let page = g.letters("alpha", Tray::Dead, None, 10).await.unwrap();
  g.take_letters("alpha", Tray::Dead, &[page.letters[0].id.clone()])
    .await
    .unwrap();
  assert_eq!(
    g.count_letters("alpha", Tray::Dead).await.unwrap(),
    2,
    "a removed letter is not counted"
  );
  assert_eq!(g.count_letters("beta", Tray::Dead).await.unwrap(), 1);
}

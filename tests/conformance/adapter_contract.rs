//! The `Adapter` contract: idempotent writes per message id, page reads with positions,
//! end positions, waits that end when data arrives, and cursor checks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringbus::adapter::{Adapter, Outcome, Positions, ReadPage, WriteBatch, WriteResult};
use ringbus::error::Code;
use ringbus::event::{Event, PayloadKind, ProducerId, StoredEvent};

use crate::backends::Store;

fn producer() -> ProducerId {
  ProducerId {
    nonce: ringbus::random::random_u64(),
    generation: 0,
  }
}

fn event(seq: u64) -> Event {
  Event {
    seq,
    timestamp_ms: 1_700_000_000_000 + seq,
    kind: PayloadKind::Json,
    key: Some(format!("k{}", seq % 3).into()),
    payload: Bytes::from(format!(r#"{{"n":{seq}}}"#)),
    stamp: ringbus::event::Stamp { epoch: 0, span: 8 },
    headers: None,
  }
}

/// Writes events `seqs` of `producer` to `shard` and checks every one was stored.
async fn write(a: &dyn Adapter, producer: ProducerId, shard: u32, seqs: std::ops::Range<u64>) {
  write_events(a, producer, shard, seqs.map(event).collect()).await
}

async fn write_events(a: &dyn Adapter, producer: ProducerId, shard: u32, events: Vec<Event>) {
  let result = a
    .write(WriteBatch {
      shard,
      producer,
      events: &events,
    })
    .await
    .unwrap_or_else(|e| panic!("write to shard {shard}: {}", e.message));
  if let WriteResult::PerEvent(outcomes) = result {
    assert!(
      outcomes.iter().all(|o| *o == Outcome::Stored),
      "every event stored: {outcomes:?}"
    );
  }
}

/// Every record of `shard` after `from`, read `page` at a time.
async fn read_all(
  a: &dyn Adapter,
  shard: u32,
  from: Option<String>,
  page: usize,
) -> Vec<StoredEvent> {
  let mut out = Vec::new();
  let mut pos = from;
  for _ in 0..1000 {
    let p: ReadPage = a.read(shard, pos.as_deref(), page).await.unwrap();
    assert!(p.events.len() <= page, "a page holds at most its limit");
    out.extend(p.events);
    if p.next.is_some() {
      pos = p.next;
    }
    if !p.has_more {
      return out;
    }
  }
  panic!("shard {shard} never reached its end");
}

pub async fn writes_read_back_in_order_with_their_positions(s: &Store) {
  let a = s.adapter.as_ref();
  let p = producer();
  write(a, p, 2, 0..10).await;
  let first = a.read(2, None, 4).await.unwrap();
  assert_eq!(first.events.len(), 4);
  assert!(first.has_more);
  assert_eq!(
    first.next.as_deref(),
    Some(first.events[3].position.as_str())
  );
  let all = read_all(a, 2, None, 4).await;
  assert_eq!(all.len(), 10);
  for (i, ev) in all.iter().enumerate() {
    let seq = i as u64;
    assert_eq!(ev.shard, 2);
    assert_eq!(ev.seq, seq);
    assert_eq!(ev.timestamp_ms, 1_700_000_000_000 + seq);
    assert_eq!(ev.kind, PayloadKind::Json);
    assert_eq!(ev.key.as_deref(), Some(format!("k{}", seq % 3).as_str()));
    assert_eq!(&ev.payload[..], format!(r#"{{"n":{seq}}}"#).as_bytes());
    assert_eq!(ev.message_id, p.message_id(2, seq).to_string());
  }
  // Reading from a record's position continues right after it.
  let rest = read_all(a, 2, Some(all[6].position.clone()), 100).await;
  assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), [7, 8, 9]);
  // Past the end, and on a shard never written: nothing, and no more.
  let end = a.read(2, Some(&all[9].position), 10).await.unwrap();
  assert!(end.events.is_empty() && !end.has_more);
  assert!(read_all(a, 3, None, 10).await.is_empty());
}

pub async fn a_retried_write_is_stored_once(s: &Store) {
  let a = s.adapter.as_ref();
  let p = producer();
  write(a, p, 1, 0..10).await;
  write(a, p, 1, 0..10).await;
  write(a, p, 1, 5..15).await;
  let seqs: Vec<u64> = read_all(a, 1, None, 64)
    .await
    .iter()
    .map(|e| e.seq)
    .collect();
  assert_eq!(seqs, (0..15).collect::<Vec<_>>());
  // Another producer's events with the same sequences are different events.
  write(a, producer(), 1, 0..2).await;
  assert_eq!(read_all(a, 1, None, 64).await.len(), 17);
}

pub async fn end_positions_mark_the_end_of_each_shard(s: &Store) {
  let a = s.adapter.as_ref();
  let p = producer();
  write(a, p, 0, 0..3).await;
  let ends: Positions = a.end_positions(&[0]).await.unwrap();
  let end = ends.get(&0).cloned();
  assert!(end.is_some(), "a written shard has an end position");
  assert!(read_all(a, 0, end.clone(), 10).await.is_empty());
  write(a, p, 0, 3..5).await;
  let after: Vec<u64> = read_all(a, 0, end, 10)
    .await
    .iter()
    .map(|e| e.seq)
    .collect();
  assert_eq!(after, [3, 4]);
}

pub async fn a_wait_ends_when_data_arrives(s: &Store) {
  let a = s.adapter.clone();
  let p = producer();
  write(a.as_ref(), p, 4, 0..1).await;
  let at: Positions = a.end_positions(&[4]).await.unwrap();
  let writer = {
    let a: Arc<dyn Adapter> = a.clone();
    tokio::spawn(async move {
      tokio::time::sleep(Duration::from_millis(300)).await;
      write(a.as_ref(), p, 4, 1..2).await;
    })
  };
  // Far longer than the write takes: a wait that only ended by its bound fails this.
  let bound = Duration::from_secs(30);
  let started = Instant::now();
  let mut woke = false;
  while started.elapsed() < Duration::from_secs(10) {
    a.wait_for_data(&[4], &at, bound).await;
    if !read_all(a.as_ref(), 4, at.get(&4).cloned(), 10)
      .await
      .is_empty()
    {
      woke = true;
      break;
    }
  }
  writer.await.unwrap();
  assert!(
    woke,
    "the wait did not end within 10 s of a write (bound {} s)",
    bound.as_secs()
  );
}

pub async fn a_wait_without_data_ends_by_its_bound(s: &Store) {
  let a = s.adapter.as_ref();
  write(a, producer(), 6, 0..1).await;
  let at = a.end_positions(&[6]).await.unwrap();
  let waited = tokio::time::timeout(
    Duration::from_secs(10),
    a.wait_for_data(&[6], &at, Duration::from_millis(300)),
  )
  .await;
  assert!(
    waited.is_ok(),
    "a wait of 300 ms was still pending after 10 s"
  );
  assert!(read_all(a, 6, at.get(&6).cloned(), 10).await.is_empty());
}

pub async fn a_position_from_elsewhere_is_an_invalid_cursor(s: &Store) {
  let a = s.adapter.as_ref();
  write(a, producer(), 0, 0..1).await;
  for bad in [
    "not-a-position",
    "18446744073709551615-18446744073709551615",
    "-1",
  ] {
    match a.read(0, Some(bad), 10).await {
      Err(e) => assert_eq!(e.code, Code::InvalidCursor, "{bad:?}: {}", e.message),
      Ok(page) => panic!(
        "{bad:?} was read as a position: {} events",
        page.events.len()
      ),
    }
  }
}

pub async fn shared_stores_report_the_shards_written(s: &Store) {
  let a = s.adapter.as_ref();
  write(a, producer(), 5, 0..1).await;
  write(a, producer(), 7, 0..1).await;
  // Reports may be up to DISCOVERY_TTL old.
  tokio::time::sleep(ringbus::adapter::DISCOVERY_TTL + Duration::from_millis(100)).await;
  let shards = a.stored_shards().await.unwrap();
  if s.shared {
    assert!(shards.contains(&5) && shards.contains(&7), "{shards:?}");
  } else {
    assert!(
      shards.is_empty(),
      "a private store reports none: {shards:?}"
    );
  }
}

pub async fn positions_at_a_time_start_at_the_first_record_stored_then(s: &Store) {
  let a = s.adapter.as_ref();
  let p = producer();
  // Stamped with the wall clock, as the bus stamps them (memory orders by this stamp; the
  // servers by their own store time, on the same clock here).
  let now = || ringbus::clock::now_ms();
  let stamped = |seqs: std::ops::Range<u64>| -> Vec<Event> {
    seqs
      .map(|seq| Event {
        timestamp_ms: now(),
        ..event(seq)
      })
      .collect()
  };
  write_events(a, p, 0, stamped(0..5)).await;
  write_events(a, p, 1, stamped(0..2)).await;
  tokio::time::sleep(Duration::from_millis(30)).await;
  let at = now();
  tokio::time::sleep(Duration::from_millis(30)).await;
  write_events(a, p, 0, stamped(5..8)).await;
  let positions = a.positions_at(&[0, 1, 2], at).await.unwrap();
  let after0: Vec<u64> = read_all(a, 0, positions.get(&0).cloned(), 10)
    .await
    .iter()
    .map(|e| e.seq)
    .collect();
  assert_eq!(after0, [5, 6, 7], "shard 0 from the time");
  // Shard 1 holds only older records: it starts at its end, and continues with new ones.
  assert!(positions.contains_key(&1));
  assert!(read_all(a, 1, positions.get(&1).cloned(), 10)
    .await
    .is_empty());
  write_events(a, p, 1, stamped(2..3)).await;
  let later: Vec<u64> = read_all(a, 1, positions.get(&1).cloned(), 10)
    .await
    .iter()
    .map(|e| e.seq)
    .collect();
  assert_eq!(later, [2]);
  // Time 0 is the start of every shard.
  let all = a.positions_at(&[0], 0).await.unwrap();
  assert_eq!(read_all(a, 0, all.get(&0).cloned(), 100).await.len(), 8);
}

pub async fn shard_info_counts_what_each_shard_holds(s: &Store) {
  let a = s.adapter.as_ref();
  let p = producer();
  let before = ringbus::clock::now_ms();
  let stamped: Vec<Event> = (0..3)
    .map(|seq| Event {
      timestamp_ms: ringbus::clock::now_ms(),
      ..event(seq)
    })
    .collect();
  write_events(a, p, 0, stamped).await;
  let after = ringbus::clock::now_ms();
  let info = a.shard_info(&[0, 1]).await.unwrap();
  assert_eq!(
    info.iter().map(|i| (i.id, i.count)).collect::<Vec<_>>(),
    [(0, 3), (1, 0)]
  );
  let (first, last) = (info[0].first_at.unwrap(), info[0].last_at.unwrap());
  assert!(
    before <= first + 1 && first <= last && last <= after + 1,
    "{before} {first} {last} {after}"
  );
  assert_eq!((info[1].first_at, info[1].last_at), (None, None));
}

//! Timestamp pages through the store-wide reader against the same pages read per shard,
//! on a store with one order over every shard (as JetStream keeps).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use proptest::prelude::*;

use crate::adapter::{Adapter, AdapterError, Positions, ReadPage, WriteBatch, WriteResult};
use crate::consume::poll::{poll, PageOrder, PollRequest};
use crate::consume::sweep_cache::SweepCache;
use crate::event::{PayloadKind, Stamp, StoredEvent};

/// Records in store order; the position of the i-th is i + 1 on every shard.
struct Log {
  events: Vec<StoredEvent>,
  total_order: bool,
}

fn position(after: Option<&str>) -> u64 {
  after.map_or(0, |p| p.parse().unwrap())
}

fn page<'a>(of: impl Iterator<Item = &'a StoredEvent>, limit: usize) -> ReadPage {
  let mut of = of.peekable();
  let events: Vec<StoredEvent> = of.by_ref().take(limit).cloned().collect();
  ReadPage {
    next: events.last().map(|e| e.position.clone()),
    has_more: of.peek().is_some(),
    events,
    remaining: None,
  }
}

#[async_trait]
impl Adapter for Log {
  fn kind(&self) -> &'static str {
    "log"
  }
  fn cursor_scope(&self) -> String {
    "log".into()
  }
  async fn write(&self, _: WriteBatch<'_>) -> Result<WriteResult, AdapterError> {
    Err(AdapterError::fatal("read only"))
  }
  async fn read(
    &self,
    shard: u32,
    after: Option<&str>,
    limit: usize,
  ) -> Result<ReadPage, AdapterError> {
    let at = position(after) as usize;
    let rest = self.events[at.min(self.events.len())..].iter();
    Ok(page(rest.filter(|e| e.shard == shard), limit))
  }
  async fn end_positions(&self, _: &[u32]) -> Result<Positions, AdapterError> {
    Ok(Positions::new())
  }
  async fn wait_for_data(&self, _: &[u32], _: &Positions, _: Duration) {}
  async fn flush(&self) -> Result<(), AdapterError> {
    Ok(())
  }
  async fn close(&self) -> Result<(), AdapterError> {
    Ok(())
  }
  async fn is_healthy(&self) -> bool {
    true
  }
  fn total_order(&self) -> bool {
    self.total_order
  }
  async fn read_all(&self, after: Option<&str>, limit: usize) -> Result<ReadPage, AdapterError> {
    let at = position(after) as usize;
    Ok(page(self.events[at.min(self.events.len())..].iter(), limit))
  }
}

/// Two producers' records: `(shard, timestamp lag, epoch step, second producer)` each, in
/// store order. A producer's timestamps on a shard never go back, nor do its epochs in
/// store order (as the write side keeps them).
fn log(spec: &[(u32, u64, bool, bool)], shards: u32) -> Vec<StoredEvent> {
  let per = shards as usize;
  let mut last = vec![0u64; 2 * per];
  let mut seqs = vec![0u64; 2 * per];
  let mut epochs = [0u32; 2];
  let mut clock = 1_000u64;
  spec
    .iter()
    .enumerate()
    .map(|(i, &(shard, lag, next_epoch, second))| {
      let p = second as usize;
      epochs[p] += next_epoch as u32;
      clock += 1;
      let s = p * per + shard as usize;
      // Batches of one shard reach the store late: their times lag the store's order.
      last[s] = last[s].max(clock.saturating_sub(lag));
      seqs[s] += 1;
      StoredEvent {
        id: (i + 1).to_string(),
        position: (i + 1).to_string(),
        shard,
        seq: seqs[s],
        timestamp_ms: last[s],
        kind: PayloadKind::Json,
        key: None,
        payload: Bytes::from_static(b"{}"),
        message_id: format!("{:016x}-0-{shard}-{}", 0xab + p, seqs[s]),
        stamp: Stamp {
          epoch: epochs[p],
          span: shards,
        },
        headers: None,
      }
    })
    .collect()
}

async fn read_all_pages(adapter: &Log, shards: u32, limit: usize, cache: bool) -> Vec<String> {
  let known: Vec<u32> = (0..shards).collect();
  let cache = cache.then(|| Arc::new(SweepCache::default()));
  let (mut out, mut cursor) = (Vec::new(), None);
  for _ in 0..10_000 {
    let page = poll(
      adapter,
      &known,
      PollRequest {
        limit,
        cursor: cursor.take(),
        ordering: PageOrder::Timestamp,
        cache: cache.clone(),
        ..Default::default()
      },
    )
    .await
    .unwrap();
    out.extend(page.events.into_iter().map(|e| e.position));
    cursor = Some(page.cursor);
    if !page.has_more {
      return out;
    }
  }
  panic!("paging did not end");
}

proptest! {
  #![proptest_config(ProptestConfig::with_cases(64))]

  /// The sweep (with and without the cache) yields exactly what per-shard lanes yield,
  /// every record once.
  #[test]
  fn store_wide_lanes_match_per_shard_lanes(
    shards in 1u32..7,
    spec in prop::collection::vec(
      (0u32..6, 0u64..40, prop::bool::weighted(0.02), prop::bool::ANY),
      0..400,
    ),
    limit in 1usize..60,
  ) {
    let spec: Vec<_> = spec
      .into_iter()
      .map(|(s, lag, e, p)| (s % shards, lag, e, p))
      .collect();
    let events = log(&spec, shards);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let per_shard = Log { events: events.clone(), total_order: false };
    let store_wide = Log { events, total_order: true };
    let want = rt.block_on(read_all_pages(&per_shard, shards, limit, false));
    let mut every = want.clone();
    every.sort_by_key(|p| p.parse::<u64>().unwrap());
    every.dedup();
    prop_assert_eq!(every.len(), spec.len());
    prop_assert_eq!(&rt.block_on(read_all_pages(&store_wide, shards, limit, false)), &want);
    prop_assert_eq!(&rt.block_on(read_all_pages(&store_wide, shards, limit, true)), &want);
  }
}

#[test]
fn the_cache_serves_each_shard_what_it_kept() {
  let events = log(
    &[
      (0, 0, false, false),
      (1, 0, false, false),
      (0, 0, false, false),
    ],
    2,
  );
  let cache = SweepCache::default();
  let seqs: Vec<u64> = events.iter().map(|e| e.position.parse().unwrap()).collect();
  assert!(cache.slice(0, 0, 10).is_none());
  // Records 1-3 were read after position 0, and the page looked up to 5 (4 and 5 were
  // not the reader's).
  cache.keep(0, 5, &seqs, &events);
  let at = |s: &crate::consume::sweep_cache::Slice| {
    s.events
      .iter()
      .map(|e| e.position.clone())
      .collect::<Vec<_>>()
  };
  let s = cache.slice(0, 0, 10).unwrap();
  assert_eq!((at(&s), s.to), (vec!["1".to_string(), "3".to_string()], 5));
  let s = cache.slice(0, 0, 1).unwrap();
  assert_eq!((at(&s), s.to), (vec!["1".to_string()], 1));
  let s = cache.slice(1, 2, 10).unwrap();
  assert_eq!((at(&s), s.to), (vec![], 5));
  // A shard with nothing kept still learns that nothing of it is there.
  assert_eq!(cache.slice(7, 0, 10).unwrap().to, 5);
  // The end of a segment is where a read of the store continues.
  assert!(cache.slice(0, 5, 10).is_none());
  // A page read from there extends the segment.
  cache.keep(5, 9, &[], &[]);
  assert_eq!(cache.slice(0, 6, 10).unwrap().to, 9);
  assert!(cache.slice(0, 9, 10).is_none());
}

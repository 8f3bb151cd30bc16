//! The embedded store: per-shard logs with retention bounded by events and payload bytes
//! across all shards. Positions are per-shard offsets starting at 1; position "0" is the
//! start. Writers bump a version that subscribers wait on. Consumer-group state lives in
//! `groups.rs` beside it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

mod groups;

use crate::adapter::{
  parse_numeric_position, Adapter, AdapterError, Positions, ReadPage, ShardInfo, WriteBatch,
  WriteResult,
};
use crate::event::{headers_size, Headers, PayloadKind, ProducerId, Stamp, StoredEvent};

/// The `adapter` option of `type: 'memory'` as given (typed for JS in `napi/options`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryOptions {
  max_events: Option<u32>,
  max_bytes: Option<u32>,
}

impl MemoryOptions {
  pub fn into_config(self) -> super::AdapterConfig {
    super::AdapterConfig::Memory {
      max_events: self.max_events.map_or(DEFAULT_MAX_EVENTS, |v| v as usize),
      max_bytes: self.max_bytes.map_or(DEFAULT_MAX_BYTES, |v| v as usize),
    }
  }
}

/// Events kept across all shards by default.
pub const DEFAULT_MAX_EVENTS: usize = 1 << 20;
/// Payload bytes kept across all shards by default.
pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

struct Record {
  seq: u64,
  timestamp_ms: u64,
  kind: PayloadKind,
  key: Option<Arc<str>>,
  payload: Bytes,
  producer: ProducerId,
  stamp: Stamp,
  headers: Option<Headers>,
}

impl Record {
  fn size(&self) -> usize {
    self.payload.len() + self.key.as_ref().map_or(0, |k| k.len()) + headers_size(&self.headers)
  }
}

#[derive(Default)]
struct Log {
  /// Offset of `records[0]`.
  first: u64,
  records: VecDeque<Record>,
  /// Highest (producer, seq) written, so a retried write is not stored twice.
  last_written: Option<(ProducerId, u64)>,
}

impl Log {
  fn end(&self) -> u64 {
    self.first + self.records.len() as u64 - 1
  }
}

#[derive(Default)]
struct Store {
  logs: BTreeMap<u32, Log>,
  events: usize,
  bytes: usize,
  trimmed: u64,
}

pub struct MemoryAdapter {
  store: Mutex<Store>,
  max_events: usize,
  max_bytes: usize,
  version: watch::Sender<u64>,
  groups: groups::MemoryGroups,
  /// Names this store in cursors: a cursor of one memory bus means nothing to another.
  instance: u64,
}

impl MemoryAdapter {
  pub fn new(max_events: usize, max_bytes: usize) -> Self {
    MemoryAdapter {
      store: Mutex::new(Store::default()),
      max_events,
      max_bytes,
      version: watch::Sender::new(0),
      // Letters per group and tray are bounded like the events themselves.
      groups: groups::MemoryGroups::new(max_events),
      instance: crate::random::random_u64(),
    }
  }

  /// Records evicted by retention so far.
  pub fn trimmed(&self) -> u64 {
    self.store.lock().trimmed
  }

  /// Records held now (all shards).
  pub fn len(&self) -> usize {
    self.store.lock().events
  }

  pub fn is_empty(&self) -> bool {
    self.len() == 0
  }
}

fn evict_oldest(store: &mut Store) {
  // The globally oldest record goes first, so one busy shard cannot erase a quiet one's history.
  let victim = store
    .logs
    .iter()
    .filter_map(|(id, log)| log.records.front().map(|r| (r.timestamp_ms, *id)))
    .min();
  if let Some((_, id)) = victim {
    let log = store.logs.get_mut(&id).expect("victim exists");
    if let Some(r) = log.records.pop_front() {
      log.first += 1;
      store.events -= 1;
      store.bytes -= r.size();
      store.trimmed += 1;
    }
  }
}

#[async_trait]
impl Adapter for MemoryAdapter {
  fn kind(&self) -> &'static str {
    "memory"
  }

  fn groups(&self) -> Option<&dyn crate::adapter::group_store::GroupStore> {
    Some(&self.groups)
  }

  fn cursor_scope(&self) -> String {
    format!("memory:{:016x}", self.instance)
  }

  async fn write(&self, batch: WriteBatch<'_>) -> Result<WriteResult, AdapterError> {
    {
      let mut store = self.store.lock();
      let store = &mut *store;
      let log = store.logs.entry(batch.shard).or_insert_with(|| Log {
        first: 1,
        ..Log::default()
      });
      let mut added_events = 0usize;
      let mut added_bytes = 0usize;
      for ev in batch.events {
        if let Some((p, s)) = log.last_written {
          if p == batch.producer && ev.seq <= s {
            continue; // already stored by an earlier attempt
          }
        }
        let rec = Record {
          seq: ev.seq,
          timestamp_ms: ev.timestamp_ms,
          kind: ev.kind,
          key: ev.key.clone(),
          payload: ev.payload.clone(),
          producer: batch.producer,
          stamp: ev.stamp,
          headers: ev.headers.clone(),
        };
        added_bytes += rec.size();
        added_events += 1;
        log.records.push_back(rec);
        log.last_written = Some((batch.producer, ev.seq));
      }
      store.events += added_events;
      store.bytes += added_bytes;
      while store.events > self.max_events || (store.bytes > self.max_bytes && store.events > 0) {
        evict_oldest(store);
      }
    }
    self.version.send_modify(|v| *v += 1);
    Ok(WriteResult::AllStored)
  }

  async fn read(
    &self,
    shard: u32,
    after: Option<&str>,
    limit: usize,
  ) -> Result<ReadPage, AdapterError> {
    let after = parse_numeric_position(shard, after, "memory offset")?;
    let store = self.store.lock();
    let Some(log) = store.logs.get(&shard) else {
      return Ok(ReadPage::default());
    };
    if log.records.is_empty() {
      return Ok(ReadPage::default());
    }
    // Records trimmed by retention are gone; resume at the oldest one kept.
    let start = (after + 1).max(log.first);
    let end = log.end();
    if start > end {
      return Ok(ReadPage::default());
    }
    let from = (start - log.first) as usize;
    let take = limit.min(log.records.len() - from);
    let mut events = Vec::with_capacity(take);
    for (i, r) in log.records.range(from..from + take).enumerate() {
      let offset = start + i as u64;
      events.push(StoredEvent {
        id: format!("{shard}-{offset}"),
        position: offset.to_string(),
        shard,
        seq: r.seq,
        timestamp_ms: r.timestamp_ms,
        kind: r.kind,
        key: r.key.clone(),
        payload: r.payload.clone(),
        message_id: r.producer.message_id(shard, r.seq).to_string(),
        stamp: r.stamp,
        headers: r.headers.clone(),
      });
    }
    let last = start + take as u64 - 1;
    Ok(ReadPage {
      next: events.last().map(|e| e.position.clone()),
      has_more: last < end,
      remaining: Some(end - last),
      events,
    })
  }

  async fn end_positions(&self, shards: &[u32]) -> Result<Positions, AdapterError> {
    let store = self.store.lock();
    Ok(
      shards
        .iter()
        .filter_map(|s| {
          store
            .logs
            .get(s)
            .filter(|l| !l.records.is_empty())
            .map(|l| (*s, l.end().to_string()))
        })
        .collect(),
    )
  }

  async fn shard_info(&self, shards: &[u32]) -> Result<Vec<ShardInfo>, AdapterError> {
    let store = self.store.lock();
    Ok(
      shards
        .iter()
        .map(|s| {
          let log = store.logs.get(s);
          let records = log.map(|l| &l.records);
          ShardInfo {
            id: *s,
            count: records.map_or(0, |r| r.len() as u64),
            bytes: Some(records.map_or(0, |r| r.iter().map(|r| r.size() as u64).sum())),
            first_at: records.and_then(|r| r.front()).map(|r| r.timestamp_ms),
            last_at: records.and_then(|r| r.back()).map(|r| r.timestamp_ms),
          }
        })
        .collect(),
    )
  }

  async fn positions_at(&self, shards: &[u32], time_ms: u64) -> Result<Positions, AdapterError> {
    let store = self.store.lock();
    Ok(
      shards
        .iter()
        .filter_map(|s| {
          let log = store.logs.get(s).filter(|l| !l.records.is_empty())?;
          // Timestamps never decrease within a shard: a binary search finds the first.
          let i = log.records.partition_point(|r| r.timestamp_ms < time_ms) as u64;
          // Position p means "after offset p"; the record at index i has offset first + i.
          Some((*s, (log.first + i).saturating_sub(1).to_string()))
        })
        .collect(),
    )
  }

  async fn wait_for_data(&self, shards: &[u32], after: &Positions, max_wait: Duration) {
    let mut rx = self.version.subscribe();
    rx.borrow_and_update();
    let has_new = {
      let store = self.store.lock();
      shards.iter().any(|s| {
        let Some(log) = store.logs.get(s) else {
          return false;
        };
        if log.records.is_empty() {
          return false;
        }
        let pos = after
          .get(s)
          .and_then(|p| p.parse::<u64>().ok())
          .unwrap_or(0);
        log.end() > pos
      })
    };
    if has_new {
      return;
    }
    let _ = tokio::time::timeout(max_wait, rx.changed()).await;
  }

  async fn flush(&self) -> Result<(), AdapterError> {
    Ok(())
  }

  async fn close(&self) -> Result<(), AdapterError> {
    // Keep the records: a closed bus can no longer be polled, and dropping the adapter frees them.
    self.version.send_modify(|v| *v += 1);
    Ok(())
  }

  async fn is_healthy(&self) -> bool {
    true
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::event::Event;

  fn events(from: u64, n: u64) -> Vec<Event> {
    (from..from + n)
      .map(|seq| Event {
        seq,
        timestamp_ms: 1000 + seq,
        kind: PayloadKind::Json,
        key: None,
        payload: Bytes::from(format!("{{\"n\":{seq}}}")),
        stamp: Default::default(),
        headers: None,
      })
      .collect()
  }

  const P: ProducerId = ProducerId {
    nonce: 1,
    generation: 0,
  };

  #[tokio::test]
  async fn write_read_and_retry_is_idempotent() {
    let m = MemoryAdapter::new(1000, 1 << 20);
    let evs = events(0, 10);
    m.write(WriteBatch {
      shard: 0,
      producer: P,
      events: &evs,
    })
    .await
    .unwrap();
    // A retry of the same events stores nothing new.
    m.write(WriteBatch {
      shard: 0,
      producer: P,
      events: &evs[5..],
    })
    .await
    .unwrap();
    assert_eq!(m.len(), 10);
    let page = m.read(0, None, 4).await.unwrap();
    assert_eq!(page.events.len(), 4);
    assert!(page.has_more);
    let page2 = m.read(0, page.next.as_deref(), 100).await.unwrap();
    assert_eq!(page2.events.len(), 6);
    assert_eq!(page2.events[0].seq, 4);
    assert!(!page2.has_more);
  }

  #[tokio::test]
  async fn retention_evicts_oldest_across_shards() {
    let m = MemoryAdapter::new(15, 1 << 20);
    let a = events(0, 10);
    m.write(WriteBatch {
      shard: 0,
      producer: P,
      events: &a,
    })
    .await
    .unwrap();
    let b: Vec<Event> = events(0, 10)
      .into_iter()
      .map(|mut e| {
        e.timestamp_ms += 100;
        e
      })
      .collect();
    m.write(WriteBatch {
      shard: 1,
      producer: P,
      events: &b,
    })
    .await
    .unwrap();
    assert_eq!(m.len(), 15);
    assert_eq!(m.trimmed(), 5);
    let p0 = m.read(0, None, 100).await.unwrap();
    assert_eq!(p0.events.len(), 5);
    assert_eq!(p0.events[0].seq, 5);
    assert_eq!(m.read(1, None, 100).await.unwrap().events.len(), 10);
  }

  #[tokio::test]
  async fn bad_position_is_a_cursor_error() {
    let m = MemoryAdapter::new(10, 1 << 20);
    let err = m.read(0, Some("abc"), 1).await.unwrap_err();
    assert_eq!(err.code, crate::error::Code::InvalidCursor);
  }
}

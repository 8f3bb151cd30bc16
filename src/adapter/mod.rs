//! The adapter interface every backend implements, and the in-process backends.

pub mod group_store;
pub mod jetstream;
pub mod memory;
pub mod meta;
pub mod noop;
pub mod redis;
mod registry;
pub mod tls;

pub use registry::{
  backends_keeping_events, build_local, connect, AdapterConfig, Backend, BACKENDS,
};

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{BusError, Code};
use crate::event::{Event, ProducerId, StoredEvent};

/// A backend failure. `retryable` decides whether the dispatcher tries again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterError {
  pub code: Code,
  pub retryable: bool,
  pub message: String,
}

impl AdapterError {
  pub fn retryable(message: impl Into<String>) -> Self {
    AdapterError {
      code: Code::Adapter,
      retryable: true,
      message: message.into(),
    }
  }

  pub fn fatal(message: impl Into<String>) -> Self {
    AdapterError {
      code: Code::Adapter,
      retryable: false,
      message: message.into(),
    }
  }
}

impl From<AdapterError> for BusError {
  fn from(e: AdapterError) -> Self {
    BusError::new(e.code, e.message)
  }
}

/// One shard's batch, in sequence order.
pub struct WriteBatch<'a> {
  pub shard: u32,
  pub producer: ProducerId,
  pub events: &'a [Event],
}

/// The fate of one event in a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
  Stored,
  /// Not stored; may succeed if sent again (with the same message id).
  Retry(AdapterError),
  /// Not stored and never will be (e.g. rejected as too large by the server).
  Reject(AdapterError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteResult {
  AllStored,
  /// One outcome per event, in batch order.
  PerEvent(Vec<Outcome>),
}

/// A page of one shard's records, starting after a position.
#[derive(Debug, Clone, Default)]
pub struct ReadPage {
  pub events: Vec<StoredEvent>,
  /// Position after the last record examined (including skipped corrupt ones), if any.
  pub next: Option<String>,
  /// More records exist after `next`.
  pub has_more: bool,
  /// How many records follow `next`, where the store tells it cheaply.
  pub remaining: Option<u64>,
}

/// What the store holds on one shard (`bus.info()`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardInfo {
  pub id: u32,
  /// Records held now (after retention).
  pub count: u64,
  /// Bytes the store uses for them, where it can tell.
  pub bytes: Option<u64>,
  /// When the oldest and newest held record was stored (ms since the epoch, by the store's
  /// clock); absent for an empty shard.
  pub first_at: Option<u64>,
  pub last_at: Option<u64>,
}

/// A producer the store recorded (`bus.info()`): its nonce (hex) and epoch, which every
/// message id it writes starts with, and when it last began writing to a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSeen {
  pub nonce: String,
  pub epoch: u64,
  pub seen_ms: u64,
}

/// Shard id → position of the last consumed record (absent: start of the shard).
pub type Positions = BTreeMap<u32, String>;

/// Parses a numeric cursor position (`None`: the start, 0). `what` names the backend's
/// position kind in the error, e.g. "memory offset".
pub fn parse_numeric_position(
  shard: u32,
  pos: Option<&str>,
  what: &str,
) -> Result<u64, AdapterError> {
  // No store numbers its records past 2^63; a larger position would overflow the "next
  // record" arithmetic and wrap around to the start.
  const MAX_POSITION: u64 = 1 << 63;
  match pos {
    None => Ok(0),
    Some(p) => match p.parse::<u64>() {
      Ok(n) if n < MAX_POSITION => Ok(n),
      _ => Err(AdapterError {
        code: Code::InvalidCursor,
        retryable: false,
        message: format!(
          "cursor position {p:?} for shard {shard} is not a {what}; use a cursor returned by this bus"
        ),
      }),
    },
  }
}

#[async_trait]
pub trait Adapter: Send + Sync + 'static {
  /// Short backend name, e.g. "memory".
  fn kind(&self) -> &'static str;

  /// Identifies the store a cursor belongs to; cursors from another scope are refused.
  fn cursor_scope(&self) -> String;

  /// Writes a batch. Must be idempotent per message id: a retry of an event that was
  /// already stored must not store it twice.
  async fn write(&self, batch: WriteBatch<'_>) -> Result<WriteResult, AdapterError>;

  /// Reads up to `limit` records of `shard` after position `after` (None: from the start).
  async fn read(
    &self,
    shard: u32,
    after: Option<&str>,
    limit: usize,
  ) -> Result<ReadPage, AdapterError>;

  /// Positions at the current end of each shard (for `from: 'latest'`).
  async fn end_positions(&self, shards: &[u32]) -> Result<Positions, AdapterError>;

  /// For each of `shards`, the position to read after so that the next record is the first
  /// one stored at or after `time_ms` (ms since the epoch, by the store's clock); a shard
  /// whose records are all older gets its end, an empty one no position. Found by the
  /// store's own index (a search, not a scan of every record).
  async fn positions_at(&self, shards: &[u32], time_ms: u64) -> Result<Positions, AdapterError> {
    let _ = (shards, time_ms);
    Err(AdapterError::fatal(format!(
      "the {} store cannot start a read at a time",
      self.kind()
    )))
  }

  /// What the store holds on each of `shards`, in that order (an unknown shard: count 0).
  async fn shard_info(&self, shards: &[u32]) -> Result<Vec<ShardInfo>, AdapterError> {
    Ok(
      shards
        .iter()
        .map(|s| ShardInfo {
          id: *s,
          ..ShardInfo::default()
        })
        .collect(),
    )
  }

  /// The producers the store records, where it records them (Redis); None elsewhere.
  async fn producers(&self) -> Result<Option<Vec<ProducerSeen>>, AdapterError> {
    Ok(None)
  }

  /// How many records of `shard` follow `after` (None: every record held), for stores
  /// whose read pages do not say (`ReadPage::remaining`). None where it is unknown.
  async fn count_after(
    &self,
    shard: u32,
    after: Option<&str>,
  ) -> Result<Option<u64>, AdapterError> {
    let _ = (shard, after);
    Ok(None)
  }

  /// Returns when any of `shards` may hold records after `after`, or after `max_wait`.
  /// Implementations wait on the backend, never by polling in a loop.
  async fn wait_for_data(&self, shards: &[u32], after: &Positions, max_wait: Duration);

  /// Makes every acknowledged write durable (no-op where writes are durable on ack).
  async fn flush(&self) -> Result<(), AdapterError>;

  async fn close(&self) -> Result<(), AdapterError>;

  async fn is_healthy(&self) -> bool;

  /// Records skipped on read because they could not be decoded.
  fn corrupt_skipped(&self) -> u64 {
    0
  }

  /// The store keeps one order over all its shards (JetStream's stream sequence), and a
  /// position in it is valid for every shard: reads that cover every shard follow it.
  fn total_order(&self) -> bool {
    false
  }

  /// With `total_order`: up to `limit` records of every shard after the store-wide
  /// position `after` (None: from the start), in the store's order.
  async fn read_all(&self, after: Option<&str>, limit: usize) -> Result<ReadPage, AdapterError> {
    let _ = (after, limit);
    Err(AdapterError::fatal(
      "this store keeps no order across shards",
    ))
  }

  /// With `total_order`: returns when records after `after` may exist, or after `max_wait`.
  async fn wait_all(&self, after: Option<&str>, max_wait: Duration) {
    let _ = after;
    tokio::time::sleep(max_wait).await
  }

  /// Shards that hold events in the store, written by any process: readers cover these
  /// beside their own. May be up to [`DISCOVERY_TTL`] old. Default: none beyond the
  /// reader's own (a store private to one bus).
  async fn stored_shards(&self) -> Result<Vec<u32>, AdapterError> {
    Ok(Vec::new())
  }

  /// Where consumer groups keep their state; None for a store that keeps no events.
  fn groups(&self) -> Option<&dyn crate::adapter::group_store::GroupStore> {
    None
  }
}

/// How long an adapter may answer `stored_shards` from what it last read.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(1);

/// A value read from the backend at most [`DISCOVERY_TTL`] ago. Read on every read request
/// and replaced every few seconds, so it is an `ArcSwap` snapshot: readers take no lock.
pub struct Cached<T> {
  value: arc_swap::ArcSwapOption<(std::time::Instant, T)>,
}

impl<T> Default for Cached<T> {
  fn default() -> Self {
    Cached {
      value: arc_swap::ArcSwapOption::empty(),
    }
  }
}

impl<T: Clone> Cached<T> {
  /// The cached value while fresh, else the result of `load` (cached on success).
  pub async fn get_or<F, E>(&self, load: F) -> Result<T, E>
  where
    F: std::future::Future<Output = Result<T, E>>,
  {
    if let Some(cached) = &*self.value.load() {
      if cached.0.elapsed() < DISCOVERY_TTL {
        return Ok(cached.1.clone());
      }
    }
    let v = load.await?;
    self.value.store(Some(std::sync::Arc::new((
      std::time::Instant::now(),
      v.clone(),
    ))));
    Ok(v)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn numeric_positions_stop_short_of_overflow() {
    assert_eq!(parse_numeric_position(0, None, "offset"), Ok(0));
    assert_eq!(parse_numeric_position(0, Some("42"), "offset"), Ok(42));
    for bad in ["18446744073709551615", "9223372036854775808", "-1", "x"] {
      let e = parse_numeric_position(3, Some(bad), "offset").unwrap_err();
      assert_eq!(e.code, Code::InvalidCursor, "{bad}");
      assert!(e.message.contains("shard 3"), "{}", e.message);
    }
  }
}

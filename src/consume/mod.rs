//! Reading events back: cursors, filters, the poll merger and subscriptions.

pub mod barrier;
pub mod cursor;
pub mod filter;
pub mod lane;
pub mod poll;
pub mod subscribe;

use crate::adapter::Adapter;

/// The shards this process writes, as the read side sees them: readers need their ids and
/// nothing else of the write side (which implements this in `topology`).
pub trait ShardSource: Send + Sync {
  /// Every shard id this process has made, removed ones included.
  fn all_ids(&self) -> Vec<u32>;
}

/// The shards a read covers: this bus's own (removed ones included) and every shard the
/// store reports holding events, whoever wrote them (other processes with other shard
/// counts, or this stream before a restart). When the store cannot say, its own.
pub async fn read_shards(adapter: &dyn Adapter, own: Vec<u32>) -> Vec<u32> {
  let mut all = own;
  if let Ok(stored) = adapter.stored_shards().await {
    all.extend(stored);
  }
  all.sort_unstable();
  all.dedup();
  all
}

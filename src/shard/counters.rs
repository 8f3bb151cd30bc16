//! A shard's counters: what happened to its events, read without its lock.

use std::sync::atomic::AtomicU64;

/// Why an accepted event was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
  /// Evicted by a newer event under `dropOldest`.
  Oldest,
  /// Discarded on arrival under `dropNewest`.
  Newest,
  /// The adapter refused it or retries ran out.
  Adapter,
  /// Still undelivered when the shutdown bound expired.
  Shutdown,
}

#[derive(Debug, Default)]
pub struct Counters {
  pub ingested: AtomicU64,
  pub stored: AtomicU64,
  pub dropped_oldest: AtomicU64,
  pub dropped_newest: AtomicU64,
  pub dropped_adapter: AtomicU64,
  pub dropped_shutdown: AtomicU64,
  pub rejected: AtomicU64,
  /// Events sent to the adapter again after a failed or timed-out write.
  pub retried: AtomicU64,
}

impl Counters {
  pub(super) fn drop_counter(&self, reason: DropReason) -> &AtomicU64 {
    match reason {
      DropReason::Oldest => &self.dropped_oldest,
      DropReason::Newest => &self.dropped_newest,
      DropReason::Adapter => &self.dropped_adapter,
      DropReason::Shutdown => &self.dropped_shutdown,
    }
  }
}

/// A consistent reading of one shard's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
  pub ingested: u64,
  pub stored: u64,
  pub dropped_oldest: u64,
  pub dropped_newest: u64,
  pub dropped_adapter: u64,
  pub dropped_shutdown: u64,
  pub rejected: u64,
  pub retried: u64,
}

impl CounterSnapshot {
  pub fn dropped(&self) -> u64 {
    self.dropped_oldest + self.dropped_newest + self.dropped_adapter + self.dropped_shutdown
  }

  /// Accepted events not yet stored or dropped.
  pub fn pending(&self) -> u64 {
    self.ingested - self.stored - self.dropped()
  }

  pub fn add(&mut self, o: &CounterSnapshot) {
    self.ingested += o.ingested;
    self.stored += o.stored;
    self.dropped_oldest += o.dropped_oldest;
    self.dropped_newest += o.dropped_newest;
    self.dropped_adapter += o.dropped_adapter;
    self.dropped_shutdown += o.dropped_shutdown;
    self.rejected += o.rejected;
    self.retried += o.retried;
  }
}

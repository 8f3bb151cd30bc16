//! What the bus measures for `metrics()` and OpenTelemetry: durations of store operations
//! and handlers, end-to-end latencies, per-group counters that outlive a consumer, and the
//! log of written batches that becomes `send` spans. Counts that the shards already keep
//! (ingested, stored, dropped) stay there; this holds only what nothing else records.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

pub mod histogram;
pub mod text;

pub use histogram::{Histogram, Snapshot, Tally};

/// Distinct `error.type` values kept per histogram; later ones count as `_OTHER`, so a
/// handler throwing ever new error names cannot grow the exposition without bound.
pub const MAX_ERROR_TYPES: usize = 16;
/// The `error.type` of failures past [`MAX_ERROR_TYPES`] (the conventions' fallback).
pub const OTHER: &str = "_OTHER";
/// Written batches kept for `send` spans until JS takes them; older ones are counted lost.
pub const BATCH_LOG_CAP: usize = 4096;
/// Trace contexts a `send` span links to: the first distinct ones of its batch.
pub const MAX_LINKS: usize = 32;

/// Durations of one operation: successes, and failures by error type.
#[derive(Default)]
pub struct ByError {
  pub ok: Histogram,
  errors: Mutex<Vec<(String, Arc<Histogram>)>>,
}

impl ByError {
  pub fn observe(&self, d: Duration, error: Option<&str>) {
    match error {
      None => self.ok.observe(d),
      Some(e) => self.failed(e).observe(d),
    }
  }

  fn failed(&self, error: &str) -> Arc<Histogram> {
    let mut errors = self.errors.lock();
    if let Some((_, h)) = errors.iter().find(|(e, _)| e == error) {
      return h.clone();
    }
    let key = if errors.len() < MAX_ERROR_TYPES {
      error
    } else {
      OTHER
    };
    if let Some((_, h)) = errors.iter().find(|(e, _)| e == key) {
      return h.clone();
    }
    let h = Arc::new(Histogram::default());
    errors.push((key.to_string(), h.clone()));
    h
  }

  /// `(None, ok)` first, then each error type seen.
  pub fn snapshots(&self) -> Vec<(Option<String>, Snapshot)> {
    let mut out = vec![(None, self.ok.snapshot())];
    for (e, h) in self.errors.lock().iter() {
      out.push((Some(e.clone()), h.snapshot()));
    }
    out
  }
}

/// Counters of what a member did with its group's events (a member's own, and summed for
/// the group over every member this bus ever ran).
#[derive(Debug, Default)]
pub struct GroupCounts {
  pub delivered: AtomicU64,
  pub acked: AtomicU64,
  pub nacked: AtomicU64,
  pub redelivered: AtomicU64,
  pub dead_lettered: AtomicU64,
}

/// Which of [`GroupCounts`]' counters.
#[derive(Debug, Clone, Copy)]
pub enum Count {
  Delivered,
  Acked,
  Nacked,
  Redelivered,
  DeadLettered,
}

impl GroupCounts {
  pub fn get(&self, which: Count) -> &AtomicU64 {
    match which {
      Count::Delivered => &self.delivered,
      Count::Acked => &self.acked,
      Count::Nacked => &self.nacked,
      Count::Redelivered => &self.redelivered,
      Count::DeadLettered => &self.dead_lettered,
    }
  }

  pub fn load(&self, which: Count) -> u64 {
    self.get(which).load(Ordering::Relaxed)
  }
}

/// One group's measurements in this bus, kept while the bus runs: consumers and workers
/// that close and start again add to the same counters, so they never go down.
#[derive(Default)]
pub struct GroupMeters {
  pub counts: GroupCounts,
  /// Events handed to the application: yielded by a consumer, or passed to a handler
  /// (each retry of a failed handler again).
  pub consumed: AtomicU64,
  /// Shard leases taken (joins, hand-overs and takeovers from a member that stopped renewing).
  pub leases_taken: AtomicU64,
  /// Shard leases lost: taken by another member, or not renewed within `leaseMs`.
  pub leases_lost: AtomicU64,
  /// Page reads of the group's shards.
  pub receive: ByError,
  /// `process()` handler time, by the error type of failures.
  pub process: ByError,
  /// Event creation (ingest) to the handler's end, for events handled by `process()`.
  pub ingest_to_handled: Histogram,
}

/// A batch written to the store (or given up), for a `send` span.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
  pub shard: u32,
  pub events: u32,
  /// When the first write attempt started, in ms since the UNIX epoch.
  pub started_ms: f64,
  /// From the first attempt to the outcome, retries and backoff included.
  pub duration: Duration,
  pub attempts: u32,
  /// The code of the last failure when any event of the batch was not stored.
  pub error: Option<&'static str>,
  /// `(traceparent, tracestate)` of the batch's first distinct trace contexts.
  pub links: Vec<(Box<str>, Option<Box<str>>)>,
}

/// Written batches waiting for JS to turn them into spans. Off until a tracer or meter
/// asks, so a bus without OpenTelemetry keeps no records.
#[derive(Default)]
pub struct BatchLog {
  on: AtomicBool,
  queue: Mutex<VecDeque<BatchRecord>>,
  lost: AtomicU64,
}

impl BatchLog {
  pub fn enable(&self) {
    self.on.store(true, Ordering::Relaxed);
  }

  pub fn enabled(&self) -> bool {
    self.on.load(Ordering::Relaxed)
  }

  pub fn push(&self, r: BatchRecord) {
    let mut q = self.queue.lock();
    if q.len() >= BATCH_LOG_CAP {
      q.pop_front();
      self.lost.fetch_add(1, Ordering::Relaxed);
    }
    q.push_back(r);
  }

  pub fn take(&self) -> Vec<BatchRecord> {
    self.queue.lock().drain(..).collect()
  }

  /// Records dropped because JS did not take them in time.
  pub fn lost(&self) -> u64 {
    self.lost.load(Ordering::Relaxed)
  }
}

/// The bus's measurements.
#[derive(Default)]
pub struct Telemetry {
  /// Batch writes to the store, per attempt.
  pub send: ByError,
  /// Page reads by `poll` and subscriptions.
  pub receive: ByError,
  /// Events returned by `poll` and subscriptions.
  pub polled: AtomicU64,
  /// Event creation (ingest) to the store's acknowledgement.
  pub ingest_to_stored: Histogram,
  groups: Mutex<BTreeMap<String, Arc<GroupMeters>>>,
  pub batches: BatchLog,
}

impl Telemetry {
  /// The meters of `group`, created on first use.
  pub fn group(&self, group: &str) -> Arc<GroupMeters> {
    self
      .groups
      .lock()
      .entry(group.to_string())
      .or_default()
      .clone()
  }

  /// Every group this bus has run a member of, by name.
  pub fn groups(&self) -> Vec<(String, Arc<GroupMeters>)> {
    self
      .groups
      .lock()
      .iter()
      .map(|(g, m)| (g.clone(), m.clone()))
      .collect()
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn error_types_are_bounded() {
    let b = ByError::default();
    for i in 0..(MAX_ERROR_TYPES + 5) {
      b.observe(Duration::from_millis(1), Some(&format!("E{i}")));
    }
    b.observe(Duration::from_millis(1), Some("E0"));
    let snaps = b.snapshots();
    // ok, MAX_ERROR_TYPES distinct names, then _OTHER for the rest.
    assert_eq!(snaps.len(), MAX_ERROR_TYPES + 2);
    let other = snaps
      .iter()
      .find(|(e, _)| e.as_deref() == Some(OTHER))
      .unwrap();
    assert_eq!(other.1.count(), 5);
    let e0 = snaps
      .iter()
      .find(|(e, _)| e.as_deref() == Some("E0"))
      .unwrap();
    assert_eq!(e0.1.count(), 2);
  }

  #[test]
  fn the_batch_log_is_bounded_and_counts_what_it_lost() {
    let log = BatchLog::default();
    assert!(!log.enabled());
    log.enable();
    for i in 0..(BATCH_LOG_CAP + 3) {
      log.push(BatchRecord {
        shard: i as u32,
        events: 1,
        started_ms: 0.0,
        duration: Duration::ZERO,
        attempts: 1,
        error: None,
        links: Vec::new(),
      });
    }
    assert_eq!(log.lost(), 3);
    let taken = log.take();
    assert_eq!(taken.len(), BATCH_LOG_CAP);
    assert_eq!(taken[0].shard, 3, "the oldest records went first");
    assert!(log.take().is_empty());
  }
}

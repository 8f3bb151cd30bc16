//! Duration histograms with fixed buckets, updated without locks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds in seconds: the buckets the OpenTelemetry messaging conventions advise for
/// `messaging.client.operation.duration` and `messaging.process.duration`. Every ringbus
/// duration uses them, so histograms of one scrape can be compared bucket by bucket.
pub const BOUNDS: [f64; 14] = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Buckets including the last, unbounded one.
const SLOTS: usize = BOUNDS.len() + 1;

fn slot(seconds: f64) -> usize {
  // `le` semantics: a value equal to a bound belongs to that bound's bucket.
  BOUNDS.partition_point(|b| *b < seconds)
}

/// Observations gathered locally (one batch's events) and added to a [`Histogram`] at once.
#[derive(Debug, Default, Clone)]
pub struct Tally {
  counts: [u64; SLOTS],
  sum_ns: u64,
}

impl Tally {
  pub fn observe(&mut self, d: Duration) {
    self.counts[slot(d.as_secs_f64())] += 1;
    self.sum_ns = self.sum_ns.saturating_add(d.as_nanos() as u64);
  }

  pub fn is_empty(&self) -> bool {
    self.counts.iter().all(|c| *c == 0)
  }
}

#[derive(Debug, Default)]
pub struct Histogram {
  counts: [AtomicU64; SLOTS],
  sum_ns: AtomicU64,
}

/// A histogram read at one moment: cumulative counts per bound (`le`), then the total.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
  /// `cumulative[i]` observations were at most `BOUNDS[i]`; the last entry is the count.
  pub cumulative: [u64; SLOTS],
  pub sum_seconds: f64,
}

impl Snapshot {
  pub fn count(&self) -> u64 {
    self.cumulative[SLOTS - 1]
  }
}

impl Histogram {
  pub fn observe(&self, d: Duration) {
    self.counts[slot(d.as_secs_f64())].fetch_add(1, Ordering::Relaxed);
    self
      .sum_ns
      .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
  }

  pub fn add(&self, t: &Tally) {
    for (c, n) in self.counts.iter().zip(t.counts) {
      if n > 0 {
        c.fetch_add(n, Ordering::Relaxed);
      }
    }
    self.sum_ns.fetch_add(t.sum_ns, Ordering::Relaxed);
  }

  pub fn snapshot(&self) -> Snapshot {
    let mut cumulative = [0u64; SLOTS];
    let mut total = 0u64;
    for (out, c) in cumulative.iter_mut().zip(&self.counts) {
      total += c.load(Ordering::Relaxed);
      *out = total;
    }
    Snapshot {
      cumulative,
      sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn buckets_follow_le_semantics_and_accumulate() {
    let h = Histogram::default();
    h.observe(Duration::from_millis(5)); // exactly the first bound
    h.observe(Duration::from_millis(6));
    h.observe(Duration::from_secs(11)); // past the last bound
    let mut t = Tally::default();
    t.observe(Duration::from_millis(1));
    t.observe(Duration::from_millis(100));
    assert!(!t.is_empty());
    h.add(&t);
    let s = h.snapshot();
    assert_eq!(s.cumulative[0], 2, "1 ms and 5 ms are <= 0.005 s");
    assert_eq!(s.cumulative[1], 3, "6 ms is <= 0.01 s");
    assert_eq!(s.cumulative[5], 4, "100 ms is <= 0.1 s");
    assert_eq!(s.cumulative[BOUNDS.len() - 1], 4, "11 s is past 10 s");
    assert_eq!(s.count(), 5);
    assert!((s.sum_seconds - 11.112).abs() < 1e-9, "{}", s.sum_seconds);
  }
}

//! Wall-clock anchored millisecond timestamps.
//!
//! The wall clock is read once, when the bus starts; later readings add a monotonic
//! offset, so a clock step never makes time run backwards within a process, while
//! values stay comparable across shards, processes and restarts.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
  anchor_ms: u64,
  start: Instant,
}

impl Clock {
  pub fn new() -> Self {
    let anchor_ms = SystemTime::now()
      .duration_since(UNIX_EPOCH)
      .map(|d| d.as_millis() as u64)
      .unwrap_or(0);
    Clock {
      anchor_ms,
      start: Instant::now(),
    }
  }

  pub fn now_ms(&self) -> u64 {
    self
      .anchor_ms
      .saturating_add(self.start.elapsed().as_millis() as u64)
  }
}

/// Milliseconds since the Unix epoch from the wall clock (records stored for other
/// processes to read: expiries, letter times, log timestamps).
pub fn now_ms() -> u64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map(|d| d.as_millis() as u64)
    .unwrap_or(0)
}

impl Default for Clock {
  fn default() -> Self {
    Self::new()
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn anchored_to_wall_time_and_monotonic() {
    let c = Clock::new();
    let wall = SystemTime::now()
      .duration_since(UNIX_EPOCH)
      .unwrap()
      .as_millis() as u64;
    let a = c.now_ms();
    assert!(a.abs_diff(wall) < 1000);
    let b = c.now_ms();
    assert!(b >= a);
  }
}

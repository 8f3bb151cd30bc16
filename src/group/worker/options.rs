//! The options of a `process()` worker, and its retry delays.

use std::time::Duration;

use crate::config::check_range;
use crate::error::Result;

pub const DEFAULT_CONCURRENCY: usize = 16;
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct WorkerOptions {
  pub concurrency: usize,
  /// Delay before the first retry; doubles with each further one, up to 30 s.
  pub backoff: Duration,
}

impl Default for WorkerOptions {
  fn default() -> Self {
    WorkerOptions {
      concurrency: DEFAULT_CONCURRENCY,
      backoff: DEFAULT_BACKOFF,
    }
  }
}

impl WorkerOptions {
  pub fn validate(&self) -> Result<()> {
    check_range("concurrency", self.concurrency as u64, 1, 10_000)?;
    check_range("backoffMs", self.backoff.as_millis() as u64, 0, 3_600_000)
  }

  /// The wait before delivery `n` (2 = the first retry).
  pub fn delay(&self, n: u32) -> Duration {
    let doublings = n.saturating_sub(2).min(20);
    self.backoff.saturating_mul(1 << doublings).min(MAX_BACKOFF)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn retry_delays_double_up_to_a_cap() {
    let o = WorkerOptions {
      concurrency: 1,
      backoff: Duration::from_millis(100),
    };
    assert_eq!(o.delay(2), Duration::from_millis(100));
    assert_eq!(o.delay(3), Duration::from_millis(200));
    assert_eq!(o.delay(5), Duration::from_millis(800));
    assert_eq!(o.delay(60), MAX_BACKOFF);
    assert!(WorkerOptions::default().validate().is_ok());
    let bad = WorkerOptions {
      concurrency: 0,
      ..Default::default()
    };
    assert!(bad.validate().unwrap_err().message.contains("concurrency"));
  }
}

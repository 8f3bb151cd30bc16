//! Retry timing: exponential backoff with jitter, shared by the dispatchers (failed writes)
//! and subscriptions (failed reads).

use std::cell::Cell;
use std::time::Duration;

/// First retry's delay (before jitter).
pub const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Longest delay between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

thread_local! {
  static RNG: Cell<u64> = Cell::new(crate::random::random_u64());
}

fn next_random() -> u64 {
  RNG.with(|c| {
    // xorshift64*: enough for jitter.
    let mut x = c.get();
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c.set(x);
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
  })
}

/// Delay before retry `attempt` (1-based): exponential, capped, with "equal jitter"
/// (half fixed, half random) so that shards failing together do not retry in lockstep.
pub fn backoff(attempt: u32) -> Duration {
  let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
  let d = exp.min(MAX_BACKOFF);
  let half = d / 2;
  let jitter = next_random() % (half.as_micros() as u64 + 1);
  half + Duration::from_micros(jitter)
}

/// The longest time one event can spend being written: every attempt runs to its timeout
/// and waits the longest backoff after it.
pub fn max_span(attempt_timeout: Duration, retries: u32) -> Duration {
  (attempt_timeout + MAX_BACKOFF) * (retries + 1)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn backoff_grows_and_is_capped() {
    for attempt in 1..20 {
      let d = backoff(attempt);
      let exp = BACKOFF_BASE
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(MAX_BACKOFF);
      assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
    }
  }

  /// The option docs state the retry span with the constant's value; they must agree.
  #[test]
  fn typings_state_the_backoff_cap() {
    let dts = include_str!("../index.d.ts");
    let stated = format!(
      "(adapterTimeoutMs + {}) × (retries + 1)",
      MAX_BACKOFF.as_millis()
    );
    assert!(dts.contains(&stated), "index.d.ts must say {stated}");
  }
}

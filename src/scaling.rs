//! The scaling policy: a monitor task that, once per metrics window, measures the mean fill
//! ratio of the active shards and adds or removes shards when it stays past a threshold.
//!
//! Hysteresis has three parts: separate up and down thresholds (a gap between them), a
//! number of consecutive windows each must hold for, and a cooldown after any change. Load
//! never moves traffic between shards: routing depends on keys only, so "scaling" changes
//! the shard count and nothing else.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::runtime::Handle;

use crate::config::ScalingConfig;
use crate::signal::Signal;
use crate::topology::ShardSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
  Hold,
  Up(u32),
  Down(u32),
}

/// Consecutive windows above the up threshold and below the down threshold.
#[derive(Debug, Default, Clone, Copy)]
pub struct Streaks {
  pub up: u32,
  pub down: u32,
}

/// One window's decision. `active` is the shard count, `fill` the window's mean fill ratio.
pub fn decide(
  policy: &ScalingConfig,
  active: u32,
  fill: f64,
  since_change: Duration,
  streaks: &mut Streaks,
) -> Decision {
  streaks.up = if fill >= policy.scale_up_fill {
    streaks.up + 1
  } else {
    0
  };
  streaks.down = if fill <= policy.scale_down_fill {
    streaks.down + 1
  } else {
    0
  };
  if since_change < policy.cooldown {
    return Decision::Hold;
  }
  if streaks.up >= policy.up_windows && active < policy.max_shards {
    *streaks = Streaks::default();
    return Decision::Up(policy.max_step.min(policy.max_shards - active));
  }
  if streaks.down >= policy.down_windows && active > policy.min_shards {
    *streaks = Streaks::default();
    return Decision::Down(policy.max_step.min(active - policy.min_shards));
  }
  Decision::Hold
}

/// Starts the policy's monitor. It holds the shard set weakly and ends at shutdown.
pub fn start_monitor(
  policy: ScalingConfig,
  shards: Weak<ShardSet>,
  closing: Arc<Signal>,
  rt: &Handle,
) {
  rt.spawn(async move {
    let mut streaks = Streaks::default();
    let mut tick = tokio::time::interval(policy.window);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
      tokio::select! {
        _ = tick.tick() => {}
        _ = closing.wait() => return,
      }
      let Some(shards) = shards.upgrade() else { return };
      let (active, fill) = shards.with_routing(|shards| {
        let sum: f64 = shards
          .iter()
          .map(|s| s.occupancy().queued as f64 / s.capacity().max(1) as f64)
          .sum();
        (shards.len() as u32, sum / shards.len().max(1) as f64)
      });
      let since = shards.since_last_change();
      let decision = decide(&policy, active, fill, since, &mut streaks);
      let (result, to) = match decision {
        Decision::Hold => continue,
        Decision::Up(n) => {
          tracing::info!(
            from = active,
            to = active + n,
            fill,
            threshold = policy.scale_up_fill,
            windows = policy.up_windows,
            window_ms = policy.window.as_millis() as u64,
            "scaling up from {active} to {} shards: mean fill ratio {fill:.2} >= scaleUpFillRatio",
            active + n,
          );
          (shards.scale_up(n).await.map(|_| ()), active + n)
        }
        Decision::Down(n) => {
          tracing::info!(
            from = active,
            to = active - n,
            fill,
            threshold = policy.scale_down_fill,
            windows = policy.down_windows,
            window_ms = policy.window.as_millis() as u64,
            "scaling down from {active} to {} shards: mean fill ratio {fill:.2} <= scaleDownFillRatio",
            active - n,
          );
          (shards.scale_down(n).await.map(|_| ()), active - n)
        }
      };
      if let Err(e) = result {
        if !closing.is_fired() {
          tracing::warn!(to, reason = %e.message, "scaling to {to} shards failed: {}", e.message);
        }
      }
    }
  });
}

#[cfg(test)]
mod tests {
  use super::*;

  fn policy() -> ScalingConfig {
    ScalingConfig {
      auto: true,
      up_windows: 2,
      down_windows: 3,
      cooldown: Duration::from_secs(1),
      max_step: 2,
      ..ScalingConfig::new(2, 5)
    }
  }

  #[test]
  fn acts_only_after_enough_windows_and_the_cooldown() {
    let p = policy();
    let mut s = Streaks::default();
    let long = Duration::from_secs(10);
    assert_eq!(decide(&p, 2, 0.9, long, &mut s), Decision::Hold);
    // Second overloaded window: add up to maxStep.
    assert_eq!(decide(&p, 2, 0.9, long, &mut s), Decision::Up(2));
    // In the cooldown nothing happens, however full.
    for _ in 0..5 {
      assert_eq!(
        decide(&p, 4, 0.9, Duration::from_millis(10), &mut s),
        Decision::Hold
      );
    }
    // Never past maxShards: one more, then none.
    assert_eq!(decide(&p, 4, 0.9, long, &mut s), Decision::Up(1));
    decide(&p, 5, 0.9, long, &mut s);
    assert_eq!(decide(&p, 5, 0.9, long, &mut s), Decision::Hold);
  }

  #[test]
  fn hysteresis_between_thresholds_holds() {
    let p = policy();
    let mut s = Streaks::default();
    let long = Duration::from_secs(10);
    // Between the thresholds: neither streak grows.
    for _ in 0..10 {
      assert_eq!(decide(&p, 4, 0.4, long, &mut s), Decision::Hold);
    }
    // An interrupted idle streak starts over.
    decide(&p, 4, 0.0, long, &mut s);
    decide(&p, 4, 0.0, long, &mut s);
    decide(&p, 4, 0.5, long, &mut s);
    decide(&p, 4, 0.0, long, &mut s);
    decide(&p, 4, 0.0, long, &mut s);
    assert_eq!(decide(&p, 4, 0.0, long, &mut s), Decision::Down(2));
    // Never below minShards.
    for _ in 0..3 {
      decide(&p, 2, 0.0, long, &mut s);
    }
    assert_eq!(decide(&p, 2, 0.0, long, &mut s), Decision::Hold);
  }
}

//! How a `process()` worker joins its group: in the background, retrying while the store
//! is unreachable, until the bus closes. A configuration error ends the tries.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::member::Member;
use super::GroupOptions;
use crate::error::{Code, Result};
use crate::signal::Signal;

/// Longest wait between two tries.
const RETRY_CAP: Duration = Duration::from_secs(5);

/// Calls `start` until it gives a member; None once `closing` fires, the bus shuts down or
/// the options are refused. Failures are logged once, then every tenth try.
pub async fn with_retries<F, Fut>(
  opts: GroupOptions,
  closing: Arc<Signal>,
  start: F,
) -> Option<Member>
where
  F: Fn(GroupOptions) -> Fut,
  Fut: Future<Output = Result<Member>>,
{
  let mut failures = 0u32;
  loop {
    match start(opts.clone()).await {
      Ok(m) => return Some(m),
      Err(e) if e.code == Code::ShutDown => return None,
      Err(e) => {
        failures += 1;
        if failures % 10 == 1 {
          tracing::warn!(
            group = opts.group.as_str(),
            code = e.code.as_str(),
            "process({}) could not join its group (try {failures}; retrying): {}",
            opts.group,
            e.message
          );
        }
        if e.code == Code::InvalidConfig {
          return None;
        }
        let d = crate::retry::backoff(failures).min(RETRY_CAP);
        tokio::select! {
          _ = tokio::time::sleep(d) => {}
          _ = closing.wait() => return None,
        }
      }
    }
  }
}

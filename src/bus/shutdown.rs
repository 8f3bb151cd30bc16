//! Shutdown: stop accepting, let members commit and leave, drain the rings within
//! `shutdownTimeoutMs`, then flush and close the adapter.

use super::*;

/// Extra time given to the adapter's flush and close after the drain bound.
const ADAPTER_CLOSE_GRACE: Duration = Duration::from_secs(2);

impl Bus {
  /// Stops accepting, drains every ring, closes the adapter. Idempotent; concurrent callers
  /// share one shutdown. Bounded by `shutdownTimeoutMs` plus a short adapter close grace.
  pub async fn shutdown(&self) -> Stats {
    let mut rx = {
      let mut slot = self.core.shutdown.lock();
      match &*slot {
        Some(rx) => rx.clone(),
        None => {
          let (tx, rx) = watch::channel(None);
          *slot = Some(rx.clone());
          let core = self.core.clone();
          // A task, so the shutdown completes even if every caller stops waiting.
          self.core.rt.spawn(async move {
            let stats = run_shutdown(core).await;
            let _ = tx.send(Some(stats));
          });
          rx
        }
      }
    };
    let done = rx.wait_for(|v| v.is_some()).await;
    match done {
      Ok(v) => v.clone().unwrap_or_default(),
      Err(_) => self.stats(),
    }
  }

  /// Shuts down from a thread outside the runtime, waiting at most `bound`. Used at
  /// environment teardown, where JS runs no more: workers do not wait for their handlers
  /// (their events go back to the group). Returns None when the bound expired.
  pub fn shutdown_blocking(&self, bound: Duration) -> Option<Stats> {
    self.core.exiting.fire();
    let (tx, rx) = std::sync::mpsc::channel();
    let bus = self.clone();
    let abort = self.core.abort.clone();
    let cutoff = bound.saturating_sub(Duration::from_millis(200));
    self.core.rt.spawn(async move {
      // Stop retrying in time for the final counts to be reported.
      tokio::time::sleep(cutoff).await;
      abort.fire();
    });
    self.core.rt.spawn(async move {
      let _ = tx.send(bus.shutdown().await);
    });
    rx.recv_timeout(bound).ok()
  }

  /// Starts a shutdown without waiting for it (the JS object was garbage collected).
  pub fn shutdown_in_background(&self) {
    if self.core.shutdown.lock().is_some() {
      return;
    }
    let bus = self.clone();
    self.core.rt.spawn(async move {
      bus.shutdown().await;
    });
  }
}

async fn run_shutdown(core: Arc<BusCore>) -> Stats {
  core.state.store(SHUTTING_DOWN, Ordering::SeqCst);
  // Ingest holds no lock across I/O, so in-flight calls finish within microseconds.
  while core.active_ingests.load(Ordering::SeqCst) != 0 {
    tokio::task::yield_now().await;
  }
  core.closing.fire();
  let deadline = Instant::now() + core.config.shutdown_timeout;
  // Consumers and workers finish their handlers and commit while the adapter is open.
  let members: Vec<Arc<Signal>> = core.members.lock().clone();
  for done in members {
    if tokio::time::timeout_at(deadline.into(), done.wait())
      .await
      .is_err()
    {
      // Workers still waiting for handlers stop waiting, so their close() settles.
      core.released.fire();
      break;
    }
  }
  let mut handles = core.shards.close_all();
  for h in handles.iter_mut() {
    if tokio::time::timeout_at(deadline.into(), &mut *h)
      .await
      .is_err()
    {
      // Bound reached: dispatchers drop what is left (counted) and exit promptly.
      core.abort.fire();
      break;
    }
  }
  for h in handles {
    // A handle already awaited to completion must not be polled again.
    if !h.is_finished() {
      let _ = h.await;
    }
  }
  let grace = deadline
    .saturating_duration_since(Instant::now())
    .max(ADAPTER_CLOSE_GRACE);
  let _ = tokio::time::timeout(grace, core.adapter.flush()).await;
  let _ = tokio::time::timeout(ADAPTER_CLOSE_GRACE, core.adapter.close()).await;
  core.state.store(CLOSED, Ordering::SeqCst);
  core.identity.lock().take();
  Bus { core: core.clone() }.stats()
}

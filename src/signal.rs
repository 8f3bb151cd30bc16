//! A one-shot, level-triggered signal that any number of tasks can wait on.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Signal {
  fired: AtomicBool,
  notify: Notify,
}

impl Signal {
  pub fn new() -> Self {
    Self::default()
  }

  pub fn fire(&self) {
    self.fired.store(true, Ordering::SeqCst);
    self.notify.notify_waiters();
  }

  pub fn is_fired(&self) -> bool {
    self.fired.load(Ordering::SeqCst)
  }

  /// Resolves once `fire` has been called (immediately if it already was).
  pub async fn wait(&self) {
    loop {
      let notified = self.notify.notified();
      tokio::pin!(notified);
      // Register before checking the flag so a concurrent `fire` cannot be missed.
      notified.as_mut().enable();
      if self.is_fired() {
        return;
      }
      notified.await;
    }
  }
}

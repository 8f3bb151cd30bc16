//! Moving shards between members: taking an assigned shard, releasing one being handed
//! over once its delivered events are acked, and the signals that tell the other members
//! at once instead of at their next renewal.

use std::sync::atomic::Ordering;

use super::Member;
use crate::adapter::group_store::Signals;
use crate::group::record::CommitRecord;

impl Member {
  /// Tells the group's other members that shards may have moved.
  pub(super) async fn signal(&self) {
    let opts = &self.inner.opts;
    self.store().signal(&opts.group, &opts.member).await;
  }

  /// Takes the lease of a shard assigned to this member and starts it from its commit
  /// record (or the group's start).
  pub(super) async fn take_shard(&self, s: u32) {
    let store = self.store();
    let (g, me) = (
      self.inner.opts.group.as_str(),
      self.inner.opts.member.as_str(),
    );
    if !matches!(store.lease(g, s, me, self.inner.opts.lease).await, Ok(true)) {
      return;
    }
    let record = match store.committed(g, s).await {
      Ok(Some(text)) => CommitRecord::decode(&text).unwrap_or_else(|| CommitRecord {
        // Unreadable: start over from the group's start (at least once).
        watermark: self.inner.start.position(s),
        ..Default::default()
      }),
      Ok(None) => CommitRecord {
        watermark: self.inner.start.position(s),
        ..Default::default()
      },
      Err(_) => {
        let _ = store.release(g, s, me).await;
        return;
      }
    };
    self
      .inner
      .meters
      .leases_taken
      .fetch_add(1, Ordering::Relaxed);
    tracing::info!(
      group = g,
      member = me,
      shard = s,
      from = record.watermark.as_deref().unwrap_or("start"),
      "took shard {s}"
    );
    self.inner.state.lock().take_shard(s, record);
    self.inner.room.notify_one();
  }

  /// Shards being handed over are released once their delivered events are acked (or
  /// after `ackWaitMs`): a happy-path rebalance delivers nothing twice.
  pub(super) async fn finish_handovers(&self) {
    let ack_wait = self.inner.opts.ack_wait;
    let ready: Vec<u32> = {
      let st = self.inner.state.lock();
      st.shards
        .iter()
        .filter(|(_, o)| {
          o.draining.is_some_and(|since| {
            since.elapsed() >= ack_wait || o.count(super::ledger::Status::Out) == 0
          })
        })
        .map(|(s, _)| *s)
        .collect()
    };
    if ready.is_empty() {
      return;
    }
    {
      let mut st = self.inner.state.lock();
      for s in &ready {
        st.rewrite_commit(*s);
      }
    }
    if self.flush().await.is_err() {
      return;
    }
    let store = self.store();
    for s in ready {
      tracing::info!(group = %self.inner.opts.group, member = %self.inner.opts.member, shard = s, "handed shard {s} over, acks committed");
      self.inner.state.lock().forget(s);
      let _ = store
        .release(&self.inner.opts.group, s, &self.inner.opts.member)
        .await;
    }
    self.signal().await;
  }
}

/// Waits for a signal from another member (true); false when the watch ended, after which
/// this waits forever (the renewal timer alone moves shards). Own signals are skipped.
pub(super) async fn next_signal(signals: &mut Option<Signals>, me: &str) -> bool {
  let Some(rx) = signals.as_mut() else {
    return std::future::pending().await;
  };
  loop {
    match rx.recv().await {
      Some(from) if from == me => continue,
      Some(_) => return true,
      None => {
        *signals = None;
        return false;
      }
    }
  }
}

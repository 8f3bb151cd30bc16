//! Group signals over core NATS: one subject per group, `rbg.<stream>.<group>.moved`,
//! carrying the sending member's name. The client subscribes again by itself after a
//! reconnect; signals sent meanwhile are lost and the members' timers move the shards.

use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::adapter::group_store::{Signals, SIGNALS_QUEUED};

pub fn subject(stream: &str, group: &str) -> String {
  format!("rbg.{stream}.{group}.moved")
}

/// Forwards the subject's messages until the receiver is dropped (which unsubscribes).
pub async fn watch(client: &async_nats::Client, subject: String) -> Option<Signals> {
  let mut sub = client.subscribe(subject).await.ok()?;
  let (tx, rx) = mpsc::channel(SIGNALS_QUEUED);
  tokio::spawn(async move {
    loop {
      let msg = tokio::select! {
        _ = tx.closed() => break,
        msg = sub.next() => msg,
      };
      let Some(msg) = msg else { break };
      let member = String::from_utf8_lossy(&msg.payload).into_owned();
      if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(member) {
        break;
      }
    }
    let _ = sub.unsubscribe().await;
  });
  Some(rx)
}

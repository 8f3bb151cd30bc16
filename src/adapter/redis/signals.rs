//! Group signals over Redis pub/sub: one channel per group, `{<prefix>:g:<group>}:moved`,
//! carrying the sending member's name. A watch holds its own pub/sub connection and
//! subscribes again after the connection drops; meanwhile members renew on their timer.

use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::adapter::group_store::{Signals, SIGNALS_QUEUED};

/// Publishes `member` on `channel` through the adapter's write connection.
pub fn publish(channel: &str, member: &str) -> redis::Cmd {
  let mut cmd = redis::cmd("PUBLISH");
  cmd.arg(channel).arg(member);
  cmd
}

/// Subscribes to `channel` on connections made from `client` until the receiver is dropped.
pub fn watch(client: redis::Client, channel: String) -> Signals {
  let (tx, rx) = mpsc::channel(SIGNALS_QUEUED);
  tokio::spawn(async move {
    let mut failures = 0u32;
    loop {
      let ended = tokio::select! {
        _ = tx.closed() => return,
        ended = forward(&client, &channel, &tx) => ended,
      };
      match ended {
        Ended::Gone => return,
        // It was subscribed: a connection that drops after working starts the backoff
        // over, so a server restart an hour later does not wait the longest pause.
        Ended::Dropped { subscribed: true } => failures = 0,
        Ended::Dropped { subscribed: false } => {}
      }
      failures += 1;
      let pause = crate::retry::backoff(failures);
      tokio::select! {
        _ = tx.closed() => return,
        _ = tokio::time::sleep(pause) => {}
      }
    }
  });
  rx
}

/// Why [`forward`] returned.
enum Ended {
  /// The receiver is gone: stop watching.
  Gone,
  /// The connection failed or dropped; `subscribed`: after the subscription had worked.
  Dropped { subscribed: bool },
}

/// Forwards messages until the connection drops or the receiver is gone.
async fn forward(client: &redis::Client, channel: &str, tx: &mpsc::Sender<String>) -> Ended {
  let Ok(mut pubsub) = client.get_async_pubsub().await else {
    return Ended::Dropped { subscribed: false };
  };
  if pubsub.subscribe(channel).await.is_err() {
    return Ended::Dropped { subscribed: false };
  }
  let mut messages = pubsub.on_message();
  while let Some(msg) = messages.next().await {
    let member: String = msg.get_payload().unwrap_or_default();
    if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(member) {
      return Ended::Gone;
    }
  }
  Ended::Dropped { subscribed: true }
}

//! Publish acknowledgements through one subscription.
//!
//! async-nats's `send_publish` gives every message its own inbox, a oneshot channel, an ack
//! timeout and a permit, and parses each ack into an untagged enum; on the 2-core bench
//! machine that client work competed with nats-server for CPU. Here each message is a plain
//! publish whose reply subject is `<inbox>.<write>.<index>`; one subscription on
//! `<inbox>.>` receives every ack, and a router task hands it to the write it belongs to
//! over that write's channel, bounded by the write's own event count.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_nats::{Client, StatusCode};
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::mpsc;

/// What the server answered to one publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
  /// Stored now or earlier (a duplicate ack means an earlier attempt stored it).
  Stored,
  /// JetStream refused it: the server's description.
  Refused(String),
  /// No stream listens on the subject.
  NoStream,
}

type Routes = Arc<Mutex<HashMap<u64, mpsc::Sender<(usize, Ack)>>>>;

pub struct AckRouter {
  prefix: String,
  routes: Routes,
  next: AtomicU64,
  task: tokio::task::JoinHandle<()>,
}

impl Drop for AckRouter {
  fn drop(&mut self) {
    self.task.abort();
  }
}

/// One write's view of the acks: its reply subjects and the channel they arrive on.
pub struct Route {
  id: u64,
  prefix: String,
  routes: Routes,
  pub acks: mpsc::Receiver<(usize, Ack)>,
}

impl Route {
  /// The reply subject of the write's `index`th event.
  pub fn reply(&self, index: usize) -> String {
    format!("{}.{}.{}", self.prefix, self.id, index)
  }
}

impl Drop for Route {
  fn drop(&mut self) {
    // Acks that arrive after the write gave up are dropped by the router.
    self.routes.lock().remove(&self.id);
  }
}

#[derive(Deserialize)]
struct Reply {
  #[serde(default)]
  seq: Option<u64>,
  #[serde(default)]
  error: Option<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
  #[serde(default)]
  err_code: u64,
  #[serde(default)]
  description: String,
}

/// Reads one reply of the server to a publish.
pub fn parse(status: Option<StatusCode>, payload: &[u8]) -> Ack {
  if status == Some(StatusCode::NO_RESPONDERS) {
    return Ack::NoStream;
  }
  match serde_json::from_slice::<Reply>(payload) {
    Ok(Reply { error: Some(e), .. }) => Ack::Refused(format!(
      "{} (JetStream error {})",
      e.description, e.err_code
    )),
    Ok(Reply { seq: Some(_), .. }) => Ack::Stored,
    _ => Ack::Refused(format!(
      "unexpected reply {:?}",
      String::from_utf8_lossy(&payload[..payload.len().min(200)])
    )),
  }
}

/// `(write id, index)` from a reply subject under `prefix`.
fn target(prefix: &str, subject: &str) -> Option<(u64, usize)> {
  let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
  let (id, index) = rest.split_once('.')?;
  Some((id.parse().ok()?, index.parse().ok()?))
}

impl AckRouter {
  /// Subscribes to the acks of this connection's publishes.
  pub async fn start(client: &Client) -> Result<AckRouter, async_nats::SubscribeError> {
    let prefix = client.new_inbox();
    let mut sub = client.subscribe(format!("{prefix}.>")).await?;
    let routes: Routes = Arc::default();
    let task = {
      let (prefix, routes) = (prefix.clone(), routes.clone());
      tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
          let Some((id, index)) = target(&prefix, &msg.subject) else {
            continue;
          };
          let ack = parse(msg.status, &msg.payload);
          if let Some(tx) = routes.lock().get(&id) {
            // Room for every event of the write; a second reply to one is dropped.
            let _ = tx.try_send((index, ack));
          }
        }
      })
    };
    Ok(AckRouter {
      prefix,
      routes,
      next: AtomicU64::new(0),
      task,
    })
  }

  /// Registers a write of `events` messages.
  pub fn route(&self, events: usize) -> Route {
    let id = self.next.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(events.max(1));
    self.routes.lock().insert(id, tx);
    Route {
      id,
      prefix: self.prefix.clone(),
      routes: self.routes.clone(),
      acks: rx,
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn reads_the_servers_replies() {
    assert_eq!(parse(None, br#"{"stream":"s","seq":7}"#), Ack::Stored);
    assert_eq!(
      parse(None, br#"{"stream":"s","seq":7,"duplicate":true}"#),
      Ack::Stored
    );
    assert_eq!(
      parse(
        None,
        br#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}"#
      ),
      Ack::Refused("maximum messages exceeded (JetStream error 10077)".into())
    );
    assert_eq!(parse(Some(StatusCode::NO_RESPONDERS), b""), Ack::NoStream);
    assert!(matches!(parse(None, b"garbage"), Ack::Refused(_)));
  }

  #[test]
  fn reply_subjects_name_their_write_and_index() {
    assert_eq!(target("_INBOX.abc", "_INBOX.abc.12.345"), Some((12, 345)));
    assert_eq!(target("_INBOX.abc", "_INBOX.abcd.1.2"), None);
    assert_eq!(target("_INBOX.abc", "_INBOX.abc.1"), None);
    assert_eq!(target("_INBOX.abc", "_INBOX.abc.x.2"), None);
  }
}

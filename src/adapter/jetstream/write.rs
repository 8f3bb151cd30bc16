//! Writes: each event is a plain publish with `Nats-Msg-Id` and a reply subject routed to
//! this write (see `acks.rs`), pipelined through a window of `maxInFlight` unanswered
//! publishes. The server's duplicate window turns retries into exactly-once storage.

use async_nats::client::PublishErrorKind;
use async_nats::HeaderMap;

use super::acks::Ack;
use super::decode::{header_escape, H_KEY, H_META, H_MSG_ID};
use super::stream::all_shards_subject;
use super::JetStreamAdapter;
use crate::adapter::{meta, AdapterError, Outcome, WriteBatch, WriteResult};

impl JetStreamAdapter {
  pub(super) async fn write_batch(
    &self,
    batch: WriteBatch<'_>,
  ) -> Result<WriteResult, AdapterError> {
    let subject = async_nats::Subject::from(self.subject(batch.shard));
    let mut route = self.acks.route(batch.events.len());
    let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.events.len()];
    let (mut sent, mut settled) = (0usize, 0usize);
    let mut failed_at: Option<usize> = None;
    let mut silent = false;
    let timeout = self.config.request_timeout;
    for (i, ev) in batch.events.iter().enumerate() {
      // A bounded window: wait for acks while `maxInFlight` are unanswered.
      while sent - settled >= self.config.max_in_flight {
        match tokio::time::timeout(timeout, route.acks.recv()).await {
          Ok(Some((j, ack))) => settled += self.settle(&mut outcomes, j, ack),
          _ => {
            silent = true;
            break;
          }
        }
      }
      if silent {
        failed_at = Some(i);
        break;
      }
      let mut headers = HeaderMap::new();
      headers.insert(
        H_MSG_ID,
        batch
          .producer
          .message_id(batch.shard, ev.seq)
          .to_string()
          .as_str(),
      );
      let mut meta = String::with_capacity(40);
      meta::write(&mut meta, ev.timestamp_ms, ev.seq, ev.kind, ev.stamp);
      headers.insert(H_META, meta.as_str());
      // The event's own headers go under their names, so NATS clients see them as sent
      // (names never collide: Rb-* and Nats-* are refused at ingest).
      for (name, value) in ev.headers.iter().flat_map(|h| h.iter()) {
        headers.insert(name.as_ref(), header_escape(value).as_str());
      }
      if let Some(k) = &ev.key {
        headers.insert(H_KEY, header_escape(k).as_str());
      }
      let publish = self.client.publish_with_reply_and_headers(
        subject.clone(),
        route.reply(i),
        headers,
        ev.payload.clone(),
      );
      match tokio::time::timeout(timeout, publish).await {
        Ok(Ok(())) => sent += 1,
        failed => {
          let (kind, text) = match failed {
            Ok(Err(e)) => (Some(e.kind()), e.to_string()),
            _ => (
              None,
              "the connection did not take the message in time".to_string(),
            ),
          };
          outcomes[i] = Some(self.outcome_of_send(kind, text));
          // Later events are not sent: sending them now could store them ahead of this one.
          failed_at = Some(i);
          break;
        }
      }
    }
    // After a silent window, waiting again would only double the delay before the retry.
    while settled < sent && !silent {
      match tokio::time::timeout(timeout, route.acks.recv()).await {
        Ok(Some((j, ack))) => settled += self.settle(&mut outcomes, j, ack),
        _ => break,
      }
    }
    let unanswered = self.adapter_error(
      true,
      format!(
        "JetStream did not acknowledge within requestTimeoutMs ({} ms)",
        timeout.as_millis()
      ),
    );
    let not_sent = AdapterError::retryable("not sent: an earlier event of the batch failed");
    Ok(WriteResult::PerEvent(
      outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| match o {
          Some(o) => o,
          None if i < sent => Outcome::Retry(unanswered.clone()),
          None => {
            debug_assert!(failed_at.is_some_and(|f| i >= f));
            Outcome::Retry(not_sent.clone())
          }
        })
        .collect(),
    ))
  }

  fn outcome_of_send(&self, kind: Option<PublishErrorKind>, text: String) -> Outcome {
    match kind {
      Some(PublishErrorKind::MaxPayloadExceeded) => Outcome::Reject(self.adapter_error(
        false,
        format!(
          "event rejected by NATS ({text}); lower maxEventBytes below the server's max_payload"
        ),
      )),
      _ if text.contains("Permissions Violation") || text.contains("authorization") => {
        Outcome::Reject(self.adapter_error(
          false,
          format!("publish refused by NATS: {text}; check the account's permissions"),
        ))
      }
      _ => Outcome::Retry(self.adapter_error(true, format!("JetStream publish failed: {text}"))),
    }
  }

  /// Records the ack of event `index`; 1 when it is the first answer for it.
  fn settle(&self, outcomes: &mut [Option<Outcome>], index: usize, ack: Ack) -> usize {
    let Some(slot) = outcomes.get_mut(index) else {
      return 0;
    };
    if slot.is_some() {
      return 0;
    }
    *slot = Some(match ack {
      Ack::Stored => Outcome::Stored,
      Ack::NoStream => Outcome::Retry(self.adapter_error(
        true,
        format!(
          "no JetStream stream takes {}; was stream {} deleted?",
          all_shards_subject(&self.config.stream),
          self.config.stream
        ),
      )),
      Ack::Refused(text) => {
        Outcome::Retry(self.adapter_error(true, format!("JetStream refused the publish: {text}")))
      }
    });
    1
  }
}

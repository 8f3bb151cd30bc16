//! Consumer-group letters in the JetStream bucket (`dead.<group>.<id>`, `back.<group>.<id>`):
//! written, paged in stream order, counted and taken by id.

use std::ops::ControlFlow;

use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use async_nats::Message;
use bytes::Bytes;
use futures_util::StreamExt;

use super::groups::live;
use super::JetStreamAdapter;
use crate::adapter::group_store::{letter_id, Letter, LetterPage, Tray};
use crate::adapter::AdapterError;
use crate::clock::now_ms;

impl JetStreamAdapter {
  /// Reads the tray's messages from `deliver` on, in stream order, handing each to `visit`
  /// with its stream sequence and whether it is a removal marker; stops when `visit` says
  /// so or at the end.
  async fn walk_tray(
    &self,
    what: &str,
    prefix: &str,
    deliver: DeliverPolicy,
    headers_only: bool,
    mut visit: impl FnMut(Message, u64, bool) -> ControlFlow<()>,
  ) -> Result<(), AdapterError> {
    let kv = self.bucket().await?;
    let consumer = kv
      .stream
      .create_consumer(push::OrderedConfig {
        deliver_subject: self.client.new_inbox(),
        description: Some(format!("ringbus {what}")),
        filter_subject: format!("{prefix}>"),
        deliver_policy: deliver,
        replay_policy: ReplayPolicy::Instant,
        headers_only,
        ..Default::default()
      })
      .await
      .map_err(|e| self.kv_err(what, e))?;
    if consumer.cached_info().num_pending == 0 {
      return Ok(());
    }
    let mut messages = consumer
      .messages()
      .await
      .map_err(|e| self.kv_err(what, e))?;
    loop {
      let next = tokio::time::timeout(self.config.request_timeout, messages.next()).await;
      let message = match next {
        Ok(Some(Ok(m))) => m,
        Ok(Some(Err(e))) => return Err(self.kv_err(what, e)),
        Ok(None) => return Ok(()),
        Err(_) => return Err(self.kv_err(what, "timed out")),
      };
      let info = message.info().map_err(|e| self.kv_err(what, e))?;
      let (seq, pending) = (info.stream_sequence, info.pending);
      // Removed letters leave a delete or purge marker behind.
      let removed = message
        .headers
        .as_ref()
        .and_then(|h| h.get("KV-Operation"))
        .is_some();
      if visit(message.message, seq, removed).is_break() || pending == 0 {
        return Ok(());
      }
    }
  }

  /// The tray's subject prefix, `$KV.<bucket>.<tray>.<group>.`.
  async fn tray_prefix(&self, group: &str, tray: Tray) -> Result<String, AdapterError> {
    Ok(format!(
      "{}{}.{group}.",
      self.bucket().await?.prefix,
      tray.name()
    ))
  }

  pub(super) async fn letters_count(&self, group: &str, tray: Tray) -> Result<u64, AdapterError> {
    // Each key's last message: a letter, or the marker of its removal.
    let prefix = self.tray_prefix(group, tray).await?;
    let mut count = 0;
    self
      .walk_tray(
        "letter count",
        &prefix,
        DeliverPolicy::LastPerSubject,
        true,
        |_, _, removed| {
          count += u64::from(!removed);
          ControlFlow::Continue(())
        },
      )
      .await?;
    Ok(count)
  }

  pub(super) async fn letters_put(
    &self,
    group: &str,
    tray: Tray,
    letters: &[Letter],
  ) -> Result<(), AdapterError> {
    let kv = self.bucket().await?;
    let now = now_ms();
    // A KV value is one message: it must fit the server's max_payload, with room for the
    // subject and headers the KV layer adds.
    let limit = self.client.server_info().max_payload.saturating_sub(4096);
    for (i, l) in letters.iter().enumerate() {
      let mut b = [0u8; 2];
      let _ = getrandom::fill(&mut b);
      // Time, index and a random part: unique across members writing at the same time.
      let id = letter_id(now, (i as u64) * 65536 + u16::from_le_bytes(b) as u64);
      let key = format!("{}.{group}.{id}", tray.name());
      kv.put(key, Bytes::from(l.encode_within(limit)))
        .await
        .map_err(|e| self.kv_err("letter write", e))?;
    }
    Ok(())
  }

  pub(super) async fn letters_page(
    &self,
    group: &str,
    tray: Tray,
    after: Option<&str>,
    limit: usize,
  ) -> Result<LetterPage, AdapterError> {
    // Pages follow the stream: the cursor is `<stream sequence>-0` of the page's last
    // letter, and a page reads on from there through the tray's subjects only (listing
    // the bucket's keys for every page made paging through all letters quadratic).
    let start = match after {
      None => 1,
      Some(a) => a
        .split_once('-')
        .and_then(|(seq, _)| seq.parse::<u64>().ok())
        .map(|seq| seq.saturating_add(1))
        .ok_or_else(|| AdapterError {
          code: crate::error::Code::InvalidCursor,
          retryable: false,
          message: format!("dead letter cursor {a:?} is not one returned by deadLetters()"),
        })?,
    };
    let prefix = self.tray_prefix(group, tray).await?;
    let mut page = LetterPage::default();
    let deliver = DeliverPolicy::ByStartSequence {
      start_sequence: start,
    };
    self
      .walk_tray(
        "letter listing",
        &prefix,
        deliver,
        false,
        |message, seq, removed| {
          if removed {
            return ControlFlow::Continue(());
          }
          if page.letters.len() == limit {
            page.has_more = true;
            return ControlFlow::Break(());
          }
          let id = message.subject.as_str().strip_prefix(&prefix).unwrap_or("");
          if let Some(letter) = Letter::decode(id, &message.payload) {
            page.letters.push(letter);
            page.next = Some(format!("{seq}-0"));
          }
          ControlFlow::Continue(())
        },
      )
      .await?;
    Ok(page)
  }

  pub(super) async fn letters_take(
    &self,
    group: &str,
    tray: Tray,
    ids: &[String],
  ) -> Result<Vec<Letter>, AdapterError> {
    let kv = self.bucket().await?;
    let mut out = Vec::new();
    for id in ids {
      let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit() || b == b'-');
      if !valid {
        continue;
      }
      let key = format!("{}.{group}.{id}", tray.name());
      let Some(entry) = kv
        .entry(&key)
        .await
        .map_err(|e| self.kv_err("letter read", e))?
      else {
        continue;
      };
      if !live(&entry) {
        continue;
      }
      kv.purge(&key)
        .await
        .map_err(|e| self.kv_err("letter removal", e))?;
      out.extend(Letter::decode(id, &entry.value));
    }
    Ok(out)
  }
}

//! Consumer-group letters in the JetStream bucket (`dead.<group>.<id>`, `back.<group>.<id>`):
//! written, paged in stream order, counted and taken by id.

use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use bytes::Bytes;
use futures_util::StreamExt;

use super::groups::live;
use super::JetStreamAdapter;
use crate::adapter::group_store::{letter_id, Letter, LetterPage, Tray};
use crate::adapter::AdapterError;
use crate::clock::now_ms;

impl JetStreamAdapter {
  pub(super) async fn letters_count(&self, group: &str, tray: Tray) -> Result<u64, AdapterError> {
    // Removed letters leave a marker under their key: count the keys whose last message
    // is a letter.
    let kv = self.bucket().await?;
    let consumer = kv
      .stream
      .create_consumer(push::OrderedConfig {
        deliver_subject: self.client.new_inbox(),
        description: Some("ringbus letter count".into()),
        filter_subject: format!("{}{}.{group}.>", kv.prefix, tray.name()),
        deliver_policy: DeliverPolicy::LastPerSubject,
        replay_policy: ReplayPolicy::Instant,
        headers_only: true,
        ..Default::default()
      })
      .await
      .map_err(|e| self.kv_err("letter count", e))?;
    if consumer.cached_info().num_pending == 0 {
      return Ok(0);
    }
    let mut messages = consumer
      .messages()
      .await
      .map_err(|e| self.kv_err("letter count", e))?;
    let mut count = 0;
    loop {
      let next = tokio::time::timeout(self.config.request_timeout, messages.next()).await;
      let message = match next {
        Ok(Some(Ok(m))) => m,
        Ok(Some(Err(e))) => return Err(self.kv_err("letter count", e)),
        Ok(None) => break,
        Err(_) => return Err(self.kv_err("letter count", "timed out")),
      };
      let removed = message
        .headers
        .as_ref()
        .and_then(|h| h.get("KV-Operation"))
        .is_some();
      if !removed {
        count += 1;
      }
      let pending = message
        .info()
        .map_err(|e| self.kv_err("letter count", e))?
        .pending;
      if pending == 0 {
        break;
      }
    }
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
    let kv = self.bucket().await?;
    let prefix = format!("{}{}.{group}.", kv.prefix, tray.name());
    let consumer = kv
      .stream
      .create_consumer(push::OrderedConfig {
        deliver_subject: self.client.new_inbox(),
        description: Some("ringbus letter page".into()),
        filter_subject: format!("{prefix}>"),
        deliver_policy: DeliverPolicy::ByStartSequence {
          start_sequence: start,
        },
        replay_policy: ReplayPolicy::Instant,
        ..Default::default()
      })
      .await
      .map_err(|e| self.kv_err("letter listing", e))?;
    let mut page = LetterPage::default();
    if consumer.cached_info().num_pending == 0 {
      return Ok(page);
    }
    let mut messages = consumer
      .messages()
      .await
      .map_err(|e| self.kv_err("letter listing", e))?;
    loop {
      let next = tokio::time::timeout(self.config.request_timeout, messages.next()).await;
      let message = match next {
        Ok(Some(Ok(m))) => m,
        Ok(Some(Err(e))) => return Err(self.kv_err("letter listing", e)),
        Ok(None) => break,
        Err(_) => return Err(self.kv_err("letter listing", "timed out")),
      };
      let info = message
        .info()
        .map_err(|e| self.kv_err("letter listing", e))?;
      let (seq, pending) = (info.stream_sequence, info.pending);
      // Removed letters leave a delete or purge marker behind.
      let removed = message
        .headers
        .as_ref()
        .and_then(|h| h.get("KV-Operation"))
        .is_some();
      if !removed {
        if page.letters.len() == limit {
          page.has_more = true;
          break;
        }
        let id = message.subject.as_str().strip_prefix(&prefix).unwrap_or("");
        if let Some(letter) = Letter::decode(id, &message.payload) {
          page.letters.push(letter);
          page.next = Some(format!("{seq}-0"));
        }
      }
      if pending == 0 {
        break;
      }
    }
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

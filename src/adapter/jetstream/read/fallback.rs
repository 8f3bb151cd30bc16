//! Reads while consumers cannot be placed (a cluster settling): message by message
//! through the stream leader, for `FALLBACK_PERIOD` after a consumer creation failed.

use super::*;

impl JetStreamAdapter {
  pub(super) fn fallback_active(&self) -> bool {
    let mut until = self.fallback_until.lock();
    match *until {
      Some(t) if t > std::time::Instant::now() => true,
      Some(_) => {
        *until = None;
        false
      }
      None => false,
    }
  }

  /// Reads message by message through the stream leader (`next_by_subj` requests): slower
  /// than a consumer, but needs no consumer placement.
  pub(super) async fn read_by_request(
    &self,
    shard: u32,
    position: u64,
    limit: usize,
  ) -> Result<ReadPage, AdapterError> {
    let stream = self
      .js
      .get_stream_no_info(&self.config.stream)
      .await
      .map_err(|e| {
        self.adapter_error(
          true,
          format!("JetStream read on {} failed: {e}", what(shard)),
        )
      })?;
    let subject = self.subject(shard);
    let mut page = ReadPage::default();
    let mut next = position + 1;
    for _ in 0..limit.min(FALLBACK_PAGE) {
      let got = stream
        .raw_message_builder()
        .sequence(next)
        .next_by_subject(subject.clone())
        .send()
        .await;
      match got {
        Ok(msg) => {
          if let Some(of) = self.shard_of(shard, msg.sequence, &msg.subject) {
            if let Some(ev) = self.decode(of, msg.sequence, Some(&msg.headers), &msg.payload) {
              page.events.push(ev);
            }
          }
          page.next = Some(msg.sequence.to_string());
          next = msg.sequence + 1;
        }
        Err(e)
          if e.kind() == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound =>
        {
          page.has_more = false;
          return Ok(page);
        }
        Err(e) if page.next.is_none() => {
          return Err(self.adapter_error(
            true,
            format!("JetStream read on {} failed: {e}", what(shard)),
          ))
        }
        Err(_) => break,
      }
    }
    page.has_more = true;
    Ok(page)
  }
}

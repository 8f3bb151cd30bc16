//! The record format on the stream: the payload is the event itself; its metadata travels
//! in headers (`Rb`: timestamp, sequence, kind; `Rb-Key`: the key, percent-escaped;
//! `Nats-Msg-Id`: the message id the server deduplicates by).

use std::sync::atomic::Ordering;

use async_nats::HeaderMap;

use super::JetStreamAdapter;
use crate::adapter::meta;
use crate::event::StoredEvent;

/// `<timestamp ms> <sequence> <json|bytes>`: one header, because every header line costs
/// the server parsing time on each publish.
pub(super) const H_META: &str = "Rb";
pub(super) const H_KEY: &str = "Rb-Key";
pub(super) const H_MSG_ID: &str = "Nats-Msg-Id";

/// Corrupt records logged individually before going quiet (the count keeps growing).
const MAX_LOGGED_CORRUPT: usize = 1024;

pub(super) fn header_escape(key: &str) -> String {
  let mut out = String::with_capacity(key.len());
  for c in key.chars() {
    // Spaces too: NATS trims header values, which would change a key like ' lead'.
    if c == '%' || c == ' ' || c.is_control() || !c.is_ascii() {
      let mut buf = [0u8; 4];
      for b in c.encode_utf8(&mut buf).bytes() {
        out.push_str(&format!("%{b:02X}"));
      }
    } else {
      out.push(c);
    }
  }
  out
}

pub(super) fn header_unescape(s: &str) -> Option<String> {
  let bytes = s.as_bytes();
  let mut out = Vec::with_capacity(bytes.len());
  let mut i = 0;
  while i < bytes.len() {
    if bytes[i] == b'%' {
      let hex = s.get(i + 1..i + 3)?;
      out.push(u8::from_str_radix(hex, 16).ok()?);
      i += 3;
    } else {
      out.push(bytes[i]);
      i += 1;
    }
  }
  String::from_utf8(out).ok()
}

impl JetStreamAdapter {
  pub(super) fn note_corrupt(&self, stream_seq: u64, reason: &str) {
    self.corrupt.fetch_add(1, Ordering::Relaxed);
    let mut logged = self.logged.lock();
    if logged.len() < MAX_LOGGED_CORRUPT && logged.insert(stream_seq) {
      let stream = &self.config.stream;
      tracing::warn!(
        stream = %stream,
        seq = stream_seq,
        reason,
        "skipped a corrupt record in JetStream stream {stream} at sequence {stream_seq}: {reason}"
      );
    }
  }

  /// Turns a delivered message into an event, or None (counted) when it cannot be read.
  pub(super) fn decode(
    &self,
    shard: u32,
    stream_seq: u64,
    headers: Option<&HeaderMap>,
    payload: &bytes::Bytes,
  ) -> Option<StoredEvent> {
    record(shard, stream_seq, headers, payload)
      .map_err(|reason| self.note_corrupt(stream_seq, reason))
      .ok()
  }
}

/// A stored message as an event, or why it cannot be read. Any headers and bytes give one
/// or the other, never a panic (`tests/properties.rs`, `fuzz/`).
pub fn record(
  shard: u32,
  stream_seq: u64,
  headers: Option<&HeaderMap>,
  payload: &bytes::Bytes,
) -> Result<StoredEvent, &'static str> {
  let headers = match headers {
    Some(h) => h,
    None => {
      return Err("no ringbus headers");
    }
  };
  let get = |name: &str| headers.get(name).map(|v| v.as_str().to_string());
  let meta = get(H_META).unwrap_or_default();
  let key = match get(H_KEY) {
    Some(k) => match header_unescape(&k) {
      Some(k) => Some(std::sync::Arc::from(k)),
      None => {
        return Err("undecodable Rb-Key header");
      }
    },
    None => None,
  };
  let Some(meta::Meta {
    timestamp_ms: ts,
    seq,
    kind,
    stamp,
    ..
  }) = meta::parse(&meta)
  else {
    return Err("missing or invalid Rb header");
  };
  if !meta::payload_is_valid(kind, payload) {
    return Err("payload marked JSON is not valid JSON");
  }
  let mut own = Vec::new();
  for (name, values) in headers.iter() {
    let name = name.to_string();
    if crate::event::is_reserved_header(&name) {
      continue;
    }
    let Some(value) = values.first().and_then(|v| header_unescape(v.as_str())) else {
      return Err("undecodable event header");
    };
    own.push((name, value));
  }
  // The map keeps no order: sorted, so every read of an event gives the same.
  own.sort();
  Ok(StoredEvent {
    id: stream_seq.to_string(),
    position: stream_seq.to_string(),
    shard,
    seq,
    timestamp_ms: ts,
    kind,
    key,
    payload: payload.clone(),
    message_id: get(H_MSG_ID).unwrap_or_default(),
    stamp,
    headers: crate::event::headers_from_pairs(own),
  })
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn keys_survive_header_escaping() {
    for k in [
      "plain",
      "with space",
      " lead",
      "trail ",
      "  ",
      "π/ü",
      "line\nbreak",
      "100%",
    ] {
      let e = header_escape(k);
      assert!(!e.contains('\n') && !e.contains(' ') && e.is_ascii());
      assert_eq!(header_unescape(&e).as_deref(), Some(k));
    }
  }
}

//! Stream entries back into events.

use std::sync::Arc;

use bytes::Bytes;
use redis::Value;

use crate::event::StoredEvent;

/// Whether `p` is a stream entry id (`<ms>-<seq>`), as cursor positions must be.
pub fn is_entry_id(p: &str) -> bool {
  // Both parts must fit Redis's 64-bit fields: a longer number would pass a syntax check
  // and then fail every read on the server.
  let part =
    |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok();
  // The largest id has no successor: Redis refuses an exclusive range that starts there,
  // and no entry can follow it, so no reader ever stops at it.
  let last = p == "18446744073709551615-18446744073709551615";
  match p.split_once('-') {
    Some((ms, seq)) => part(ms) && part(seq) && !last,
    None => false,
  }
}

fn text(v: Value) -> Option<Vec<u8>> {
  match v {
    Value::BulkString(b) => Some(b),
    Value::SimpleString(s) => Some(s.into_bytes()),
    _ => None,
  }
}

/// One entry of an `XRANGE`/`XREAD` reply: its id, and the event or why it is unreadable.
pub fn entry(shard: u32, v: Value) -> Option<(String, Result<StoredEvent, &'static str>)> {
  let Value::Array(mut parts) = v else {
    return None;
  };
  if parts.len() != 2 {
    return None;
  }
  let fields = parts.pop()?;
  let id = String::from_utf8(text(parts.pop()?)?).ok()?;
  let event = decode_fields(shard, &id, fields);
  Some((id, event))
}

fn decode_fields(shard: u32, id: &str, fields: Value) -> Result<StoredEvent, &'static str> {
  let Value::Array(items) = fields else {
    return Err("fields are not a list");
  };
  let (mut data, mut meta, mut key, mut headers) = (None, None, None, None);
  let mut items = items.into_iter();
  while let (Some(name), Some(value)) = (items.next(), items.next()) {
    let name = text(name).ok_or("a field name is not a string")?;
    let value = text(value).ok_or("a field value is not a string")?;
    match name.as_slice() {
      b"d" => data = Some(value),
      b"m" => meta = Some(value),
      b"k" => key = Some(value),
      b"h" => headers = Some(value),
      _ => {}
    }
  }
  let data = data.ok_or("no 'd' (payload) field")?;
  let meta = meta.ok_or("no 'm' (meta) field")?;
  let meta = std::str::from_utf8(&meta).map_err(|_| "'m' is not text")?;
  let Some(parsed) = super::super::meta::parse(meta) else {
    return Err("'m' is not '<timestamp> <sequence> <json|bytes> <epoch>/<span> <message id>'");
  };
  let message_id = parsed.rest;
  if message_id.is_empty() || message_id.contains(' ') {
    return Err("'m' does not end with the message id");
  }
  let (ts, seq, kind) = (parsed.timestamp_ms, parsed.seq, parsed.kind);
  if !super::super::meta::payload_is_valid(kind, &data) {
    return Err("payload marked JSON is not valid JSON");
  }
  let key = match key {
    Some(k) => Some(Arc::from(
      String::from_utf8(k).map_err(|_| "'k' (key) is not UTF-8")?,
    )),
    None => None,
  };
  let headers = match headers {
    Some(h) => {
      let pairs: Vec<(String, String)> =
        serde_json::from_slice(&h).map_err(|_| "'h' (headers) is not a JSON list of pairs")?;
      crate::event::headers_from_pairs(pairs)
    }
    None => None,
  };
  Ok(StoredEvent {
    id: id.to_string(),
    position: id.to_string(),
    shard,
    seq,
    timestamp_ms: ts,
    kind,
    key,
    payload: Bytes::from(data),
    message_id: message_id.to_string(),
    stamp: parsed.stamp,
    headers,
  })
}

#[cfg(test)]
mod tests {
  use super::*;

  fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
  }

  #[test]
  fn entry_ids_are_checked() {
    assert!(is_entry_id("1700000000000-0"));
    assert!(!is_entry_id("17-"));
    assert!(!is_entry_id("abc"));
    assert!(!is_entry_id("1-2-3"));
    assert!(is_entry_id("18446744073709551615-18446744073709551614"));
    assert!(!is_entry_id("18446744073709551615-18446744073709551615"));
    assert!(!is_entry_id("99999999999999999999-0"));
    assert!(!is_entry_id("0-18446744073709551616"));
  }

  #[test]
  fn entries_decode_or_explain() {
    let good = Value::Array(vec![
      bulk("5-1"),
      Value::Array(vec![
        bulk("d"),
        bulk("{\"a\":1}"),
        bulk("m"),
        bulk("42 7 json x-1-0-7"),
        bulk("k"),
        bulk("π"),
      ]),
    ]);
    let (id, ev) = entry(3, good).unwrap();
    let ev = ev.unwrap();
    assert_eq!(
      (id.as_str(), ev.shard, ev.seq, ev.timestamp_ms),
      ("5-1", 3, 7, 42)
    );
    assert_eq!(ev.key.as_deref(), Some("π"));
    assert_eq!(ev.message_id, "x-1-0-7");
    let bad = Value::Array(vec![
      bulk("5-2"),
      Value::Array(vec![
        bulk("d"),
        bulk("not json"),
        bulk("m"),
        bulk("1 2 json"),
      ]),
    ]);
    let (id, ev) = entry(3, bad).unwrap();
    assert_eq!(id, "5-2");
    assert!(ev.is_err());
  }
}

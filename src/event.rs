//! Events as the engine holds them, and their identity.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{BusError, Result};

mod quick_json;

/// Longest partition key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 4096;

/// A small string map carried with an event (e.g. W3C `traceparent`), in the order given.
pub type Headers = Arc<[(Box<str>, Box<str>)]>;
/// Most headers on one event.
pub const MAX_HEADERS: usize = 16;
/// Longest header name, in bytes.
pub const MAX_HEADER_NAME_BYTES: usize = 64;
/// Most bytes of one event's header names and values together.
pub const MAX_HEADER_BYTES: usize = 4096;

/// Bytes of header names and values, counted with an event's size.
pub fn headers_size(headers: &Option<Headers>) -> usize {
  headers
    .as_ref()
    .map_or(0, |h| h.iter().map(|(n, v)| n.len() + v.len()).sum())
}

/// Headers as pairs of owned strings (for serde), and back.
pub fn headers_to_pairs(h: &Headers) -> Vec<(String, String)> {
  h.iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect()
}

pub fn headers_from_pairs(pairs: Vec<(String, String)>) -> Option<Headers> {
  (!pairs.is_empty()).then(|| {
    pairs
      .into_iter()
      .map(|(n, v)| (n.into_boxed_str(), v.into_boxed_str()))
      .collect()
  })
}

/// Header names ringbus and NATS use themselves (`Rb`, `Rb-*`, `Nats-*`, any case).
pub fn is_reserved_header(name: &str) -> bool {
  let lower = name.to_ascii_lowercase();
  lower == "rb" || lower.starts_with("rb-") || lower.starts_with("nats-")
}

/// Checks headers against the limits every backend can store: names of `A-Z a-z 0-9 - _ .`
/// (NATS header names, Redis field text), values without CR or LF (NATS header framing).
pub fn check_headers(headers: &[(Box<str>, Box<str>)]) -> Result<()> {
  if headers.len() > MAX_HEADERS {
    return Err(BusError::invalid_event(format!(
      "options.headers has {} entries, over the {MAX_HEADERS}-header limit; carry less context per event",
      headers.len()
    )));
  }
  let mut total = 0;
  for (name, value) in headers {
    let ok = (1..=MAX_HEADER_NAME_BYTES).contains(&name.len())
      && name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
      return Err(BusError::invalid_event(format!(
        "options.headers name {name:?} must be 1-{MAX_HEADER_NAME_BYTES} of A-Z a-z 0-9 - _ ."
      )));
    }
    if is_reserved_header(name) {
      return Err(BusError::invalid_event(format!(
        "options.headers name {name:?} is reserved (names starting with Rb- or Nats- carry ringbus's and NATS's own data); rename it"
      )));
    }
    if value.contains(['\r', '\n']) {
      return Err(BusError::invalid_event(format!(
        "options.headers.{name} contains a line break, which headers cannot carry; encode it (e.g. base64)"
      )));
    }
    total += name.len() + value.len();
  }
  if total > MAX_HEADER_BYTES {
    return Err(BusError::invalid_event(format!(
      "options.headers take {total} bytes, over the {MAX_HEADER_BYTES}-byte limit; carry less context per event"
    )));
  }
  Ok(())
}

/// How the payload was given to `ingest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
  /// Validated JSON text (from an object or a JSON string).
  Json,
  /// Opaque bytes (from a Buffer or Uint8Array).
  Bytes,
}

/// An accepted event, queued in a shard's ring or in flight to the adapter.
#[derive(Debug, Clone)]
pub struct Event {
  /// Per-shard sequence number: gap-free and strictly increasing over accepted events.
  pub seq: u64,
  /// Milliseconds since the UNIX epoch, non-decreasing per shard.
  pub timestamp_ms: u64,
  pub kind: PayloadKind,
  pub key: Option<Arc<str>>,
  pub payload: Bytes,
  pub stamp: Stamp,
  pub headers: Option<Headers>,
}

/// The producer's topology when an event was routed, stored with it so readers can keep
/// per-key order across scaling (see `consume/barrier.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Stamp {
  /// Topology changes the producer had made: every event of a lower epoch was stored (or
  /// dropped) before any event of this one.
  pub epoch: u32,
  /// Shard ids the producer had used by then (`0..span`): where its earlier events can be.
  pub span: u32,
}

impl Event {
  /// Bytes counted against batch and retention limits.
  pub fn size(&self) -> usize {
    self.payload.len() + self.key.as_ref().map_or(0, |k| k.len()) + headers_size(&self.headers)
  }
}

/// An event before it is accepted: validated, not yet sequenced. Built only through its
/// constructors, which enforce the key limit and that `Json` payloads are JSON.
#[derive(Debug, Clone)]
pub struct Incoming {
  pub(crate) kind: PayloadKind,
  pub(crate) key: Option<Arc<str>>,
  pub(crate) payload: Bytes,
  pub(crate) headers: Option<Headers>,
}

/// Checks JSON text the way readers parse it (numbers in range, at most 128 levels deep),
/// without building it: an event that passes can be matched by every filter.
pub fn check_json(text: &[u8]) -> std::result::Result<(), serde_json::Error> {
  if quick_json::certainly_valid(text) {
    return Ok(());
  }
  check_json_with_serde(text)
}

/// [`check_json`] without the quick yes: serde_json decides (and words the error).
fn check_json_with_serde(text: &[u8]) -> std::result::Result<(), serde_json::Error> {
  serde_json::from_slice::<JsonCheck>(text).map(|_| ())
}

/// Most levels of nesting a reader parses (serde_json's limit).
pub const MAX_JSON_DEPTH: usize = 128;

/// Whether stringify output certainly parses: without a backslash it has no `\u` escape
/// (so no lone surrogate), and with at most 128 opening brackets it cannot nest deeper
/// (text shorter than 129 bracket pairs cannot hold more, so most events skip the count).
fn surely_readable(text: &[u8]) -> bool {
  memchr::memchr(b'\\', text).is_none()
    && (text.len() < 2 * (MAX_JSON_DEPTH + 1)
      || text.iter().filter(|&&b| b == b'[' || b == b'{').count() <= MAX_JSON_DEPTH)
}

/// An `ERR_INVALID_EVENT` for JSON that readers could not parse, naming the usual causes.
fn unreadable_json(e: &serde_json::Error, what: &str) -> BusError {
  let text = e.to_string();
  let why = if text.contains("surrogate") || text.contains("hex escape") {
    "it contains a lone UTF-16 surrogate (\\ud800-\\udfff outside a pair, e.g. a string cut through an emoji); make the string well-formed (str.toWellFormed()) or pass a Buffer".to_string()
  } else if text.contains("recursion limit") {
    format!("it nests deeper than {MAX_JSON_DEPTH} levels; flatten it or pass it as a Buffer")
  } else {
    format!("{text}; pass an object, valid JSON text or a Buffer")
  };
  BusError::invalid_event(format!("{what}: {why}"))
}

/// Accepts any JSON value. Deserialised through `deserialize_any`, so serde_json applies
/// the same number and depth limits as when it builds a `Value`, but nothing is allocated.
struct JsonCheck;

impl<'de> serde::Deserialize<'de> for JsonCheck {
  fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
    d.deserialize_any(JsonCheck)
  }
}

impl<'de> serde::de::Visitor<'de> for JsonCheck {
  type Value = JsonCheck;

  fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("any JSON value")
  }
  fn visit_bool<E>(self, _: bool) -> std::result::Result<Self, E> {
    Ok(JsonCheck)
  }
  fn visit_i64<E>(self, _: i64) -> std::result::Result<Self, E> {
    Ok(JsonCheck)
  }
  fn visit_u64<E>(self, _: u64) -> std::result::Result<Self, E> {
    Ok(JsonCheck)
  }
  fn visit_f64<E>(self, _: f64) -> std::result::Result<Self, E> {
    Ok(JsonCheck)
  }
  fn visit_str<E>(self, _: &str) -> std::result::Result<Self, E> {
    Ok(JsonCheck)
  }
  fn visit_unit<E>(self) -> std::result::Result<Self, E> {
    Ok(JsonCheck)
  }
  fn visit_seq<A: serde::de::SeqAccess<'de>>(
    self,
    mut seq: A,
  ) -> std::result::Result<Self, A::Error> {
    while seq.next_element::<JsonCheck>()?.is_some() {}
    Ok(JsonCheck)
  }
  fn visit_map<A: serde::de::MapAccess<'de>>(
    self,
    mut map: A,
  ) -> std::result::Result<Self, A::Error> {
    while map
      .next_entry::<serde::de::IgnoredAny, JsonCheck>()?
      .is_some()
    {}
    Ok(JsonCheck)
  }
}

impl Incoming {
  /// JSON text, validated.
  pub fn json(payload: Bytes, key: Option<Arc<str>>) -> Result<Incoming> {
    check_json(&payload).map_err(|e| unreadable_json(&e, "string is not valid JSON"))?;
    Self::new(PayloadKind::Json, payload, key)
  }

  /// JSON text that is syntactically valid by construction (the output of
  /// `JSON.stringify`). Full validation would cost more than the rest of ingest, but
  /// `JSON.stringify` also emits what no reader can parse: lone surrogates (`\ud83d`, from
  /// a string cut through an emoji) and nesting past 128 levels. Text that surely has
  /// neither skips the parse; the rest is checked.
  pub fn json_trusted(payload: Bytes, key: Option<Arc<str>>) -> Result<Incoming> {
    if !surely_readable(&payload) {
      check_json(&payload).map_err(|e| unreadable_json(&e, "event cannot be stored as JSON"))?;
    }
    Self::new(PayloadKind::Json, payload, key)
  }

  /// Opaque bytes, stored byte-exact.
  pub fn bytes(payload: Bytes, key: Option<Arc<str>>) -> Result<Incoming> {
    Self::new(PayloadKind::Bytes, payload, key)
  }

  fn new(kind: PayloadKind, payload: Bytes, key: Option<Arc<str>>) -> Result<Incoming> {
    if let Some(k) = &key {
      check_key_size(k.len(), false)?;
    }
    Ok(Incoming {
      kind,
      key,
      payload,
      headers: None,
    })
  }

  /// Carries `headers` (checked against the limits; empty means none).
  pub fn with_headers(mut self, headers: Option<Headers>) -> Result<Incoming> {
    if let Some(h) = &headers {
      check_headers(h)?;
    }
    self.headers = headers.filter(|h| !h.is_empty());
    Ok(self)
  }

  pub fn kind(&self) -> PayloadKind {
    self.kind
  }

  pub fn key(&self) -> Option<&str> {
    self.key.as_deref()
  }

  pub fn payload(&self) -> &Bytes {
    &self.payload
  }

  pub fn headers(&self) -> Option<&Headers> {
    self.headers.as_ref()
  }
}

/// Refuses a partition key of `len` bytes (of at least `len`, when `at_least`: callers
/// check before copying a large value) over [`MAX_KEY_BYTES`].
pub fn check_key_size(len: usize, at_least: bool) -> Result<()> {
  if len > MAX_KEY_BYTES {
    let at_least = if at_least { "at least " } else { "" };
    return Err(BusError::invalid_event(format!(
      "key is {at_least}{len} bytes, over the {MAX_KEY_BYTES}-byte limit; use a shorter partition key"
    )));
  }
  Ok(())
}

/// Who wrote an event: a random nonce plus a generation that grows on every start
/// when the nonce is persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerId {
  pub nonce: u64,
  pub generation: u64,
}

impl ProducerId {
  /// The message id of one event. It depends only on the producer, the shard and the
  /// event's own sequence, never on batch boundaries, so every retry sends the same id.
  pub fn message_id(&self, shard: u32, seq: u64) -> MessageId {
    MessageId {
      producer: *self,
      shard,
      seq,
    }
  }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId {
  pub producer: ProducerId,
  pub shard: u32,
  pub seq: u64,
}

impl fmt::Display for MessageId {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(
      f,
      "{:016x}-{}-{}-{}",
      self.producer.nonce, self.producer.generation, self.shard, self.seq
    )
  }
}

/// An event read back from an adapter.
#[derive(Debug, Clone)]
pub struct StoredEvent {
  /// The backend's id for the record.
  pub id: String,
  /// The position to resume after this record (goes into cursors).
  pub position: String,
  pub shard: u32,
  pub seq: u64,
  pub timestamp_ms: u64,
  pub kind: PayloadKind,
  pub key: Option<Arc<str>>,
  pub payload: Bytes,
  pub message_id: String,
  /// Zero for records written before stamps were stored.
  pub stamp: Stamp,
  pub headers: Option<Headers>,
}

impl StoredEvent {
  /// The writing producer (nonce and generation), from the message id.
  pub fn producer(&self) -> &str {
    producer_of(&self.message_id)
  }
}

/// `"<nonce>-<generation>"` of a message id `"<nonce>-<generation>-<shard>-<seq>"`.
pub fn producer_of(message_id: &str) -> &str {
  match message_id.match_indices('-').nth(1) {
    Some((i, _)) => &message_id[..i],
    None => message_id,
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn message_id_format_is_stable() {
    let p = ProducerId {
      nonce: 0xabc,
      generation: 7,
    };
    assert_eq!(p.message_id(3, 42).to_string(), "0000000000000abc-7-3-42");
  }

  #[test]
  fn constructors_enforce_the_rules() {
    // What a reader could not parse is refused at ingest: out-of-range numbers, too deep.
    for bad in [&b"{nope"[..], b"{\"a\":1e309}", b"[-1e400]"] {
      assert!(Incoming::json(Bytes::from_static(bad), None).is_err());
    }
    let deep = format!("{}1{}", "[".repeat(129), "]".repeat(129));
    assert!(Incoming::json(Bytes::from(deep), None).is_err());
    let ok_deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    assert!(Incoming::json(Bytes::from(ok_deep.clone()), None).is_ok());
    assert!(serde_json::from_str::<serde_json::Value>(&ok_deep).is_ok());
    // What JSON.stringify emits but no reader parses: lone surrogates, deep nesting.
    for bad in [
      &br#"{"note":"ok \ud83d"}"#[..],
      br#""\ud800""#,
      br#"["\udc00x"]"#,
    ] {
      let err = Incoming::json_trusted(Bytes::from_static(bad), None).unwrap_err();
      assert!(
        err.message.contains("lone UTF-16 surrogate"),
        "{}",
        err.message
      );
      let err = Incoming::json(Bytes::from_static(bad), None).unwrap_err();
      assert!(
        err.message.contains("lone UTF-16 surrogate"),
        "{}",
        err.message
      );
    }
    let pair = br#"{"e":"\ud83d\ude00","q":"a\"b"}"#;
    assert!(Incoming::json_trusted(Bytes::from_static(pair), None).is_ok());
    let deep = format!("{}1{}", "{\"a\":".repeat(129), "}".repeat(129));
    let err = Incoming::json_trusted(Bytes::from(deep), None).unwrap_err();
    assert!(err.message.contains("deeper than 128"), "{}", err.message);
    let wide = format!("[{}]", vec!["[]"; 500].join(","));
    assert!(Incoming::json_trusted(Bytes::from(wide), None).is_ok());
    let err = Incoming::json(Bytes::from_static(b"{nope"), None).unwrap_err();
    assert_eq!(err.code, crate::error::Code::InvalidEvent);
    assert!(err.message.contains("not valid JSON"), "{}", err.message);
    let ok = Incoming::json(Bytes::from_static(b"[1,2]"), Some(Arc::from("k"))).unwrap();
    assert_eq!((ok.kind(), ok.key()), (PayloadKind::Json, Some("k")));
    let long: Arc<str> = Arc::from("k".repeat(MAX_KEY_BYTES + 1));
    let err = Incoming::bytes(Bytes::new(), Some(long.clone())).unwrap_err();
    assert!(err.message.contains("4097 bytes"), "{}", err.message);
    assert!(Incoming::json_trusted(Bytes::from_static(b"{}"), Some(long)).is_err());
    let max: Arc<str> = Arc::from("k".repeat(MAX_KEY_BYTES));
    assert!(Incoming::bytes(Bytes::from_static(b"\xff"), Some(max)).is_ok());
  }
}

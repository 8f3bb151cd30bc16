//! Events as the engine holds them, and their identity.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

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
}

impl Event {
  /// Bytes counted against batch and retention limits.
  pub fn size(&self) -> usize {
    self.payload.len() + self.key.as_ref().map_or(0, |k| k.len())
  }
}

/// An event before it is accepted: validated, not yet sequenced.
#[derive(Debug, Clone)]
pub struct Incoming {
  pub kind: PayloadKind,
  pub key: Option<Arc<str>>,
  pub payload: Bytes,
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
}

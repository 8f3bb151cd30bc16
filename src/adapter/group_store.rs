//! What a backend keeps for consumer groups: live members, shard leases, committed
//! positions, the group's starting point and its letters (dead, and returned for
//! redelivery). Each durable backend implements [`GroupStore`] with its own primitives
//! (memory: maps under a lock; Redis: keys with PX and scripts; JetStream: a KV bucket).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::adapter::AdapterError;
use crate::event::{headers_from_pairs, headers_to_pairs, PayloadKind, Stamp, StoredEvent};

/// A group's signals as they arrive: the name of the member that sent each. Signals say
/// "shards may have moved" (a member joined, left or released shards), so the others renew
/// at once instead of at their next timer. Bounded: a full channel drops the signal, as
/// one pending is enough to cause a renewal.
pub type Signals = tokio::sync::mpsc::Receiver<String>;

/// Room for signals not yet seen by a member.
pub const SIGNALS_QUEUED: usize = 8;

/// Where a letter is kept: past `maxDeliveries`, or put back by `bus.redeliver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tray {
  Dead,
  Returned,
}

impl Tray {
  pub fn name(self) -> &'static str {
    match self {
      Tray::Dead => "dead",
      Tray::Returned => "back",
    }
  }
}

/// An event a group gave up on, with why.
#[derive(Debug, Clone)]
pub struct Letter {
  /// The store's id of the letter (set when read back; empty before it is stored).
  pub id: String,
  pub event: StoredEvent,
  pub reason: String,
  pub deliveries: u32,
  /// Milliseconds since the UNIX epoch when it was dead-lettered.
  pub time_ms: u64,
  /// The payload's length when the letter could not carry it (see [`Letter::encode_within`]).
  pub cut: Option<u64>,
}

/// Most bytes of a reason a letter keeps: a handler's error message can be any size, and a
/// letter must fit in one store record.
pub const MAX_REASON_BYTES: usize = 1024;

/// `reason` cut to [`MAX_REASON_BYTES`] at a character boundary, saying so.
pub fn bounded_reason(reason: &str) -> String {
  if reason.len() <= MAX_REASON_BYTES {
    return reason.to_string();
  }
  let mut end = MAX_REASON_BYTES;
  while !reason.is_char_boundary(end) {
    end -= 1;
  }
  format!(
    "{}… [reason cut from {} bytes]",
    &reason[..end],
    reason.len()
  )
}

/// A live member as the store records it (`bus.group()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSeen {
  pub name: String,
  /// When it last renewed (ms since the epoch).
  pub renewed_ms: u64,
  /// When its membership lapses without another renewal (ms since the epoch).
  pub expires_ms: u64,
}

/// Who holds a shard's lease and until when (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSeen {
  pub member: String,
  pub until_ms: u64,
}

#[derive(Debug, Clone, Default)]
pub struct LetterPage {
  pub letters: Vec<Letter>,
  /// Resume after this letter id.
  pub next: Option<String>,
  pub has_more: bool,
}

#[derive(Serialize, Deserialize)]
struct LetterHead {
  id: String,
  pos: String,
  shard: u32,
  seq: u64,
  ts: u64,
  bytes: bool,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  key: Option<String>,
  mid: String,
  stamp: (u32, u32),
  reason: String,
  n: u32,
  t: u64,
  #[serde(default, skip_serializing_if = "Vec::is_empty")]
  h: Vec<(String, String)>,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  cut: Option<u64>,
}

impl Letter {
  /// One line of JSON for everything but the payload, a newline, then the payload bytes.
  pub fn encode(&self) -> Vec<u8> {
    self.encode_head(false)
  }

  /// As [`Letter::encode`], in at most `limit` bytes where the store has a record limit
  /// (JetStream's `max_payload`): a letter too large keeps everything but the payload,
  /// records the payload's length, and says so in its reason. Such a letter cannot be
  /// redelivered (the event it would deliver is gone), but it is never lost or stuck.
  pub fn encode_within(&self, limit: usize) -> Vec<u8> {
    let full = self.encode_head(false);
    if full.len() <= limit {
      return full;
    }
    self.encode_head(true)
  }

  fn encode_head(&self, cut: bool) -> Vec<u8> {
    let e = &self.event;
    let mut reason = bounded_reason(&self.reason);
    let cut = match (cut, self.cut) {
      (_, Some(n)) => Some(n),
      (true, None) => {
        reason.push_str(&format!(
          " [the event's {}-byte payload did not fit in the letter and was left out; the event is still in the stream at id {} while retention keeps it]",
          e.payload.len(),
          e.id
        ));
        Some(e.payload.len() as u64)
      }
      (false, None) => None,
    };
    let head = LetterHead {
      id: e.id.clone(),
      pos: e.position.clone(),
      shard: e.shard,
      seq: e.seq,
      ts: e.timestamp_ms,
      bytes: e.kind == PayloadKind::Bytes,
      key: e.key.as_deref().map(str::to_string),
      mid: e.message_id.clone(),
      stamp: (e.stamp.epoch, e.stamp.span),
      reason,
      n: self.deliveries,
      t: self.time_ms,
      h: e.headers.as_ref().map(headers_to_pairs).unwrap_or_default(),
      cut,
    };
    let mut out = serde_json::to_vec(&head).unwrap_or_default();
    out.push(b'\n');
    if cut.is_none() {
      out.extend_from_slice(&e.payload);
    }
    out
  }

  /// The letter stored as `id`; None when the bytes are not a letter.
  pub fn decode(id: &str, bytes: &[u8]) -> Option<Letter> {
    let nl = bytes.iter().position(|b| *b == b'\n')?;
    let head: LetterHead = serde_json::from_slice(&bytes[..nl]).ok()?;
    Some(Letter {
      id: id.to_string(),
      event: StoredEvent {
        id: head.id,
        position: head.pos,
        shard: head.shard,
        seq: head.seq,
        timestamp_ms: head.ts,
        kind: if head.bytes {
          PayloadKind::Bytes
        } else {
          PayloadKind::Json
        },
        key: head.key.map(Into::into),
        payload: bytes::Bytes::copy_from_slice(&bytes[nl + 1..]),
        message_id: head.mid,
        stamp: Stamp {
          epoch: head.stamp.0,
          span: head.stamp.1,
        },
        headers: headers_from_pairs(head.h),
      },
      reason: head.reason,
      deliveries: head.n,
      time_ms: head.t,
      cut: head.cut,
    })
  }
}

/// Group state in the backend. Names (group, member) are 1-64 of `[A-Za-z0-9_-]`, so every
/// backend can use them in keys as they are.
#[async_trait]
pub trait GroupStore: Send + Sync {
  /// Records `member` as live for `ttl`.
  async fn heartbeat(&self, group: &str, member: &str, ttl: Duration) -> Result<(), AdapterError>;

  /// Removes `member` from the live members.
  async fn leave(&self, group: &str, member: &str) -> Result<(), AdapterError>;

  /// The live members, sorted.
  async fn members(&self, group: &str) -> Result<Vec<String>, AdapterError>;

  /// Where `member` sorts among the live members and how many there are, or None when it
  /// is not live. Every member asks at every renewal, so stores that can rank without
  /// listing everyone override this: a group's renewals then cost linear in its members.
  async fn rank(&self, group: &str, member: &str) -> Result<Option<(usize, usize)>, AdapterError> {
    let members = self.members(group).await?;
    Ok(
      members
        .binary_search_by(|m| m.as_str().cmp(member))
        .ok()
        .map(|i| (i, members.len())),
    )
  }

  /// Takes the lease on `shard` for `ttl`, or renews it when `member` holds it. False when
  /// another member holds a lease that has not expired.
  async fn lease(
    &self,
    group: &str,
    shard: u32,
    member: &str,
    ttl: Duration,
  ) -> Result<bool, AdapterError>;

  /// Gives the lease up, if `member` holds it.
  async fn release(&self, group: &str, shard: u32, member: &str) -> Result<(), AdapterError>;

  /// The commit record of `shard`, if one was written.
  async fn committed(&self, group: &str, shard: u32) -> Result<Option<String>, AdapterError>;

  /// Writes the commit record of `shard` while `member` holds its lease; false (nothing
  /// written) when it does not.
  async fn commit(
    &self,
    group: &str,
    shard: u32,
    member: &str,
    record: &str,
  ) -> Result<bool, AdapterError>;

  /// Tells the group's members that `member` joined, left or released shards. Best
  /// effort, never an error: the renewal timer stays the fallback.
  async fn signal(&self, _group: &str, _member: &str) {}

  /// The group's signals from now on, or None where the store cannot carry them (the
  /// renewal timer alone then moves shards). Dropping the receiver stops the watch.
  async fn watch(&self, _group: &str) -> Option<Signals> {
    None
  }

  /// The group's start record; `proposal` is stored first when the group has none.
  async fn start(&self, group: &str, proposal: &str) -> Result<String, AdapterError>;

  /// The group's start record if the store has one; writes nothing, so an inspection of
  /// a group whose state the store lost leaves the next member's `from` to decide.
  async fn start_record(&self, group: &str) -> Result<Option<String>, AdapterError>;

  /// Stores letters in `tray`, in order.
  async fn put_letters(
    &self,
    group: &str,
    tray: Tray,
    letters: &[Letter],
  ) -> Result<(), AdapterError>;

  /// Up to `limit` letters of `tray` after the letter id `after`, oldest first.
  async fn letters(
    &self,
    group: &str,
    tray: Tray,
    after: Option<&str>,
    limit: usize,
  ) -> Result<LetterPage, AdapterError>;

  /// Removes letters by id (unknown ids are ignored); returns the ones it removed.
  async fn take_letters(
    &self,
    group: &str,
    tray: Tray,
    ids: &[String],
  ) -> Result<Vec<Letter>, AdapterError>;

  /// The groups this store holds state of (every group whose first member joined), sorted.
  async fn group_names(&self) -> Result<Vec<String>, AdapterError>;

  /// The live members with their last renewal, sorted by name.
  async fn member_list(&self, group: &str) -> Result<Vec<MemberSeen>, AdapterError>;

  /// The holder of `shard`'s lease, if one holds it now.
  async fn lease_holder(&self, group: &str, shard: u32) -> Result<Option<LeaseSeen>, AdapterError>;

  /// How many letters `tray` holds.
  async fn count_letters(&self, group: &str, tray: Tray) -> Result<u64, AdapterError>;

  /// How many records follow each `(shard, read position)`, for stores whose read pages
  /// cannot tell (`ReadPage::remaining`); None where it is unknown.
  async fn backlog(&self, positions: &[(u32, Option<String>)]) -> Vec<Option<u64>> {
    vec![None; positions.len()]
  }
}

/// Letter ids that sort in the order letters were stored: milliseconds and a counter,
/// zero-padded (for stores without ids of their own).
pub fn letter_id(time_ms: u64, counter: u64) -> String {
  format!("{time_ms:015}-{counter:06}")
}

/// Refuses a `deadLetters` cursor that is not a letter id: every store's ids are
/// `<digits>-<digits>` (Redis entry ids, or [`letter_id`]); anything else (junk, a poll
/// cursor) would read as an empty last page.
pub fn check_letter_cursor(after: &str) -> crate::error::Result<()> {
  let part = |s: &str| {
    !s.is_empty()
      && s.len() <= 20
      && s.bytes().all(|b| b.is_ascii_digit())
      && s.parse::<u64>().is_ok()
  };
  match after.split_once('-') {
    Some((a, b)) if part(a) && part(b) => Ok(()),
    _ => Err(crate::error::BusError::new(
      crate::error::Code::InvalidCursor,
      "dead letter cursor is not one returned by deadLetters(); pass the cursor of the previous page unchanged (poll() cursors are not letter cursors)",
    )),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn sample_letter() -> Letter {
    Letter {
      id: String::new(),
      event: StoredEvent {
        id: "3-17".into(),
        position: "17".into(),
        shard: 3,
        seq: 9,
        timestamp_ms: 1_700_000_000_123,
        kind: PayloadKind::Bytes,
        key: Some("user\n7".into()),
        payload: bytes::Bytes::from_static(b"\x00\n\xff"),
        message_id: "ab-0-3-9".into(),
        stamp: Stamp { epoch: 2, span: 4 },
        headers: headers_from_pairs(vec![("traceparent".into(), "00-ab-cd-01".into())]),
      },
      reason: "handler threw: \"boom\"\nline".into(),
      deliveries: 5,
      time_ms: 42,
      cut: None,
    }
  }

  #[test]
  fn letters_round_trip_with_bytes_and_keys() {
    let letter = sample_letter();
    let back = Letter::decode("L1", &letter.encode_within(1 << 20)).unwrap();
    assert_eq!(back.cut, None);
    assert_eq!(back.id, "L1");
    assert_eq!(back.event.payload.as_ref(), b"\x00\n\xff");
    assert_eq!(back.event.key.as_deref(), Some("user\n7"));
    assert_eq!(
      back.event.headers.as_deref(),
      Some(&[("traceparent".into(), "00-ab-cd-01".into())][..])
    );
    assert_eq!(back.event.kind, PayloadKind::Bytes);
    assert_eq!(back.event.stamp, Stamp { epoch: 2, span: 4 });
    assert_eq!(
      (back.reason, back.deliveries, back.time_ms),
      (letter.reason, 5, 42)
    );
    assert!(Letter::decode("x", b"not json\nrest").is_none());
    assert!(Letter::decode("x", b"no newline").is_none());
  }

  #[test]
  fn letters_fit_the_store_limit() {
    let mut letter = Letter {
      id: String::new(),
      event: StoredEvent {
        kind: PayloadKind::Json,
        key: None,
        payload: bytes::Bytes::from(vec![b'1'; 2_000_000]),
        headers: None,
        ..sample_letter().event
      },
      reason: "é".repeat(3000),
      ..sample_letter()
    };
    let bytes = letter.encode_within(1 << 20);
    assert!(bytes.len() < 4096, "{}", bytes.len());
    let back = Letter::decode("L", &bytes).unwrap();
    assert_eq!(back.cut, Some(2_000_000));
    assert!(back.event.payload.is_empty());
    assert!(
      back.reason.contains("reason cut from 6000 bytes"),
      "{}",
      back.reason
    );
    assert!(
      back.reason.contains("2000000-byte payload"),
      "{}",
      back.reason
    );
    // Written again (redelivered, dead again), it stays cut and says so once.
    let again = Letter::decode("L", &back.encode_within(1 << 20)).unwrap();
    assert_eq!(again.cut, Some(2_000_000));
    letter.event.payload = bytes::Bytes::from_static(b"{}");
    assert_eq!(
      Letter::decode("L", &letter.encode_within(1 << 20))
        .unwrap()
        .cut,
      None
    );
  }

  #[test]
  fn letter_cursors_are_letter_ids() {
    assert!(check_letter_cursor(&letter_id(1_700_000_000_000, 7)).is_ok());
    assert!(check_letter_cursor("1700000000000-0").is_ok());
    for bad in [
      "junk",
      "rb1.e30",
      "1-",
      "-1",
      "1-2-3",
      "99999999999999999999-0",
      "",
    ] {
      assert!(check_letter_cursor(bad).is_err(), "{bad}");
    }
  }

  #[test]
  fn letter_ids_sort_by_time_then_counter() {
    let mut ids = vec![letter_id(20, 1), letter_id(3, 9), letter_id(20, 0)];
    ids.sort();
    assert_eq!(
      ids,
      vec![letter_id(3, 9), letter_id(20, 0), letter_id(20, 1)]
    );
  }
}

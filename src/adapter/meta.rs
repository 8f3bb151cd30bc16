//! Event metadata as the network adapters store it beside the payload:
//! `<timestamp ms> <sequence> <json|bytes> <epoch>/<span>`, then any fields of the
//! adapter's own. Records written before the stamp existed lack `<epoch>/<span>` and read
//! back with a zero stamp.

use std::fmt::Write;

use crate::event::{PayloadKind, Stamp};

/// Appends the common fields to `out`.
pub fn write(out: &mut String, timestamp_ms: u64, seq: u64, kind: PayloadKind, stamp: Stamp) {
  let kind = match kind {
    PayloadKind::Json => "json",
    PayloadKind::Bytes => "bytes",
  };
  let _ = write!(
    out,
    "{timestamp_ms} {seq} {kind} {}/{}",
    stamp.epoch, stamp.span
  );
}

/// The common fields of a record, and what follows them.
#[derive(Debug, PartialEq, Eq)]
pub struct Meta<'a> {
  pub timestamp_ms: u64,
  pub seq: u64,
  pub kind: PayloadKind,
  pub stamp: Stamp,
  /// The adapter's own fields (space-separated), possibly empty.
  pub rest: &'a str,
}

pub fn parse(text: &str) -> Option<Meta<'_>> {
  let mut parts = text.splitn(4, ' ');
  let timestamp_ms = parts.next()?.parse::<u64>().ok()?;
  let seq = parts.next()?.parse::<u64>().ok()?;
  let kind = match parts.next()? {
    "json" => PayloadKind::Json,
    "bytes" => PayloadKind::Bytes,
    _ => return None,
  };
  let tail = parts.next().unwrap_or("");
  let (first, after) = tail.split_once(' ').unwrap_or((tail, ""));
  // A message id (the only field adapters add) never contains '/'.
  let (stamp, rest) = match first.split_once('/') {
    Some((epoch, span)) => {
      let span: u32 = span.parse().ok()?;
      // A writer's span never exceeds the shard limit; a larger one is forged or corrupt,
      // and a reader would open a lane for every shard id below it.
      if span > crate::config::MAX_SHARDS {
        return None;
      }
      (
        Stamp {
          epoch: epoch.parse().ok()?,
          span,
        },
        after,
      )
    }
    None => (Stamp::default(), tail),
  };
  Some(Meta {
    timestamp_ms,
    seq,
    kind,
    stamp,
    rest,
  })
}

/// A payload marked JSON must still be JSON when read back.
pub fn payload_is_valid(kind: PayloadKind, payload: &[u8]) -> bool {
  kind != PayloadKind::Json || crate::event::check_json(payload).is_ok()
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn round_trips_with_extra_fields() {
    let mut s = String::new();
    let stamp = Stamp { epoch: 3, span: 8 };
    write(&mut s, 42, 7, PayloadKind::Bytes, stamp);
    s.push_str(" extra");
    let m = parse(&s).unwrap();
    assert_eq!((m.timestamp_ms, m.seq, m.kind), (42, 7, PayloadKind::Bytes));
    assert_eq!((m.stamp, m.rest), (stamp, "extra"));
    s.truncate(s.len() - " extra".len());
    assert_eq!(parse(&s).unwrap().rest, "");
    assert!(parse("42 x json").is_none());
    assert!(parse("42 7 xml").is_none());
    assert!(parse("42 7 json x/8").is_none());
    assert!(parse("42 7 json 1/4294967295 x-1-0-7").is_none());
    assert!(parse("42 7 json 1/1025 x-1-0-7").is_none());
    assert_eq!(parse("42 7 json 1/1024 x-1-0-7").unwrap().stamp.span, 1024);
  }

  #[test]
  fn records_without_a_stamp_read_as_epoch_zero() {
    let m = parse("42 7 json 00ab-0-1-7").unwrap();
    assert_eq!((m.stamp, m.rest), (Stamp::default(), "00ab-0-1-7"));
    assert_eq!(parse("42 7 json").unwrap().rest, "");
  }
}

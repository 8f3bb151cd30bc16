//! Event metadata as the network adapters store it beside the payload:
//! `<timestamp ms> <sequence> <json|bytes>`, then any fields of the adapter's own.

use std::fmt::Write;

use crate::event::PayloadKind;

/// Appends the three common fields to `out`.
pub fn write(out: &mut String, timestamp_ms: u64, seq: u64, kind: PayloadKind) {
  let kind = match kind {
    PayloadKind::Json => "json",
    PayloadKind::Bytes => "bytes",
  };
  let _ = write!(out, "{timestamp_ms} {seq} {kind}");
}

/// `(timestamp, sequence, kind)` and the remaining space-separated fields.
pub fn parse(text: &str) -> Option<(u64, u64, PayloadKind, std::str::Split<'_, char>)> {
  let mut parts = text.split(' ');
  let ts = parts.next()?.parse::<u64>().ok()?;
  let seq = parts.next()?.parse::<u64>().ok()?;
  let kind = match parts.next()? {
    "json" => PayloadKind::Json,
    "bytes" => PayloadKind::Bytes,
    _ => return None,
  };
  Some((ts, seq, kind, parts))
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
    write(&mut s, 42, 7, PayloadKind::Bytes);
    s.push_str(" extra");
    let (ts, seq, kind, mut rest) = parse(&s).unwrap();
    assert_eq!((ts, seq, kind), (42, 7, PayloadKind::Bytes));
    assert_eq!(rest.next(), Some("extra"));
    assert!(parse("42 x json").is_none());
    assert!(parse("42 7 xml").is_none());
  }
}

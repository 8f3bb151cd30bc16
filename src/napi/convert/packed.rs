//! Pages of group deliveries built in one JS call: the text of every event in one string
//! and their numbers in one Float64Array, cut into events by `js/unpack.js`. Made one by
//! one, each event costs about ten Node-API calls and a native-to-JS constructor call;
//! packed, a page costs a handful, and `process()` spends its JS thread on handlers.
//!
//! The strings of a packed event are slices of the page's text, which V8 keeps whole while
//! any of them lives: the page is at most `concurrency` events, and at most
//! [`MAX_TEXT`] bytes of text.

use super::{page, EventMaker, Extra};
use crate::error::{BusError, Code};
use crate::event::{PayloadKind, StoredEvent};
use crate::group::member::Delivery;
use crate::napi::scope::{JsValue, Scope};

const UNPACK_JS: &str = include_str!("../js/unpack.js");

/// Numbers per event in the packed page (see `js/unpack.js`).
const STRIDE: usize = 8;
/// Most text packed in one page; events past it are made one by one.
const MAX_TEXT: usize = 4 << 20;

/// The length in UTF-16 code units of UTF-8 `bytes` as V8 decodes them; None when they are
/// not valid UTF-8 (V8 would replace sequences, so the event is made natively).
fn utf16_len(bytes: &[u8]) -> Option<usize> {
  std::str::from_utf8(bytes).ok()?;
  // Every sequence's lead byte is one unit; a four-byte sequence (outside the BMP) is a
  // surrogate pair, so its lead counts twice.
  Some(
    bytes
      .iter()
      .map(|&b| usize::from((b as i8) >= -0x40) + usize::from(b >= 0xf0))
      .sum(),
  )
}

/// `deliveries` as a JS array of events.
pub(super) fn deliveries<'s>(
  scope: &mut Scope<'s>,
  deliveries: &[Delivery],
) -> Result<JsValue<'s>, BusError> {
  // Sized once: growing by doubling copied the page's text over and over.
  let size: usize = deliveries.iter().map(|d| text_size(&d.event)).sum();
  let mut text = Vec::with_capacity(size.min(MAX_TEXT));
  let mut nums = Vec::with_capacity(deliveries.len() * STRIDE);
  let mut slow = Vec::new();
  for d in deliveries {
    match pack(&mut text, d) {
      Some(lens) => {
        let ev = &d.event;
        nums.extend_from_slice(&[
          ev.shard as f64,
          ev.seq as f64,
          ev.timestamp_ms as f64,
          d.deliveries as f64,
        ]);
        nums.extend(lens.map(|l| l as f64));
      }
      None => {
        nums.extend_from_slice(&[-1.0; STRIDE]);
        slow.push(d);
      }
    }
  }
  let maker = EventMaker::new(scope)?;
  let slow_list = if slow.is_empty() {
    maker.undefined
  } else {
    page(scope, &slow, |d| {
      (&d.event, Extra::Deliveries(d.deliveries))
    })?
  };
  let unpack = scope
    .script(UNPACK_JS)
    .map_err(|reason| BusError::new(Code::Internal, reason))?;
  let args = [
    maker.ctor,
    scope.string(&text)?,
    scope.float64_array(&nums)?,
    slow_list,
    scope.number(deliveries.len() as f64)?,
  ];
  // A throw here is a constructor that threw (a hostile setter on Object.prototype).
  scope
    .call(unpack, args)
    .map_err(|reason| BusError::new(Code::Internal, reason))
}

/// Bytes of text an event packs.
fn text_size(ev: &StoredEvent) -> usize {
  ev.id.len() + ev.key.as_deref().map_or(0, str::len) + ev.payload.len() + ev.message_id.len()
}

/// Appends the event's id, key, raw text and message id to `text` and returns their
/// UTF-16 lengths (key -1 when absent); None (nothing appended) for an event made natively:
/// bytes, headers, text that is not UTF-8, or a page whose text is full.
fn pack(text: &mut Vec<u8>, d: &Delivery) -> Option<[i64; 4]> {
  let ev = &d.event;
  if ev.kind == PayloadKind::Bytes || ev.headers.is_some() {
    return None;
  }
  let key = ev.key.as_deref().map(str::as_bytes);
  if text.len() + text_size(ev) > MAX_TEXT {
    return None;
  }
  let start = text.len();
  let fields = [
    ev.id.as_bytes(),
    key.unwrap_or_default(),
    &ev.payload[..],
    ev.message_id.as_bytes(),
  ];
  for f in fields {
    text.extend_from_slice(f);
  }
  // Nearly always ASCII: one pass over the whole event, lengths in bytes.
  let ascii = text[start..].is_ascii();
  let mut lens = [0i64; 4];
  for (len, f) in lens.iter_mut().zip(fields) {
    *len = if ascii {
      f.len() as i64
    } else {
      match utf16_len(f) {
        Some(l) => l as i64,
        None => {
          text.truncate(start);
          return None;
        }
      }
    };
  }
  if key.is_none() {
    lens[1] = -1;
  }
  Some(lens)
}

#[cfg(test)]
mod tests {
  use super::utf16_len;

  #[test]
  fn utf16_lengths_count_code_units_as_js_does() {
    assert_eq!(utf16_len(b"abc"), Some(3));
    assert_eq!(utf16_len("é".as_bytes()), Some(1));
    // Outside the BMP: a surrogate pair in JS.
    assert_eq!(utf16_len("a😀".as_bytes()), Some(3));
    assert_eq!(utf16_len(&[0x61, 0xff]), None);
    // A surrogate encoded in UTF-8 (CESU) is not UTF-8.
    assert_eq!(utf16_len(&[0xed, 0xa0, 0x80]), None);
  }
}

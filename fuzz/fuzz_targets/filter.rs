//! Filters: any JSON value as a filter parses or is refused with `ERR_INVALID_FILTER`;
//! a parsed filter judges any bytes without a panic, and the raw-bytes path agrees with
//! the parsed-document path on every document that parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbus::consume::filter::Filter;
use ringbus::error::Code;

fuzz_target!(|input: (&[u8], &[u8])| {
  let (filter, doc) = input;
  let Ok(value) = serde_json::from_slice::<serde_json::Value>(filter) else {
    return;
  };
  let parsed = match Filter::parse(&value) {
    Ok(f) => f,
    Err(e) => {
      assert_eq!(e.code, Code::InvalidFilter, "{}", e.message);
      return;
    }
  };
  let raw = parsed.matches_json(doc);
  if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(doc) {
    assert_eq!(raw, parsed.matches(&doc), "filter {value} on {doc}");
  }
});

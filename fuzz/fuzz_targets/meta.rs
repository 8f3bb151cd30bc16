//! The `Rb` meta line shared by the JetStream and Redis records, and the payload check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbus::adapter::meta;
use ringbus::event::PayloadKind;

fuzz_target!(|data: &[u8]| {
  if let Ok(text) = std::str::from_utf8(data) {
    let _ = meta::parse(text);
  }
  let _ = meta::payload_is_valid(PayloadKind::Json, data);
  assert!(meta::payload_is_valid(PayloadKind::Bytes, data));
});

//! Cursors: any text decodes or is `ERR_INVALID_CURSOR`; what decodes encodes back to a
//! cursor that decodes to the same positions.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use ringbus::consume::cursor::Cursor;
use ringbus::error::Code;

fn check(text: &str) {
  match Cursor::decode(text, "memory") {
    Ok(c) => assert_eq!(Cursor::decode(&c.encode("memory"), "memory").unwrap(), c),
    Err(e) => assert_eq!(e.code, Code::InvalidCursor, "{}", e.message),
  }
}

fuzz_target!(|data: &[u8]| {
  check(&String::from_utf8_lossy(data));
  // Past the prefix and the base64 layer, so the fuzzer reaches the decoder behind them.
  let forged = format!(
    "rb1.{}",
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
  );
  check(&forged);
});

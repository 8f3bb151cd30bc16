//! A JetStream message with any headers the protocol allows and any payload decodes to an
//! event or a reason.
#![no_main]

use std::str::FromStr;

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<(String, String)>, Vec<u8>, bool)| {
  let (pairs, payload, with_headers) = input;
  let mut headers = HeaderMap::new();
  for (n, v) in &pairs {
    if let (Ok(n), Ok(v)) = (HeaderName::from_str(n), HeaderValue::from_str(v)) {
      headers.append(n, v);
    }
  }
  let payload = bytes::Bytes::from(payload);
  let got =
    ringbus::adapter::jetstream::decode_record(2, 9, with_headers.then_some(&headers), &payload);
  if let Ok(ev) = got {
    assert_eq!(ev.shard, 2);
    assert_eq!(&ev.payload[..], &payload[..]);
  }
});

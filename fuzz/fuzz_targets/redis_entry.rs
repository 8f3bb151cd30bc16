//! A Redis stream entry with any id and fields decodes to an event or a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis::Value;

fuzz_target!(|input: (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>, bool)| {
  let (id, fields, well_formed) = input;
  let mut flat = Vec::new();
  for (k, v) in fields {
    flat.push(Value::BulkString(k));
    flat.push(Value::BulkString(v));
  }
  // Also shapes a server never sends: the decoder must refuse them, not panic.
  let entry = if well_formed {
    Value::Array(vec![Value::BulkString(id), Value::Array(flat)])
  } else {
    Value::Array(flat)
  };
  if let Some((_, Ok(ev))) = ringbus::adapter::redis::decode_entry(1, entry) {
    assert_eq!(ev.shard, 1);
  }
});

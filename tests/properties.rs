//! Property tests (fixed case counts, so CI time is bounded): the filter evaluator agrees
//! with a small reference evaluator written from the semantics in docs/usage.md; invalid
//! filters and random cursors fail with their codes, never a panic; cursors round-trip.

use proptest::prelude::*;
use ringbus::consume::cursor::Cursor;
use ringbus::consume::filter::Filter;
use ringbus::error::Code;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------- documents and filters

const KEYS: [&str; 4] = ["a", "b", "n", "s"];

fn scalar() -> impl Strategy<Value = Value> {
  prop_oneof![
    Just(Value::Null),
    any::<bool>().prop_map(Value::Bool),
    (-3i64..4).prop_map(|n| json!(n)),
    // Whole floats too: 2.0 must equal 2.
    (-3i64..4).prop_map(|n| json!(n as f64)),
    Just(json!(1.5)),
    prop::sample::select(vec!["", "x", "y", "ab", "b"]).prop_map(|s| json!(s)),
  ]
}

fn value() -> impl Strategy<Value = Value> {
  scalar().prop_recursive(2, 12, 3, |inner| {
    prop_oneof![
      prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
      prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), inner, 0..3)
        .prop_map(|m| { Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()) }),
    ]
  })
}

fn doc() -> impl Strategy<Value = Value> {
  prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), value(), 0..4)
    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

fn path() -> impl Strategy<Value = String> {
  prop_oneof![
    prop::sample::select(KEYS.to_vec()).prop_map(str::to_string),
    (
      prop::sample::select(KEYS.to_vec()),
      prop::sample::select(vec!["a", "b", "0", "1"])
    )
      .prop_map(|(a, b)| format!("{a}.{b}")),
  ]
}

fn operator() -> impl Strategy<Value = Value> {
  let op = prop_oneof![
    scalar().prop_map(|v| json!({ "$eq": v })),
    scalar().prop_map(|v| json!({ "$ne": v })),
    scalar().prop_map(|v| json!({ "$gt": v })),
    scalar().prop_map(|v| json!({ "$gte": v })),
    scalar().prop_map(|v| json!({ "$lt": v })),
    scalar().prop_map(|v| json!({ "$lte": v })),
    prop::collection::vec(value(), 0..4).prop_map(|v| json!({ "$in": v })),
    prop::collection::vec(value(), 0..4).prop_map(|v| json!({ "$nin": v })),
    any::<bool>().prop_map(|b| json!({ "$exists": b })),
  ];
  op.prop_recursive(1, 4, 2, |inner| {
    prop_oneof![
      inner.clone().prop_map(|o| json!({ "$not": o })),
      (inner.clone(), inner).prop_map(|(a, b)| {
        // Two operators on one field: merge the objects (a later duplicate wins, as in JSON).
        let mut m = a.as_object().cloned().unwrap_or_default();
        m.extend(b.as_object().cloned().unwrap_or_default());
        Value::Object(m)
      }),
    ]
  })
}

/// Documents of `$` keys (known operators, combinators and unknown ones) over operands of
/// any shape: mostly invalid filters.
fn operator_soup() -> impl Strategy<Value = Value> {
  let key = prop_oneof![
    prop::sample::select(vec![
      "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not", "$and", "$or",
      "$", "$$", "$regex",
    ])
    .prop_map(str::to_string),
    "\\$[a-z]{1,5}",
  ];
  (path(), level(key.clone()), prop::option::of(level(key))).prop_map(|(p, ops, top)| {
    let mut m = Map::new();
    m.insert(p, ops);
    if let Some(Value::Object(t)) = top {
      m.extend(t);
    }
    Value::Object(m)
  })
}

/// One level of `$` keys over any values.
fn level(key: impl Strategy<Value = String>) -> impl Strategy<Value = Value> {
  prop::collection::btree_map(key, value(), 1..3)
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn filter() -> impl Strategy<Value = Value> {
  let field = (path(), prop_oneof![value(), operator()]).prop_map(|(p, c)| {
    let mut m = Map::new();
    m.insert(p, c);
    Value::Object(m)
  });
  field.prop_recursive(3, 16, 3, |inner| {
    prop_oneof![
      prop::collection::vec(inner.clone(), 1..3).prop_map(|fs| json!({ "$and": fs })),
      prop::collection::vec(inner.clone(), 1..3).prop_map(|fs| json!({ "$or": fs })),
      inner.clone().prop_map(|f| json!({ "$not": f })),
      prop::collection::vec(inner, 2..3).prop_map(|fs| {
        // Several fields in one document: every one must match.
        let mut m = Map::new();
        for f in fs {
          m.extend(f.as_object().cloned().unwrap_or_default());
        }
        Value::Object(m)
      }),
    ]
  })
}

// ---------------------------------------------------------------- the reference evaluator

/// Numbers are equal by value (1 == 1.0); arrays and objects element by element.
fn same(a: &Value, b: &Value) -> bool {
  match (a, b) {
    (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
    (Value::Array(x), Value::Array(y)) => {
      x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
    }
    (Value::Object(x), Value::Object(y)) => {
      x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
    }
    _ => a == b,
  }
}

/// Ordering is defined between two numbers or two strings only.
fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
  match (a, b) {
    (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
    (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
    _ => None,
  }
}

/// The value itself, or (when it is an array) any element, satisfies `p`.
fn some(v: &Value, p: &dyn Fn(&Value) -> bool) -> bool {
  p(v) || v.as_array().is_some_and(|a| a.iter().any(p))
}

fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
  path.split('.').try_fold(doc, |cur, seg| match cur {
    Value::Object(m) => m.get(seg),
    Value::Array(a) => seg
      .parse::<usize>()
      .ok()
      .filter(|_| seg.bytes().all(|b| b.is_ascii_digit()))
      .and_then(|i| a.get(i)),
    _ => None,
  })
}

fn ref_cond(cond: &Value, v: Option<&Value>) -> bool {
  let ops = cond
    .as_object()
    .filter(|m| !m.is_empty() && m.keys().all(|k| k.starts_with('$')));
  let Some(ops) = ops else {
    return v.is_some_and(|v| some(v, &|e| same(e, cond)));
  };
  ops.iter().all(|(op, x)| {
    let cmp = |want: &dyn Fn(std::cmp::Ordering) -> bool| {
      v.is_some_and(|v| some(v, &|e| order(e, x).is_some_and(want)))
    };
    let within = |e: &Value| x.as_array().unwrap().iter().any(|y| same(e, y));
    match op.as_str() {
      "$eq" => v.is_some_and(|v| some(v, &|e| same(e, x))),
      "$ne" => !v.is_some_and(|v| some(v, &|e| same(e, x))),
      "$gt" => cmp(&|o| o.is_gt()),
      "$gte" => cmp(&|o| o.is_ge()),
      "$lt" => cmp(&|o| o.is_lt()),
      "$lte" => cmp(&|o| o.is_le()),
      "$in" => v.is_some_and(|v| some(v, &within)),
      "$nin" => !v.is_some_and(|v| some(v, &within)),
      "$exists" => v.is_some() == x.as_bool().unwrap(),
      "$not" => !ref_cond(x, v),
      other => panic!("the generator made an unknown operator {other}"),
    }
  })
}

fn ref_matches(filter: &Value, doc: &Value) -> bool {
  filter
    .as_object()
    .unwrap()
    .iter()
    .all(|(k, v)| match k.as_str() {
      "$and" => v.as_array().unwrap().iter().all(|f| ref_matches(f, doc)),
      "$or" => v.as_array().unwrap().iter().any(|f| ref_matches(f, doc)),
      "$not" => !ref_matches(v, doc),
      field => ref_cond(v, lookup(doc, field)),
    })
}

// ---------------------------------------------------------------- properties

proptest! {
  #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

  #[test]
  fn filters_agree_with_the_reference(f in filter(), d in doc()) {
    let parsed = Filter::parse(&f).map_err(|e| TestCaseError::fail(format!("{f} was refused: {}", e.message)))?;
    prop_assert_eq!(parsed.matches(&d), ref_matches(&f, &d), "filter {} on {}", f, d);
    // The raw-bytes path agrees with the parsed one.
    prop_assert_eq!(parsed.matches_json(d.to_string().as_bytes()), parsed.matches(&d));
  }

  #[test]
  fn invalid_filters_are_refused_with_a_path(f in prop_oneof![value(), operator_soup()]) {
    // Any JSON value, and documents full of `$` keys with operands of any shape: a valid
    // filter parses; anything else is ERR_INVALID_FILTER naming where, and never a panic.
    if let Err(e) = Filter::parse(&f) {
      prop_assert_eq!(e.code, Code::InvalidFilter);
      prop_assert!(e.message.starts_with("filter"), "{}", e.message);
    }
  }

  #[test]
  fn unknown_operators_name_their_path(op in "\\$[a-z]{1,6}", p in path()) {
    prop_assume!(!["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not"].contains(&op.as_str()));
    let f = json!({ p.clone(): { op.clone(): 1 } });
    let e = Filter::parse(&f).unwrap_err();
    prop_assert_eq!(e.code, Code::InvalidFilter);
    prop_assert!(e.message.contains(&format!("filter.{p}.{op}")), "{}", e.message);
  }

  #[test]
  fn cursors_round_trip(
    positions in prop::collection::btree_map(any::<u32>(), "[0-9a-z-]{0,12}", 0..6),
    cleared in prop::collection::btree_map("[0-9a-f]{4}-[0-9]", any::<u32>(), 0..3),
    floor in prop::option::of("[0-9]{1,8}"),
    scope in "[a-z]{1,8}(:[a-zA-Z0-9_]{1,8})?",
  ) {
    let c = Cursor { positions, cleared, floor };
    let text = c.encode(&scope);
    prop_assert_eq!(Cursor::decode(&text, &scope).unwrap(), c);
    let other = format!("{scope}x");
    prop_assert_eq!(Cursor::decode(&text, &other).unwrap_err().code, Code::InvalidCursor);
  }

  #[test]
  fn random_cursors_are_refused(text in ".{0,64}", tail in prop::collection::vec(any::<u8>(), 0..48)) {
    // Random text, and random bytes (base64url-encoded) after the prefix.
    // Each is refused with ERR_INVALID_CURSOR or, when it decodes, is a cursor that
    // encodes and decodes to itself.
    use base64::Engine;
    let forged = format!("rb1.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tail));
    for t in [text.as_str(), forged.as_str()] {
      match Cursor::decode(t, "memory") {
        Err(e) => prop_assert_eq!(e.code, Code::InvalidCursor),
        Ok(c) => prop_assert_eq!(Cursor::decode(&c.encode("memory"), "memory").unwrap(), c),
      }
    }
  }

  #[test]
  fn truncated_cursors_are_refused(cut in 0usize..200) {
    let mut c = Cursor::default();
    c.positions.insert(2, "17".into());
    c.floor = Some("3".into());
    let text = c.encode("memory");
    let cut = cut.min(text.len());
    if let Err(e) = Cursor::decode(&text[..cut], "memory") {
      prop_assert_eq!(e.code, Code::InvalidCursor);
    } else {
      prop_assert_eq!(cut, text.len());
    }
  }
}

/// The generated cases are not trivial: both outcomes occur often.
#[test]
fn generated_filters_both_match_and_miss() {
  use proptest::strategy::ValueTree;
  use proptest::test_runner::TestRunner;
  let mut runner = TestRunner::deterministic();
  let (mut hits, n) = (0, 2000);
  for _ in 0..n {
    let f = filter().new_tree(&mut runner).unwrap().current();
    let d = doc().new_tree(&mut runner).unwrap().current();
    if Filter::parse(&f).unwrap().matches(&d) {
      hits += 1;
    }
  }
  assert!(hits > n / 10 && hits < n * 9 / 10, "{hits} of {n} matched");
}

// ---------------------------------------------------------------- secrets and records

use ringbus::adapter::meta;
use ringbus::adapter::redis::{RedisAdapter, RedisConfig, RedisTarget, Secret};
use ringbus::secrets::{redact_url, scrub, url_secrets};

/// Random text, URL-special characters and non-ASCII included, between two markers so
/// that it cannot occur in a message by chance (a one-letter password is in every word).
fn password() -> impl Strategy<Value = String> {
  "[a-zA-Z0-9:@/?#%&=+ *πü😀.-]{0,24}".prop_map(|p| format!("Zq9{p}Xq7"))
}

fn percent_encode(s: &str) -> String {
  s.bytes()
    .map(|b| match b {
      b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
        (b as char).to_string()
      }
      _ => format!("%{b:02X}"),
    })
    .collect()
}

proptest! {
  #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

  #[test]
  fn scrubbed_messages_hold_no_secret(pw in password(), before in "[a-z :]{0,12}", after in "[a-z :]{0,12}") {
    let url = format!("redis://user:{}@127.0.0.1:6390/0", percent_encode(&pw));
    let msg = format!("{before}{url} failed for {pw}{after}: {}", percent_encode(&pw));
    let mut secrets = url_secrets(&url);
    secrets.push(pw.clone());
    let out = scrub(&secrets, redact_url(&msg));
    prop_assert!(!out.contains(&pw), "{out}");
    prop_assert!(!out.contains(&percent_encode(&pw)), "{out}");
  }

  #[test]
  fn meta_lines_never_panic(text in ".{0,80}", payload in prop::collection::vec(any::<u8>(), 0..64)) {
    // Random and truncated `Rb` meta text: parsed or refused, and payload checks hold.
    let _ = meta::parse(&text);
    let mut line = String::new();
    meta::write(&mut line, 1_700_000_000_000, 42, ringbus::event::PayloadKind::Json, Default::default());
    let cut = text.len() % (line.len() + 1);
    let _ = meta::parse(&line[..cut]);
    let _ = meta::payload_is_valid(ringbus::event::PayloadKind::Json, &payload);
  }
}

/// Keeps the records of one probe.
#[derive(Default)]
struct Capture(std::sync::Mutex<Vec<ringbus::log::Record>>);

impl ringbus::log::Sink for Capture {
  fn record(&self, record: ringbus::log::Record) {
    if record.message.starts_with("probe ") {
      self.0.lock().unwrap().push(record);
    }
  }
}

proptest! {
  #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

  #[test]
  fn log_records_hold_no_secret(pw in password(), user in "[a-z]{3,8}") {
    // Every level, ringbus's own target and a dependency's (async-nats logs the server URL
    // it dials, with Debug): the message, Display and Debug fields are scrubbed.
    std::env::set_var(ringbus::log::ENV, "trace");
    let url = format!("nats://{user}:{}@127.0.0.1:4222", percent_encode(&pw));
    let mut secrets = url_secrets(&url);
    secrets.push(pw.clone());
    ringbus::log::register_secrets(&secrets);
    let sink = std::sync::Arc::new(Capture::default());
    ringbus::log::set_sink(Some(sink.clone()), None, "trace").unwrap();
    let addr = Some(pw.as_str());
    macro_rules! each_level {
      ($target:expr) => {
        tracing::trace!(target: $target, server = %url, password = ?addr, "probe dialing {url} as {pw}");
        tracing::debug!(target: $target, server = %url, password = ?addr, "probe dialing {url} as {pw}");
        tracing::info!(target: $target, server = %url, password = ?addr, "probe dialing {url} as {pw}");
        tracing::warn!(target: $target, server = %url, password = ?addr, "probe dialing {url} as {pw}");
        tracing::error!(target: $target, server = %url, password = ?addr, "probe dialing {url} as {pw}");
      };
    }
    each_level!("ringbus::adapter::jetstream");
    each_level!("async_nats::connector");
    ringbus::log::set_sink(None, None, "warn").unwrap();
    let records = std::mem::take(&mut *sink.0.lock().unwrap());
    prop_assert_eq!(records.len(), 10);
    let encoded = percent_encode(&pw);
    let debugged = pw.escape_debug().to_string();
    for r in &records {
      let mut texts = vec![r.message.clone()];
      for (_, v) in &r.fields {
        if let ringbus::log::Value::Str(s) = v {
          texts.push(s.clone());
        }
      }
      for t in texts {
        prop_assert!(!t.contains(&pw) && !t.contains(&encoded) && !t.contains(&debugged), "{} {}: {}", r.level, r.target, t);
      }
    }
  }
}

proptest! {
  // Each case is a connection attempt to a closed port: few cases.
  #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

  #[test]
  fn connect_errors_hold_no_password(pw in password(), in_url in any::<bool>()) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Nothing listens on port 1 of loopback: the connect fails at once.
    let mut config = if in_url {
      RedisConfig::new(RedisTarget::Url(format!("redis://alice:{}@127.0.0.1:1", percent_encode(&pw))))
    } else {
      RedisConfig::new(RedisTarget::Url("redis://127.0.0.1:1".into()))
    };
    if !in_url {
      config.username = Some("alice".into());
      config.password = Some(Secret(pw.clone()));
    }
    config.connect_timeout = std::time::Duration::from_millis(500);
    let err = match rt.block_on(RedisAdapter::connect(config)) {
      Ok(_) => return Err(TestCaseError::fail("connected to a closed port")),
      Err(e) => e,
    };
    prop_assert_eq!(err.code, Code::Connect);
    prop_assert!(!err.message.contains(&pw), "{}", err.message);
    prop_assert!(!err.message.contains(&percent_encode(&pw)), "{}", err.message);
  }
}

/// A Redis stream entry from raw parts: id and field/value pairs.
fn entry_value(id: &str, fields: &[(Vec<u8>, Vec<u8>)]) -> redis::Value {
  let mut flat = Vec::new();
  for (k, v) in fields {
    flat.push(redis::Value::BulkString(k.clone()));
    flat.push(redis::Value::BulkString(v.clone()));
  }
  redis::Value::Array(vec![
    redis::Value::BulkString(id.as_bytes().to_vec()),
    redis::Value::Array(flat),
  ])
}

proptest! {
  #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

  #[test]
  fn redis_entries_decode_or_are_refused(
    names in prop::collection::vec(prop::sample::select(vec!["d", "m", "k", "h", "x"]), 0..6),
    values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 6),
    meta_ok in any::<bool>(),
  ) {
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = names.iter().zip(&values).map(|(n, v)| (n.as_bytes().to_vec(), v.clone())).collect();
    if meta_ok {
      // A valid meta line, so decoding gets past it to the payload, key and headers.
      let mut line = String::new();
      meta::write(&mut line, 5, 6, ringbus::event::PayloadKind::Bytes, Default::default());
      fields.push((b"m".to_vec(), format!("{line} ab-0-0-6").into_bytes()));
    }
    // Decoding a random entry gives an event or a reason; never a panic.
    let decoded = ringbus::adapter::redis::decode_entry(0, entry_value("5-1", &fields));
    if let Some((id, Ok(ev))) = decoded {
      prop_assert_eq!(id, "5-1");
      prop_assert!(fields.iter().any(|(n, _)| n == b"d"));
      prop_assert_eq!(ev.shard, 0);
    }
  }
}

proptest! {
  #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

  #[test]
  fn jetstream_records_decode_or_are_refused(
    names in prop::collection::vec(prop_oneof![
      Just("Rb".to_string()), Just("Rb-Key".to_string()), Just("Nats-Msg-Id".to_string()),
      "[A-Za-z][A-Za-z0-9_.-]{0,12}",
    ], 0..6),
    values in prop::collection::vec(".{0,40}", 6),
    meta_ok in any::<bool>(),
    json in any::<bool>(),
    payload in prop::collection::vec(any::<u8>(), 0..48),
    no_headers in any::<bool>(),
  ) {
    use async_nats::{HeaderMap, HeaderName, HeaderValue};
    use std::str::FromStr;
    let mut headers = HeaderMap::new();
    for (n, v) in names.iter().zip(&values) {
      // What the server can deliver: names and values the protocol allows.
      if let (Ok(n), Ok(v)) = (HeaderName::from_str(n), HeaderValue::from_str(v)) {
        headers.insert(n, v);
      }
    }
    if meta_ok {
      let kind = if json { ringbus::event::PayloadKind::Json } else { ringbus::event::PayloadKind::Bytes };
      let mut line = String::new();
      meta::write(&mut line, 5, 6, kind, Default::default());
      headers.insert("Rb", line.as_str());
    }
    let payload = bytes::Bytes::from(payload);
    let decoded = ringbus::adapter::jetstream::decode_record(3, 77, (!no_headers).then_some(&headers), &payload);
    match decoded {
      Ok(ev) => {
        prop_assert!(!no_headers);
        prop_assert_eq!(ev.shard, 3);
        prop_assert_eq!(ev.id.as_str(), "77");
        prop_assert_eq!(&ev.payload[..], &payload[..]);
        if let Some(h) = &ev.headers {
          prop_assert!(h.iter().all(|(n, _)| !ringbus::event::is_reserved_header(n)));
        }
      }
      Err(reason) => prop_assert!(!reason.is_empty()),
    }
  }
}

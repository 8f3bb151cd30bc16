//! A fast yes for the JSON almost every event is: ASCII strings without `\u` escapes,
//! numbers without exponents and at most 18 digits, shallow nesting. It answers only
//! "certainly valid" (serde_json would accept it, limits included) or "not sure", and
//! on "not sure" serde_json decides and words the error. One pass, no allocation.

/// Levels of nesting the quick check follows; deeper text goes to serde_json (limit 128).
const MAX_DEPTH: usize = 100;
/// Digits a number may have here: fewer than 19 always fit an i64 or parse as an f64.
const MAX_DIGITS: usize = 18;

/// True when `t` is certainly one valid JSON value that serde_json accepts.
pub(super) fn certainly_valid(t: &[u8]) -> bool {
  // Bit d: the container at depth d+1 is an object.
  let mut objects: u128 = 0;
  let mut depth = 0usize;
  let mut i = skip_ws(t, 0);
  'value: loop {
    // A value starts at `i`.
    match t.get(i) {
      Some(b'{') | Some(b'[') => {
        let object = t[i] == b'{';
        depth += 1;
        if depth > MAX_DEPTH {
          return false;
        }
        let bit = 1u128 << (depth - 1);
        objects = if object {
          objects | bit
        } else {
          objects & !bit
        };
        i = skip_ws(t, i + 1);
        let close = if object { b'}' } else { b']' };
        if t.get(i) == Some(&close) {
          i += 1;
          depth -= 1;
        } else {
          if object {
            let Some(next) = member_name(t, i) else {
              return false;
            };
            i = next;
          }
          continue 'value;
        }
      }
      Some(b'"') => match string(t, i) {
        Some(next) => i = next,
        None => return false,
      },
      Some(b't') if t[i..].starts_with(b"true") => i += 4,
      Some(b'f') if t[i..].starts_with(b"false") => i += 5,
      Some(b'n') if t[i..].starts_with(b"null") => i += 4,
      Some(b'-' | b'0'..=b'9') => match number(t, i) {
        Some(next) => i = next,
        None => return false,
      },
      _ => return false,
    }
    // After a value: close containers, or a comma and the next value.
    loop {
      i = skip_ws(t, i);
      if depth == 0 {
        return i == t.len();
      }
      let object = objects & (1 << (depth - 1)) != 0;
      match t.get(i) {
        Some(b',') => {
          i = skip_ws(t, i + 1);
          if object {
            let Some(next) = member_name(t, i) else {
              return false;
            };
            i = next;
          }
          continue 'value;
        }
        Some(b'}') if object => {
          i += 1;
          depth -= 1;
        }
        Some(b']') if !object => {
          i += 1;
          depth -= 1;
        }
        _ => return false,
      }
    }
  }
}

fn skip_ws(t: &[u8], mut i: usize) -> usize {
  while matches!(t.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
    i += 1;
  }
  i
}

/// `"name"` then `:` at `i`; the position of the member's value.
fn member_name(t: &[u8], i: usize) -> Option<usize> {
  if t.get(i) != Some(&b'"') {
    return None;
  }
  let i = skip_ws(t, string(t, i)?);
  (t.get(i) == Some(&b':')).then(|| skip_ws(t, i + 1))
}

/// A string starting at the quote at `i`: the position after its closing quote. None for
/// anything not certainly fine: control bytes, non-ASCII (UTF-8 checks), `\u` escapes.
fn string(t: &[u8], mut i: usize) -> Option<usize> {
  // Byte by byte: event strings are short, and a memchr per string measured slower.
  i += 1;
  loop {
    match *t.get(i)? {
      b'"' => return Some(i + 1),
      b'\\' => {
        if !matches!(
          t.get(i + 1)?,
          b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't'
        ) {
          return None;
        }
        i += 2;
      }
      0x20..=0x7f => i += 1,
      _ => return None,
    }
  }
}

/// A number at `i` without exponent: the position after it.
fn number(t: &[u8], mut i: usize) -> Option<usize> {
  let start = i;
  if t[i] == b'-' {
    i += 1;
  }
  match t.get(i)? {
    b'0' => i += 1,
    b'1'..=b'9' => {
      while t.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
      }
    }
    _ => return None,
  }
  if t.get(i) == Some(&b'.') {
    i += 1;
    if !t.get(i).is_some_and(u8::is_ascii_digit) {
      return None;
    }
    while t.get(i).is_some_and(u8::is_ascii_digit) {
      i += 1;
    }
  }
  if matches!(t.get(i), Some(b'e' | b'E')) {
    return None;
  }
  let digits = t[start..i].iter().filter(|b| b.is_ascii_digit()).count();
  (digits <= MAX_DIGITS).then_some(i)
}

#[cfg(test)]
mod tests {
  use super::certainly_valid;
  use proptest::prelude::*;

  fn serde_ok(t: &[u8]) -> bool {
    crate::event::check_json_with_serde(t).is_ok()
  }

  #[test]
  fn says_yes_to_ordinary_events_and_no_when_unsure_or_invalid() {
    for yes in [
      &br#"{"id":1,"type":"order.created","customer":"c-1","amount":12.5,"ok":true,"tag":null}"#[..],
      br#" [ 1 , -0.25 , "a\"b\\c\/\n" , [] , {} , [[{"a":[false]}]] ] "#,
      b"0",
      b"\"\"",
      b"-123456789012345678",
    ] {
      assert!(certainly_valid(yes), "{}", String::from_utf8_lossy(yes));
      assert!(serde_ok(yes));
    }
    for unsure in [
      &b"1e400"[..],
      b"1234567890123456789",
      "\"\u{e9}\"".as_bytes(),
      br#""\ud800""#,
      b"01",
      b"[1,]",
      b"{\"a\" 1}",
      b"{1:2}",
      b"[1] x",
      b"",
      b"tru",
      b"\"\x01\"",
      b"-",
      b"1.",
      b"{\"a\":1,}",
      b"[}",
      b"{]",
    ] {
      assert!(
        !certainly_valid(unsure),
        "{}",
        String::from_utf8_lossy(unsure)
      );
    }
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert!(certainly_valid(deep.as_bytes()));
    let deeper = format!("{}{}", "[".repeat(101), "]".repeat(101));
    assert!(!certainly_valid(deeper.as_bytes()));
  }

  /// Text built from JSON-ish pieces, so a good share of it is valid and the rest nearly so.
  fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
      Just(&b"{"[..]),
      Just(&b"}"[..]),
      Just(&b"["[..]),
      Just(&b"]"[..]),
      Just(&b","[..]),
      Just(&b":"[..]),
      Just(&b"\"k\""[..]),
      Just(&b"\"a\\n\\\"\""[..]),
      Just(&b"\"\\u00e9\""[..]),
      Just(&b"1"[..]),
      Just(&b"-0.5"[..]),
      Just(&b"01"[..]),
      Just(&b"1e5"[..]),
      Just(&b"true"[..]),
      Just(&b"null"[..]),
      Just(&b" "[..]),
      Just(&b"\x01"[..]),
      Just(&b"\xc3\xa9"[..]),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|ps| ps.concat())
  }

  proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]
    #[test]
    fn a_yes_is_never_wrong(t in jsonish()) {
      if certainly_valid(&t) {
        prop_assert!(serde_ok(&t), "{}", String::from_utf8_lossy(&t));
      }
    }

    #[test]
    fn a_yes_is_never_wrong_on_arbitrary_bytes(t in proptest::collection::vec(any::<u8>(), 0..64)) {
      if certainly_valid(&t) {
        prop_assert!(serde_ok(&t));
      }
    }
  }
}

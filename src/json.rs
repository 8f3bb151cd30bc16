//! Validation of JSON text (RFC 8259) without building anything.
//!
//! `ingest` validates every JSON string it is given. serde_json's `IgnoredAny` took about
//! 290 ns for a 100-byte event, most of the budget of an ingest call; this single pass
//! with no allocation takes a fraction of that. Containers may nest 256 deep.

use std::fmt;

/// Where and why text is not JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
  pub what: &'static str,
  pub at: usize,
}

impl fmt::Display for JsonError {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{} at byte {}", self.what, self.at)
  }
}

pub const MAX_DEPTH: usize = 256;

/// Open containers, one bit each: 1 for an object, 0 for an array.
struct Stack {
  bits: [u64; MAX_DEPTH / 64],
  len: usize,
}

impl Stack {
  fn push(&mut self, object: bool, at: usize) -> Result<(), JsonError> {
    if self.len == MAX_DEPTH {
      return Err(JsonError {
        what: "containers nested deeper than 256 levels",
        at,
      });
    }
    let (w, b) = (self.len / 64, self.len % 64);
    if object {
      self.bits[w] |= 1 << b;
    } else {
      self.bits[w] &= !(1 << b);
    }
    self.len += 1;
    Ok(())
  }

  /// The innermost container: Some(true) for an object, None at the top level.
  fn top(&self) -> Option<bool> {
    let i = self.len.checked_sub(1)?;
    Some(self.bits[i / 64] & (1 << (i % 64)) != 0)
  }
}

struct Parser<'a> {
  s: &'a [u8],
  i: usize,
}

impl Parser<'_> {
  fn fail<T>(&self, what: &'static str) -> Result<T, JsonError> {
    Err(JsonError { what, at: self.i })
  }

  #[inline]
  fn peek(&self) -> Option<u8> {
    self.s.get(self.i).copied()
  }

  #[inline]
  fn ws(&mut self) {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
      self.i += 1;
    }
  }

  fn literal(&mut self, word: &'static [u8]) -> Result<(), JsonError> {
    if self.s[self.i..].starts_with(word) {
      self.i += word.len();
      Ok(())
    } else {
      self.fail("invalid literal")
    }
  }

  fn digits(&mut self) -> usize {
    let start = self.i;
    while let Some(b'0'..=b'9') = self.peek() {
      self.i += 1;
    }
    self.i - start
  }

  fn number(&mut self) -> Result<(), JsonError> {
    if self.peek() == Some(b'-') {
      self.i += 1;
    }
    match self.peek() {
      Some(b'0') => self.i += 1,
      Some(b'1'..=b'9') => {
        self.digits();
      }
      _ => return self.fail("invalid number"),
    }
    if self.peek() == Some(b'.') {
      self.i += 1;
      if self.digits() == 0 {
        return self.fail("invalid number: digits expected after '.'");
      }
    }
    if let Some(b'e' | b'E') = self.peek() {
      self.i += 1;
      if let Some(b'+' | b'-') = self.peek() {
        self.i += 1;
      }
      if self.digits() == 0 {
        return self.fail("invalid number: digits expected in the exponent");
      }
    }
    Ok(())
  }

  /// A string, from its opening quote.
  fn string(&mut self) -> Result<(), JsonError> {
    self.i += 1;
    loop {
      // The common case: plain characters up to the closing quote.
      let rest = &self.s[self.i..];
      let plain = rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(rest.len());
      self.i += plain;
      match self.peek() {
        Some(b'"') => {
          self.i += 1;
          return Ok(());
        }
        Some(b'\\') => {
          self.i += 1;
          match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
            Some(b'u') => {
              self.i += 1;
              let hex = self.s.get(self.i..self.i + 4);
              if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return self.fail("invalid \\u escape");
              }
              self.i += 4;
            }
            _ => return self.fail("invalid escape"),
          }
        }
        Some(_) => return self.fail("control character in a string"),
        None => return self.fail("unterminated string"),
      }
    }
  }

  /// An object member's name and colon.
  fn member_name(&mut self) -> Result<(), JsonError> {
    self.ws();
    if self.peek() != Some(b'"') {
      return self.fail("expected a member name");
    }
    self.string()?;
    self.ws();
    if self.peek() != Some(b':') {
      return self.fail("expected ':'");
    }
    self.i += 1;
    Ok(())
  }
}

/// Ok when `text` is one JSON value, optionally surrounded by whitespace.
pub fn validate(text: &[u8]) -> Result<(), JsonError> {
  let mut p = Parser { s: text, i: 0 };
  let mut stack = Stack {
    bits: [0; MAX_DEPTH / 64],
    len: 0,
  };
  'value: loop {
    p.ws();
    match p.peek() {
      Some(b'{') => {
        p.i += 1;
        p.ws();
        if p.peek() == Some(b'}') {
          p.i += 1;
        } else {
          stack.push(true, p.i)?;
          p.member_name()?;
          continue 'value;
        }
      }
      Some(b'[') => {
        p.i += 1;
        p.ws();
        if p.peek() == Some(b']') {
          p.i += 1;
        } else {
          stack.push(false, p.i)?;
          continue 'value;
        }
      }
      Some(b'"') => p.string()?,
      Some(b't') => p.literal(b"true")?,
      Some(b'f') => p.literal(b"false")?,
      Some(b'n') => p.literal(b"null")?,
      Some(b'-' | b'0'..=b'9') => p.number()?,
      Some(_) => return p.fail("expected a value"),
      None => return p.fail("unexpected end of input"),
    }
    // After a value: close containers until one continues with ','.
    loop {
      p.ws();
      let Some(object) = stack.top() else {
        return if p.i == text.len() {
          Ok(())
        } else {
          p.fail("trailing characters")
        };
      };
      match (p.peek(), object) {
        (Some(b','), true) => {
          p.i += 1;
          p.member_name()?;
          continue 'value;
        }
        (Some(b','), false) => {
          p.i += 1;
          continue 'value;
        }
        (Some(b'}'), true) | (Some(b']'), false) => {
          p.i += 1;
          stack.len -= 1;
        }
        (None, _) => return p.fail("unexpected end of input"),
        (_, true) => return p.fail("expected ',' or '}'"),
        (_, false) => return p.fail("expected ',' or ']'"),
      }
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn serde_ok(s: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(s).is_ok()
  }

  const DOCS: &[&str] = &[
    r#"{"id":1,"type":"order.created","customer":"c-1","amount":1,"ok":true,"tag":"bench"}"#,
    r#" [1, -2.5e10, 0, -0, 0.5, 1E+2, 3e-4, "x\"y\\z\/\b\f\n\r\t\u00e9\uD83D\uDE00", true, false, null, {}, [] ] "#,
    r#"{"a":{"b":[{"c":null}],"d":"é ✓ 😀"},"e":[[[]]]}"#,
    "\"just a string\"",
    "123",
    "  null\n",
  ];

  /// Agrees with serde_json on every document, every truncation of it, and every one-byte
  /// replacement by a character that matters to the grammar.
  #[test]
  fn agrees_with_serde_json() {
    let swaps = b" \t{}[]\":,\\0129.-+eEtfnu\x01a";
    let mut checked = 0;
    for doc in DOCS {
      let d = doc.as_bytes();
      assert!(validate(d).is_ok(), "{doc}");
      let mut cases: Vec<Vec<u8>> = (0..d.len()).map(|n| d[..n].to_vec()).collect();
      for i in 0..d.len() {
        if !d.is_char_boundary_at(i) {
          continue;
        }
        for &b in swaps {
          let mut m = d.to_vec();
          m[i] = b;
          if std::str::from_utf8(&m).is_ok() {
            cases.push(m);
          }
        }
        let mut cut = d.to_vec();
        cut.remove(i);
        if std::str::from_utf8(&cut).is_ok() {
          cases.push(cut);
        }
      }
      for c in cases {
        assert_eq!(
          validate(&c).is_ok(),
          serde_ok(&c),
          "disagree on {:?}",
          String::from_utf8_lossy(&c)
        );
        checked += 1;
      }
    }
    assert!(checked > 5_000, "{checked}");
  }

  trait CharBoundary {
    fn is_char_boundary_at(&self, i: usize) -> bool;
  }
  impl CharBoundary for [u8] {
    fn is_char_boundary_at(&self, i: usize) -> bool {
      (self[i] as i8) >= -0x40
    }
  }

  #[test]
  fn refuses_the_usual_mistakes_with_a_position() {
    for (text, what) in [
      ("", "unexpected end of input"),
      ("{\"a\":1,}", "expected a member name"),
      ("[1,]", "expected a value"),
      ("{'a':1}", "expected a member name"),
      ("01", "trailing characters"),
      ("1.", "invalid number: digits expected after '.'"),
      ("\"tab\there\"", "control character in a string"),
      ("{\"a\" 1}", "expected ':'"),
      ("[1 2]", "expected ',' or ']'"),
      ("nul", "invalid literal"),
      ("\"\\x\"", "invalid escape"),
      ("{} {}", "trailing characters"),
    ] {
      assert_eq!(
        validate(text.as_bytes()).map_err(|e| e.what),
        Err(what),
        "{text:?}"
      );
    }
    assert_eq!(validate(b"[1 2]").unwrap_err().at, 3);
  }

  #[test]
  fn nesting_is_bounded_without_recursion() {
    let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(validate(ok.as_bytes()).is_ok());
    let deep = format!(
      "{}1{}",
      "[".repeat(MAX_DEPTH + 1),
      "]".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(
      validate(deep.as_bytes()).unwrap_err().what,
      "containers nested deeper than 256 levels"
    );
    let objects = format!("{}1{}", "{\"k\":".repeat(200), "}".repeat(200));
    assert!(validate(objects.as_bytes()).is_ok());
    assert!(validate(&objects.as_bytes()[..objects.len() - 1]).is_err());
  }
}

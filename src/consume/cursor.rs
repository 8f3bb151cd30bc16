//! Opaque, versioned cursors: `rb1.` + base64url(JSON `{"s": scope, "p": {shard: position},
//! "f": floor, "e": {producer: epoch}}`).
//!
//! The scope names the store (adapter kind and, for network adapters, the stream), so a
//! cursor from another backend is refused instead of being misread. `e` holds the epochs
//! the reader has proven complete per producer (see `barrier.rs`). `f`, in stores with one
//! order over all shards, is the position every shard not in `p` is at. Both are optional,
//! so cursors from before they existed still decode.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::adapter::Positions;
use crate::error::{BusError, Code, Result};

const PREFIX: &str = "rb1.";
/// Most producers a cursor remembers (a reader keeps 64, see `barrier.rs`); a cursor with
/// more was not made by ringbus, and each entry costs every read of the poll.
pub const MAX_CLEARED: usize = 64;
/// Longest cursor text accepted: 1,024 shards with long positions fit many times over.
pub const MAX_CURSOR_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
  pub positions: Positions,
  /// Producer → every one of its events of a lower epoch is behind `positions`.
  pub cleared: Cleared,
  /// Where a shard absent from `positions` is (stores with `total_order` only).
  pub floor: Option<String>,
}

impl Cursor {
  /// Where `shard` is: its own position, else the floor, else its start (None).
  pub fn position(&self, shard: u32) -> Option<&String> {
    self.positions.get(&shard).or(self.floor.as_ref())
  }
}

pub type Cleared = std::collections::BTreeMap<String, u32>;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
  s: String,
  p: std::collections::BTreeMap<String, String>,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  f: Option<String>,
  #[serde(default, skip_serializing_if = "Cleared::is_empty")]
  e: Cleared,
}

fn invalid(msg: impl Into<String>) -> BusError {
  BusError::new(Code::InvalidCursor, msg)
}

impl Cursor {
  pub fn encode(&self, scope: &str) -> String {
    let wire = Wire {
      s: scope.to_string(),
      p: self
        .positions
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect(),
      f: self.floor.clone(),
      e: self.cleared.clone(),
    };
    let json = serde_json::to_vec(&wire).expect("cursor serialises");
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
  }

  pub fn decode(text: &str, scope: &str) -> Result<Cursor> {
    if text.len() > MAX_CURSOR_BYTES {
      return Err(invalid(format!(
        "cursor is {} bytes, over the {MAX_CURSOR_BYTES}-byte limit of any cursor ringbus makes; pass a cursor returned by poll() unchanged",
        text.len()
      )));
    }
    let Some(body) = text.strip_prefix(PREFIX) else {
      return Err(invalid(
        "cursor is not a ringbus cursor (or is from an incompatible version); pass a cursor returned by poll() unchanged",
      ));
    };
    let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| {
      invalid("cursor is corrupt (bad encoding); pass a cursor returned by poll() unchanged")
    })?;
    let wire: Wire = serde_json::from_slice(&bytes).map_err(|_| {
      invalid("cursor is corrupt (bad content); pass a cursor returned by poll() unchanged")
    })?;
    if wire.s != scope {
      return Err(invalid(format!(
        "cursor belongs to another store ({}), this bus reads {}; cursors are valid only for the backend that issued them",
        wire.s, scope
      )));
    }
    if wire.e.len() > MAX_CLEARED {
      return Err(invalid(format!(
        "cursor remembers {} producers, over the {MAX_CLEARED} a reader keeps; pass a cursor returned by poll() unchanged",
        wire.e.len()
      )));
    }
    let mut positions = Positions::new();
    for (k, v) in wire.p {
      let shard: u32 = k
        .parse()
        .ok()
        .filter(|n: &u32| n.to_string() == k)
        .ok_or_else(|| invalid(format!("cursor names an invalid shard {k:?}")))?;
      positions.insert(shard, v);
    }
    Ok(Cursor {
      positions,
      cleared: wire.e,
      floor: wire.f,
    })
  }
}

/// The cursor of `from: 'latest'`. In a store with one order over all shards every end is
/// the same store-wide position, kept as the floor so that shards appearing later start
/// there instead of at their beginning.
pub fn latest(total_order: bool, positions: crate::adapter::Positions) -> Cursor {
  if total_order {
    let floor = positions
      .values()
      .filter_map(|p| p.parse::<u64>().ok())
      .max()
      .map(|p| p.to_string());
    Cursor {
      floor,
      ..Cursor::default()
    }
  } else {
    Cursor {
      positions,
      ..Cursor::default()
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn round_trip() {
    let mut c = Cursor::default();
    c.positions.insert(0, "12".into());
    c.positions.insert(3, "40".into());
    c.cleared.insert("00000000000000ab-0".into(), 4);
    c.floor = Some("9".into());
    let s = c.encode("memory");
    assert!(s.starts_with("rb1."));
    assert_eq!(Cursor::decode(&s, "memory").unwrap(), c);
    // Deterministic: the same positions encode to the same string.
    assert_eq!(s, c.clone().encode("memory"));
    // A cursor written before epochs were kept still reads.
    let old = format!(
      "rb1.{}",
      URL_SAFE_NO_PAD.encode(br#"{"s":"memory","p":{"1":"3"}}"#)
    );
    let c = Cursor::decode(&old, "memory").unwrap();
    assert_eq!((c.positions.len(), c.cleared.len(), c.floor), (1, 0, None));
  }

  #[test]
  fn rejections() {
    let c = Cursor::default().encode("memory");
    for bad in ["", "abc", "rb1.!!!", "rb1.e30", "rb2.e30"] {
      assert_eq!(
        Cursor::decode(bad, "memory").unwrap_err().code,
        Code::InvalidCursor,
        "{bad}"
      );
    }
    let err = Cursor::decode(&c, "jetstream:orders").unwrap_err();
    assert_eq!(err.code, Code::InvalidCursor);
    assert!(err.message.contains("another store"));
    let aliased = format!(
      "rb1.{}",
      URL_SAFE_NO_PAD.encode(br#"{"s":"memory","p":{"01":"3"}}"#)
    );
    assert!(Cursor::decode(&aliased, "memory").is_err());
    // Forged epoch maps are refused at decode, not rescanned on every read.
    let mut many = Cursor::default();
    for i in 0..=MAX_CLEARED {
      many.cleared.insert(format!("{i:016x}-0"), 1);
    }
    let err = Cursor::decode(&many.encode("memory"), "memory").unwrap_err();
    assert!(
      err.message.contains("remembers 65 producers"),
      "{}",
      err.message
    );
    many.cleared.pop_first();
    assert!(Cursor::decode(&many.encode("memory"), "memory").is_ok());
    let huge = format!("rb1.{}", "A".repeat(MAX_CURSOR_BYTES));
    assert_eq!(
      Cursor::decode(&huge, "memory").unwrap_err().code,
      Code::InvalidCursor
    );
  }
}

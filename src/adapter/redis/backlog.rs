//! How many entries follow a read position, for a consumer group's `lag`.
//!
//! A stream numbers its entries (`entries-added` in `XINFO STREAM`, Redis 7) but cannot
//! count the entries after an arbitrary id without walking them. A position's number is
//! known where it is the start, the end or before the first entry left after trimming,
//! or (walking at most [`WALK_CAP`] entries) near the end; after that the adapter carries
//! it from page to page as it reads, so a member pays one walk per shard at most.

use std::collections::HashMap;

use parking_lot::Mutex;
use redis::Value;

/// Entries walked to number a position found nowhere else.
const WALK_CAP: usize = 10_000;
/// Positions remembered per adapter; old ones are forgotten past this.
const MAX_NUMBERED: usize = 1024;

/// KEYS[1]: the shard's stream. ARGV[1]: the position ('' for the start), ARGV[2]: its
/// number if known ('' if not), ARGV[3]: the walk cap.
/// Returns {entries after the position (-1: unknown), the position's number (-1: none)}.
pub const SCRIPT: &str = r#"
local ok, info = pcall(redis.call, 'XINFO', 'STREAM', KEYS[1])
if not ok then return {0, -1} end
local f = {}
for i = 1, #info, 2 do f[info[i]] = info[i + 1] end
local added = f['entries-added']
if not added then return {-1, -1} end
local len, pos = f['length'], ARGV[1]
if ARGV[2] ~= '' then return {math.max(added - tonumber(ARGV[2]), 0), tonumber(ARGV[2])} end
if pos == '' then return {len, added - len} end
if pos == f['last-generated-id'] then return {0, added} end
local function id(s)
  local ms, seq = string.match(s, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local first = f['first-entry']
if not first or first == false then return {0, added} end
local pm, ps = id(pos)
local fm, fs = id(first[1])
if pm < fm or (pm == fm and ps < fs) then return {len, added - len} end
local after = redis.call('XRANGE', KEYS[1], '(' .. pos, '+', 'COUNT', tonumber(ARGV[3]))
if #after < tonumber(ARGV[3]) then return {#after, added - #after} end
return {-1, -1}
"#;

/// The numbers of read positions this adapter has seen, per shard.
#[derive(Default)]
pub struct Numbered(Mutex<HashMap<(u32, String), u64>>);

impl Numbered {
  pub fn get(&self, shard: u32, pos: &str) -> Option<u64> {
    self.0.lock().get(&(shard, pos.to_string())).copied()
  }

  pub fn set(&self, shard: u32, pos: &str, n: u64) {
    let mut map = self.0.lock();
    if map.len() >= MAX_NUMBERED {
      map.clear();
    }
    map.insert((shard, pos.to_string()), n);
  }

  /// A page moved a reader from `from` past `examined` entries to `to`.
  pub fn carry(&self, shard: u32, from: &str, to: &str, examined: usize) {
    let mut map = self.0.lock();
    if let Some(n) = map.remove(&(shard, from.to_string())) {
      map.insert((shard, to.to_string()), n + examined as u64);
    }
  }
}

pub fn args(pos: &str, known: Option<u64>) -> [String; 3] {
  [
    pos.to_string(),
    known.map(|n| n.to_string()).unwrap_or_default(),
    WALK_CAP.to_string(),
  ]
}

/// Entries after the position (None: unknown) and the position's number, if it has one.
pub fn reply(v: &Value) -> (Option<u64>, Option<u64>) {
  let Value::Array(parts) = v else {
    return (None, None);
  };
  let known = |n: i64| u64::try_from(n).ok();
  match parts.as_slice() {
    [Value::Int(after), Value::Int(n)] => (known(*after), known(*n)),
    _ => (None, None),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn carries_a_number_from_page_to_page_and_forgets_unknown_ones() {
    let n = Numbered::default();
    n.carry(0, "1-0", "5-0", 4);
    assert_eq!(n.get(0, "5-0"), None);
    n.set(0, "1-0", 10);
    n.carry(0, "1-0", "5-0", 4);
    assert_eq!((n.get(0, "1-0"), n.get(0, "5-0")), (None, Some(14)));
    assert_eq!(n.get(1, "5-0"), None);
  }

  #[test]
  fn reads_the_script_reply() {
    let ok = Value::Array(vec![Value::Int(3), Value::Int(40)]);
    assert_eq!(reply(&ok), (Some(3), Some(40)));
    let unknown = Value::Array(vec![Value::Int(-1), Value::Int(-1)]);
    assert_eq!(reply(&unknown), (None, None));
    let missing = Value::Array(vec![Value::Int(0), Value::Int(-1)]);
    assert_eq!(reply(&missing), (Some(0), None));
    assert_eq!(reply(&Value::Nil), (None, None));
  }
}

//! Shard routing: xxh3 of the key (or of the payload when there is no key), mapped to a
//! shard index by jump consistent hashing. The mapping is stable while the shard count is
//! unchanged, and a change of count moves only the keys that must move.

use xxhash_rust::xxh3::xxh3_64;

pub fn hash_key(bytes: &[u8]) -> u64 {
  xxh3_64(bytes)
}

/// Jump consistent hash (Lamping & Veach): maps `hash` to `0..buckets`.
pub fn jump(mut hash: u64, buckets: u32) -> u32 {
  debug_assert!(buckets > 0);
  let mut b: i64 = -1;
  let mut j: i64 = 0;
  while j < buckets as i64 {
    b = j;
    hash = hash.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
    j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((hash >> 33) + 1) as f64)) as i64;
  }
  b as u32
}

/// The shard index for an event.
pub fn route(key: Option<&str>, payload: &[u8], shards: u32) -> u32 {
  let h = match key {
    Some(k) => hash_key(k.as_bytes()),
    None => hash_key(payload),
  };
  jump(h, shards)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn same_key_same_shard() {
    for i in 0..1000 {
      let k = format!("customer-{i}");
      let a = route(Some(&k), b"x", 8);
      let b = route(Some(&k), b"something else", 8);
      assert_eq!(a, b);
      assert!(a < 8);
    }
  }

  #[test]
  fn uniform_spread() {
    let n = 80_000;
    let mut counts = [0u32; 8];
    for i in 0..n {
      counts[route(Some(&format!("k{i}")), b"", 8) as usize] += 1;
    }
    let mean = n as f64 / 8.0;
    for c in counts {
      assert!((c as f64 - mean).abs() / mean < 0.05, "{counts:?}");
    }
  }

  #[test]
  fn growing_moves_few_keys() {
    let n = 10_000;
    let moved = (0..n)
      .filter(|i| {
        let h = hash_key(format!("k{i}").as_bytes());
        jump(h, 4) != jump(h, 5)
      })
      .count();
    // Ideal is 1/5 of the keys.
    assert!(moved < n * 25 / 100, "moved {moved}");
  }

  #[test]
  fn payload_hash_without_key() {
    assert_eq!(route(None, b"{\"a\":1}", 4), route(None, b"{\"a\":1}", 4));
  }
}

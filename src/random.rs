//! Random 64-bit values for nonces, instance ids and retry jitter: OS randomness, never 0.

/// A random non-zero u64. Without OS randomness it falls back to a hash of the time and a
/// stack address rather than failing: these values need to differ, not to be secret.
pub fn random_u64() -> u64 {
  loop {
    let mut buf = [0u8; 8];
    if getrandom::fill(&mut buf).is_err() {
      // No OS randomness: fall back to time and address entropy rather than failing.
      let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
      let local = 0u8;
      buf = xxhash_rust::xxh3::xxh3_64(
        &[t.to_le_bytes(), (&local as *const u8 as u64).to_le_bytes()].concat(),
      )
      .to_le_bytes();
    }
    let v = u64::from_le_bytes(buf);
    if v != 0 {
      return v;
    }
  }
}

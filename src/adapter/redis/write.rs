//! Idempotent appends: a server-side script per chunk of one shard's events.
//!
//! Why a script and not explicit entry ids: ids derived from our sequence (`<ts>-<seq>`)
//! make Redis refuse a retried entry, but they also refuse a *new* entry from another
//! producer whose clock or sequence is behind the stream's top (two processes with one
//! `keyPrefix`, or a restart), and a refusal cannot tell "already stored" from "behind".
//! The script instead keeps, per producer lifetime (nonce, generation) and shard, the
//! highest sequence it has appended: a high-water mark in a key next to the stream (same
//! hash tag, so same cluster slot). A shard's events reach Redis in sequence order, so
//! "sequence <= mark" means "already stored": a retry after a timeout or a dropped
//! connection is skipped, whatever happened to the earlier attempt. One small key per
//! producer lifetime and shard, instead of one per event, keeps the dedup state's memory
//! flat at any rate. The price, measured with 200,000 ~100-byte events on Redis 7.0 here:
//! 2.5 µs of server CPU per event through the script against 1.3 µs for a pipeline of
//! plain `XADD`s, whatever the chunk size (64 to 1,024); end to end the bus still stores
//! over 300,000 events/s on this 2-core machine.

use redis::{RedisError, Value};

use super::super::{AdapterError, Outcome, WriteBatch};
use crate::error::Code;

/// KEYS[1]: the shard's stream. KEYS[2]: this producer's high-water mark on it.
/// ARGV[1]: the mark's lifetime in ms. ARGV[2]: MAXLEN for `~` trimming ('0': none).
/// ARGV[3]: the last sequence of the previous chunk of the same write ('-1': none); it
/// must be stored already, or nothing is written (the chunks arrived out of order).
/// Then five per event: sequence, meta (`<ts> <seq> <json|bytes> <message id>`), payload,
/// key ('' for none, '=' .. key otherwise), headers ('' for none, else their JSON).
/// Returns {appended, index of the first event not stored (-1: all stored), error}.
pub const SCRIPT: &str = r#"
local mark = tonumber(redis.call('GET', KEYS[2]) or '-1')
if mark < tonumber(ARGV[3]) then
  return {0, 0, 'RINGBUS_ORDER the previous chunk is not stored yet'}
end
local trim = ARGV[2] ~= '0'
local top, top_arg, appended = mark, nil, 0
for i = 4, #ARGV, 5 do
  local seq = tonumber(ARGV[i])
  if seq > top then
    local key, h = ARGV[i + 3], ARGV[i + 4]
    local r
    if h ~= '' then
      -- Rare enough to build the arguments in a table; the common shapes below do not.
      local a = {KEYS[1]}
      if trim then a[#a + 1] = 'MAXLEN' a[#a + 1] = '~' a[#a + 1] = ARGV[2] end
      a[#a + 1] = '*' a[#a + 1] = 'd' a[#a + 1] = ARGV[i + 2] a[#a + 1] = 'm' a[#a + 1] = ARGV[i + 1]
      if key ~= '' then a[#a + 1] = 'k' a[#a + 1] = string.sub(key, 2) end
      a[#a + 1] = 'h' a[#a + 1] = h
      r = redis.pcall('XADD', unpack(a))
    elseif trim then
      if key == '' then
        r = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'd', ARGV[i + 2], 'm', ARGV[i + 1])
      else
        r = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'd', ARGV[i + 2], 'm', ARGV[i + 1], 'k', string.sub(key, 2))
      end
    elseif key == '' then
      r = redis.pcall('XADD', KEYS[1], '*', 'd', ARGV[i + 2], 'm', ARGV[i + 1])
    else
      r = redis.pcall('XADD', KEYS[1], '*', 'd', ARGV[i + 2], 'm', ARGV[i + 1], 'k', string.sub(key, 2))
    end
    if type(r) == 'table' and r.err then
      if top_arg then redis.call('SET', KEYS[2], top_arg, 'PX', ARGV[1]) end
      return {appended, (i - 4) / 5, r.err}
    end
    top, top_arg, appended = seq, ARGV[i], appended + 1
  end
end
if top_arg then
  redis.call('SET', KEYS[2], top_arg, 'PX', ARGV[1])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return {appended, -1, ''}
"#;

/// Keys of one shard: the stream and the producer's mark share the hash tag.
pub fn stream_key(prefix: &str, shard: u32) -> String {
  format!("{{{prefix}:{shard}}}")
}

/// The set of shard ids that hold events under `prefix`, written by any producer. The
/// braces make it one hash tag of its own, so it works on a cluster.
pub fn shards_key(prefix: &str) -> String {
  format!("{{{prefix}}}:shards")
}

/// Producers that wrote under `prefix`, by when they last began writing to a shard (same tag
/// as the shard set, so both change in one script on a cluster).
pub fn producers_key(prefix: &str) -> String {
  format!("{{{prefix}}}:producers")
}

pub fn mark_key(prefix: &str, shard: u32, producer: &crate::event::ProducerId) -> String {
  format!(
    "{{{prefix}:{shard}}}:mark:{:016x}-{}",
    producer.nonce, producer.generation
  )
}

/// The script calls for one write: `(pipeline, event ranges of each command)`.
pub fn build(
  batch: &WriteBatch<'_>,
  sha: &str,
  prefix: &str,
  max_len: Option<u64>,
  window_ms: u128,
  chunk: usize,
) -> (redis::Pipeline, Vec<std::ops::Range<usize>>) {
  let stream = stream_key(prefix, batch.shard);
  let mark = mark_key(prefix, batch.shard, &batch.producer);
  let mut pipe = redis::pipe();
  pipe.ignore_errors();
  let mut ranges = Vec::new();
  let mut start = 0;
  let mut meta = String::new();
  let mut key = String::new();
  let mut headers = String::new();
  for events in batch.events.chunks(chunk) {
    let mut cmd = redis::cmd("EVALSHA");
    cmd
      .arg(sha)
      .arg(2)
      .arg(&stream)
      .arg(&mark)
      .arg(window_ms as u64)
      .arg(max_len.unwrap_or(0));
    match start {
      0 => cmd.arg(-1i64),
      _ => cmd.arg(batch.events[start - 1].seq),
    };
    for ev in events {
      use std::fmt::Write;
      meta.clear();
      super::super::meta::write(&mut meta, ev.timestamp_ms, ev.seq, ev.kind, ev.stamp);
      let _ = write!(meta, " {}", batch.producer.message_id(batch.shard, ev.seq));
      key.clear();
      if let Some(k) = &ev.key {
        key.push('=');
        key.push_str(k);
      }
      headers.clear();
      if let Some(h) = &ev.headers {
        headers = serde_json::to_string(&crate::event::headers_to_pairs(h)).unwrap_or_default();
      }
      cmd
        .arg(ev.seq)
        .arg(meta.as_str())
        .arg(&ev.payload[..])
        .arg(key.as_str())
        .arg(headers.as_str());
    }
    pipe.add_command(cmd);
    ranges.push(start..start + events.len());
    start += events.len();
  }
  (pipe, ranges)
}

/// Whether a server error may pass by itself (failover, loading, memory freed by trimming).
pub fn transient_server_error(text: &str) -> bool {
  const TRANSIENT: [&str; 11] = [
    "OOM",
    "BUSY",
    "LOADING",
    "TRYAGAIN",
    "MASTERDOWN",
    "READONLY",
    "CLUSTERDOWN",
    "NOREPLICAS",
    "MOVED",
    "ASK",
    "RINGBUS_ORDER",
  ];
  TRANSIENT.iter().any(|p| text.starts_with(p))
}

/// How one script reply settles its events (`outcomes` has one slot per event of the write).
pub fn settle(
  reply: Result<Value, RedisError>,
  range: std::ops::Range<usize>,
  outcomes: &mut [Option<Outcome>],
  error: impl Fn(bool, String) -> AdapterError,
) {
  let fail_from = |outcomes: &mut [Option<Outcome>], from: usize, first: Outcome| {
    outcomes[from] = Some(first);
    for o in &mut outcomes[from + 1..range.end] {
      *o = Some(Outcome::Retry(AdapterError::retryable(
        "not sent: an earlier event of the chunk failed",
      )));
    }
  };
  match reply {
    Ok(Value::Array(items)) if items.len() == 3 => {
      let failed = match &items[1] {
        Value::Int(i) => *i,
        _ => -2,
      };
      if failed == -1 {
        for o in &mut outcomes[range.clone()] {
          *o = Some(Outcome::Stored);
        }
        return;
      }
      let text = match &items[2] {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        _ => String::new(),
      };
      let at = usize::try_from(failed).unwrap_or(0).min(range.len() - 1);
      for o in &mut outcomes[range.start..range.start + at] {
        *o = Some(Outcome::Stored);
      }
      let first = if transient_server_error(&text) {
        Outcome::Retry(error(true, format!("Redis refused a write: {text}")))
      } else {
        Outcome::Reject(error(
          false,
          format!("Redis refused the event: {text}; check that the shard's key holds a stream and the user may write it"),
        ))
      };
      fail_from(outcomes, range.start + at, first);
    }
    Ok(other) => fail_from(
      outcomes,
      range.start,
      Outcome::Retry(error(
        true,
        format!("unexpected reply from the write script: {other:?}"),
      )),
    ),
    Err(e) => {
      let outcome = command_failure(&e, &error);
      fail_from(outcomes, range.start, outcome);
    }
  }
}

/// A failed command: retry when the failure may pass, otherwise drop with the reason.
pub fn command_failure(e: &RedisError, error: &impl Fn(bool, String) -> AdapterError) -> Outcome {
  if e.is_timeout() {
    let mut err = error(true, format!("Redis write timed out: {e}"));
    err.code = Code::Timeout;
    return Outcome::Retry(err);
  }
  let text = e.to_string();
  let code = e.code().unwrap_or("");
  if e.is_io_error()
    || e.is_connection_dropped()
    || e.is_connection_refusal()
    || code == "NOSCRIPT"
    || transient_server_error(code)
    || !e.is_unrecoverable_error() && e.code().is_none()
  {
    Outcome::Retry(error(true, format!("Redis write failed: {text}")))
  } else {
    Outcome::Reject(error(
      false,
      format!(
        "Redis refused the write: {text}; check the user's permissions (scripts and streams)"
      ),
    ))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn err(retryable: bool, message: String) -> AdapterError {
    AdapterError {
      code: Code::Adapter,
      retryable,
      message,
    }
  }

  fn reply(failed: i64, text: &str) -> Result<Value, RedisError> {
    Ok(Value::Array(vec![
      Value::Int(0),
      Value::Int(failed),
      Value::BulkString(text.as_bytes().to_vec()),
    ]))
  }

  fn kinds(outcomes: &[Option<Outcome>]) -> String {
    outcomes
      .iter()
      .map(|o| match o {
        Some(Outcome::Stored) => 'S',
        Some(Outcome::Retry(_)) => 'R',
        Some(Outcome::Reject(_)) => 'X',
        None => '-',
      })
      .collect()
  }

  #[test]
  fn a_reply_settles_only_its_own_events() {
    let mut outcomes = vec![None; 8];
    settle(reply(-1, ""), 0..4, &mut outcomes, err);
    settle(
      reply(1, "OOM command not allowed"),
      4..8,
      &mut outcomes,
      err,
    );
    // Before the failure: stored; the failure itself: retried (OOM may pass); after: not sent.
    assert_eq!(kinds(&outcomes), "SSSSSRRR");

    let mut outcomes = vec![None; 3];
    settle(
      reply(0, "WRONGTYPE Operation against a key"),
      0..3,
      &mut outcomes,
      err,
    );
    assert_eq!(kinds(&outcomes), "XRR");

    let mut outcomes = vec![None; 2];
    settle(
      reply(0, "RINGBUS_ORDER the previous chunk"),
      0..2,
      &mut outcomes,
      err,
    );
    assert_eq!(kinds(&outcomes), "RR");
  }

  #[test]
  fn keys_share_the_shard_hash_tag() {
    let producer = crate::event::ProducerId {
      nonce: 0xab,
      generation: 2,
    };
    assert_eq!(stream_key("orders", 3), "{orders:3}");
    assert_eq!(
      mark_key("orders", 3, &producer),
      "{orders:3}:mark:00000000000000ab-2"
    );
  }
}

//! Looking at a Redis store from outside a read: what each shard holds (`bus.info()`)
//! and where a read from a point in time starts (`from: { time }`). Entry ids are the
//! server's store times, so both come from ids, not from scanning entries.

use super::groups::{number, text};
use super::*;

/// Entries one count step walks: one script call holds the server this long at most.
const COUNT_STEP: usize = 10_000;

/// KEYS[1]: a shard's stream; ARGV[1]: where to start (XRANGE syntax), ARGV[2]: the step.
/// Returns {entries seen, the last one's id}: the entries stay in the server.
const COUNT_SCRIPT: &str =
  "local r = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2]) \
  if #r == 0 then return {0, ''} end return {#r, r[#r][1]}";

/// How long a producer stays listed after it last began writing to a shard.
pub(super) const PRODUCERS_KEPT: Duration = Duration::from_secs(7 * 86_400);

/// KEYS[1]: the shard set, KEYS[2]: the producer set. ARGV: shard, producer, kept ms.
/// Server time, so every producer is dated on one clock; old producers are dropped here,
/// so the set stays bounded.
pub(super) const RECORD_SCRIPT: &str = "redis.call('SADD', KEYS[1], ARGV[1]) \
  local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) \
  redis.call('ZADD', KEYS[2], now, ARGV[2]) \
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3])) return 1";

impl RedisAdapter {
  /// The producers recorded under this prefix, oldest first.
  pub(super) async fn producers_seen(&self) -> Result<Vec<ProducerSeen>, AdapterError> {
    let mut cmd = redis::cmd("ZRANGE");
    cmd
      .arg(producers_key(&self.config.key_prefix))
      .arg(0)
      .arg(-1)
      .arg("WITHSCORES");
    let reply = self.query(&cmd, "producer list (ZRANGE)").await?;
    let items: Vec<Value> = match reply {
      Value::Array(items) => items,
      _ => Vec::new(),
    };
    // RESP2 gives [member, score, ...]; RESP3 gives [[member, score], ...].
    let flat: Vec<Value> = items
      .into_iter()
      .flat_map(|v| match v {
        Value::Array(pair) => pair,
        other => vec![other],
      })
      .collect();
    Ok(
      flat
        .chunks(2)
        .filter_map(|pair| {
          let name = text(pair.first()?)?;
          let seen = number(pair.get(1)?);
          let (nonce, epoch) = name.split_once('-')?;
          Some(ProducerSeen {
            nonce: nonce.to_string(),
            epoch: epoch.parse().ok()?,
            seen_ms: seen,
          })
        })
        .collect(),
    )
  }

  /// How many entries follow `after` on `shard`: from the stream's numbering where it
  /// tells (Redis 7), else counted in steps inside the server.
  pub(super) async fn count_entries_after(
    &self,
    shard: u32,
    after: Option<&str>,
  ) -> Result<u64, AdapterError> {
    use crate::adapter::group_store::GroupStore;
    let positions = [(shard, after.map(str::to_string))];
    if let Some(Some(n)) = self.backlog(&positions).await.first() {
      return Ok(*n);
    }
    let key = stream_key(&self.config.key_prefix, shard);
    let mut from = match after {
      Some(a) => format!("({a}"),
      None => "-".to_string(),
    };
    let mut total = 0u64;
    loop {
      let mut cmd = redis::cmd("EVAL");
      cmd
        .arg(COUNT_SCRIPT)
        .arg(1)
        .arg(&key)
        .arg(&from)
        .arg(COUNT_STEP);
      let reply = self.query(&cmd, "entry count (XRANGE)").await?;
      let (n, last) = match &reply {
        Value::Array(v) if v.len() == 2 => (number(&v[0]), text(&v[1]).unwrap_or_default()),
        _ => (0, String::new()),
      };
      total += n;
      if (n as usize) < COUNT_STEP || last.is_empty() {
        return Ok(total);
      }
      from = format!("({last}");
    }
  }

  pub(super) async fn shard_info_of(&self, shards: &[u32]) -> Result<Vec<ShardInfo>, AdapterError> {
    let mut out = Vec::with_capacity(shards.len());
    for &shard in shards {
      let key = stream_key(&self.config.key_prefix, shard);
      let mut len = redis::cmd("XLEN");
      len.arg(&key);
      let count = match self.query(&len, "shard info (XLEN)").await? {
        Value::Int(n) => n.max(0) as u64,
        _ => 0,
      };
      let mut info = ShardInfo {
        id: shard,
        count,
        ..ShardInfo::default()
      };
      if count > 0 {
        // Entry ids are store times: the first and last id give both ends.
        for (dir, from, to) in [("XRANGE", "-", "+"), ("XREVRANGE", "+", "-")] {
          let mut cmd = redis::cmd(dir);
          cmd.arg(&key).arg(from).arg(to).arg("COUNT").arg(1);
          let at = entry_ms(
            &self
              .query(&cmd, "shard info (first and last entry)")
              .await?,
          );
          if dir == "XRANGE" {
            info.first_at = at;
          } else {
            info.last_at = at;
          }
        }
        let mut mem = redis::cmd("MEMORY");
        mem.arg("USAGE").arg(&key);
        // MEMORY may be renamed or refused for this user: the size is then unknown.
        if let Ok(Value::Int(n)) = self.query(&mem, "shard info (MEMORY USAGE)").await {
          info.bytes = Some(n.max(0) as u64);
        }
      }
      out.push(info);
    }
    Ok(out)
  }

  pub(super) async fn positions_at_time(
    &self,
    shards: &[u32],
    time_ms: u64,
  ) -> Result<Positions, AdapterError> {
    let Some(before) = time_ms.checked_sub(1) else {
      return Ok(Positions::new());
    };
    // Entry ids are the server's store times: everything after `<time - 1>-<largest>` was
    // stored at or after `time`. A shard whose last entry is older starts at that entry
    // instead (its end), as on the other stores; an empty shard from its start.
    let ends = self.end_positions(shards).await?;
    Ok(
      ends
        .into_iter()
        .map(|(shard, last)| {
          let last_ms = last
            .split_once('-')
            .and_then(|(ms, _)| ms.parse::<u64>().ok());
          match last_ms {
            Some(ms) if ms < time_ms => (shard, last),
            _ => (shard, format!("{before}-{}", u64::MAX)),
          }
        })
        .collect(),
    )
  }
}

/// The store time (ms) of the one entry an `XRANGE … COUNT 1` reply holds.
fn entry_ms(reply: &Value) -> Option<u64> {
  let Value::Array(entries) = reply else {
    return None;
  };
  let Some(Value::Array(entry)) = entries.first() else {
    return None;
  };
  let id = match entry.first()? {
    Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
    Value::SimpleString(s) => s.clone(),
    _ => return None,
  };
  id.split_once('-')?.0.parse().ok()
}

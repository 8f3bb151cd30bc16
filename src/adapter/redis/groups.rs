//! Consumer-group state in Redis. Every key of a group shares the hash tag
//! `{<prefix>:g:<group>}`, so the scripts below touch one slot on a cluster.
//!
//! - `…:live`: sorted set, member → expiry (server time, ms);
//! - `…:names`: the same members with score 0, so `ZRANK` gives a member's place in name
//!   order without listing the group (each renewal costs O(log n), not O(n));
//! - `…:seen`: hash, member → its last renewal (server time, ms), for inspection;
//! - `…:lease:<shard>`: the holder's name, with PX;
//! - `…:commit:<shard>`: the commit record, written only by the lease holder (one script);
//! - `…:start`: the start record, set once;
//! - `…:dead`, `…:back`: streams of letters (field `l`);
//! - `{<prefix>}:groups`: set of every group's name (a tag of its own), for listing;
//! - `…:moved`: the pub/sub channel of the group's signals (`signals.rs`).

use std::time::Duration;

use async_trait::async_trait;
use redis::Value;

use super::backlog;
use super::decode::is_entry_id;
use super::RedisAdapter;
use crate::adapter::group_store::{
  GroupStore, LeaseSeen, Letter, LetterPage, MemberSeen, Signals, Tray,
};
use crate::adapter::AdapterError;

/// Server time in ms, so that every member measures expiry on one clock.
const NOW: &str = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) ";

/// Drops expired members from both sets and the renewal hash (KEYS[1] live, KEYS[2]
/// names, KEYS[3] seen), in chunks that stay under Lua's limit on `unpack`.
const PRUNE: &str = "local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now) \
  for i = 1, #gone, 1000 do local j = math.min(i + 999, #gone) \
  redis.call('ZREM', KEYS[1], unpack(gone, i, j)) redis.call('ZREM', KEYS[2], unpack(gone, i, j)) \
  redis.call('HDEL', KEYS[3], unpack(gone, i, j)) end ";

fn heartbeat_script() -> String {
  format!(
    "{NOW} {PRUNE} local ttl = tonumber(ARGV[2]) \
     redis.call('ZADD', KEYS[1], now + ttl, ARGV[1]) redis.call('ZADD', KEYS[2], 0, ARGV[1]) \
     redis.call('HSET', KEYS[3], ARGV[1], now) \
     for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl * 10) end return 1"
  )
}

/// `[name, expiry, renewed, ...]` of every live member.
fn member_list_script() -> String {
  format!(
    "{NOW} {PRUNE} local out = {{}} local live = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES') \
     for i = 1, #live, 2 do table.insert(out, live[i]) table.insert(out, live[i + 1]) \
     table.insert(out, redis.call('HGET', KEYS[3], live[i]) or '0') end return out"
  )
}

/// `[holder, until]` of a lease (server time), or nothing when it is free.
const LEASE_HOLDER: &str = "local h = redis.call('GET', KEYS[1]) if not h then return {} end \
  local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) \
  return {h, tostring(now + math.max(redis.call('PTTL', KEYS[1]), 0))}";

fn members_script() -> String {
  format!("{NOW} {PRUNE} return redis.call('ZRANGE', KEYS[2], 0, -1)")
}

/// `[rank, count]`, or -1 when the member is not live.
fn rank_script() -> String {
  format!(
    "{NOW} {PRUNE} local r = redis.call('ZRANK', KEYS[2], ARGV[1]) \
     if not r then return -1 end return {{r, redis.call('ZCARD', KEYS[2])}}"
  )
}

const LEAVE: &str = "redis.call('ZREM', KEYS[1], ARGV[1]) redis.call('ZREM', KEYS[2], ARGV[1]) \
  redis.call('HDEL', KEYS[3], ARGV[1]) return 1";

const LEASE: &str = "local h = redis.call('GET', KEYS[1]) \
  if (not h) or h == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end return 0";

const RELEASE: &str =
  "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1";

const COMMIT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
  redis.call('SET', KEYS[2], ARGV[2]) return 1 end return 0";

const START: &str = "redis.call('SET', KEYS[1], ARGV[1], 'NX') return redis.call('GET', KEYS[1])";

/// Removes the letters by id and returns `[id, fields]` of each one found.
const TAKE: &str = "local out = {} for i, id in ipairs(ARGV) do \
  local r = redis.call('XRANGE', KEYS[1], id, id) \
  if #r > 0 then redis.call('XDEL', KEYS[1], id) table.insert(out, r[1]) end end return out";

fn tag(prefix: &str, group: &str) -> String {
  format!("{{{prefix}:g:{group}}}")
}

fn eval(script: &str, keys: &[String], args: &[String]) -> redis::Cmd {
  let mut cmd = redis::cmd("EVAL");
  cmd.arg(script).arg(keys.len());
  for k in keys {
    cmd.arg(k);
  }
  for a in args {
    cmd.arg(a);
  }
  cmd
}

/// A reply as text (scores are doubles under RESP3).
pub(super) fn text(v: &Value) -> Option<String> {
  match v {
    Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
    Value::SimpleString(s) => Some(s.clone()),
    Value::Double(d) => Some(d.to_string()),
    _ => None,
  }
}

pub(super) fn int(v: &Value) -> i64 {
  match v {
    Value::Int(n) => *n,
    _ => 0,
  }
}

/// A whole number sent as an integer or as text (a score, a Lua string); 0 otherwise.
pub(super) fn number(v: &Value) -> u64 {
  match v {
    Value::Int(n) => (*n).max(0) as u64,
    other => text(other)
      .and_then(|t| t.parse::<f64>().ok())
      .map_or(0, |f| f as u64),
  }
}

/// `[id, [field, value, ...]]` entries as letters; unreadable ones are skipped.
fn letters_of(entries: Vec<Value>) -> Vec<Letter> {
  entries
    .into_iter()
    .filter_map(|e| {
      let Value::Array(parts) = e else { return None };
      let id = text(parts.first()?)?;
      let Value::Array(fields) = parts.get(1)? else {
        return None;
      };
      let at = fields
        .iter()
        .position(|f| text(f).as_deref() == Some("l"))?;
      let Value::BulkString(bytes) = fields.get(at + 1)? else {
        return None;
      };
      Letter::decode(&id, bytes)
    })
    .collect()
}

impl RedisAdapter {
  fn group_key(&self, group: &str, rest: &str) -> String {
    format!("{}:{rest}", tag(&self.config.key_prefix, group))
  }

  fn member_keys(&self, group: &str) -> [String; 3] {
    [
      self.group_key(group, "live"),
      self.group_key(group, "names"),
      self.group_key(group, "seen"),
    ]
  }

  /// The set listing every group's name.
  fn groups_key(&self) -> String {
    format!("{{{}}}:groups", self.config.key_prefix)
  }

  async fn group_query(&self, cmd: &redis::Cmd, what: &str) -> Result<Value, AdapterError> {
    let reply = super::run(self.writer()?, cmd, self.config.command_timeout, what).await;
    reply.map_err(|e| AdapterError {
      message: super::scrub(&self.secrets, e.message),
      ..e
    })
  }
}

#[async_trait]
impl GroupStore for RedisAdapter {
  async fn heartbeat(&self, group: &str, member: &str, ttl: Duration) -> Result<(), AdapterError> {
    let cmd = eval(
      &heartbeat_script(),
      &self.member_keys(group),
      &[member.to_string(), ttl.as_millis().to_string()],
    );
    self.group_query(&cmd, "group heartbeat").await.map(|_| ())
  }

  async fn leave(&self, group: &str, member: &str) -> Result<(), AdapterError> {
    let cmd = eval(LEAVE, &self.member_keys(group), &[member.to_string()]);
    self.group_query(&cmd, "group leave").await.map(|_| ())
  }

  async fn members(&self, group: &str) -> Result<Vec<String>, AdapterError> {
    let cmd = eval(&members_script(), &self.member_keys(group), &[]);
    let reply = self.group_query(&cmd, "group members").await?;
    let mut out: Vec<String> = match reply {
      Value::Array(items) => items.iter().filter_map(text).collect(),
      _ => Vec::new(),
    };
    // ZRANGE orders equal scores bytewise already; sorting again costs nothing and keeps
    // the trait's promise independent of that detail.
    out.sort();
    Ok(out)
  }

  async fn rank(&self, group: &str, member: &str) -> Result<Option<(usize, usize)>, AdapterError> {
    let cmd = eval(
      &rank_script(),
      &self.member_keys(group),
      &[member.to_string()],
    );
    Ok(match self.group_query(&cmd, "group rank").await? {
      Value::Array(v) if v.len() == 2 => Some((int(&v[0]) as usize, int(&v[1]) as usize)),
      _ => None,
    })
  }

  async fn lease(
    &self,
    group: &str,
    shard: u32,
    member: &str,
    ttl: Duration,
  ) -> Result<bool, AdapterError> {
    let cmd = eval(
      LEASE,
      &[self.group_key(group, &format!("lease:{shard}"))],
      &[member.to_string(), ttl.as_millis().to_string()],
    );
    Ok(int(&self.group_query(&cmd, "shard lease").await?) == 1)
  }

  async fn release(&self, group: &str, shard: u32, member: &str) -> Result<(), AdapterError> {
    let cmd = eval(
      RELEASE,
      &[self.group_key(group, &format!("lease:{shard}"))],
      &[member.to_string()],
    );
    self.group_query(&cmd, "shard release").await.map(|_| ())
  }

  async fn committed(&self, group: &str, shard: u32) -> Result<Option<String>, AdapterError> {
    let mut cmd = redis::cmd("GET");
    cmd.arg(self.group_key(group, &format!("commit:{shard}")));
    Ok(text(&self.group_query(&cmd, "commit read (GET)").await?))
  }

  async fn commit(
    &self,
    group: &str,
    shard: u32,
    member: &str,
    record: &str,
  ) -> Result<bool, AdapterError> {
    let cmd = eval(
      COMMIT,
      &[
        self.group_key(group, &format!("lease:{shard}")),
        self.group_key(group, &format!("commit:{shard}")),
      ],
      &[member.to_string(), record.to_string()],
    );
    Ok(int(&self.group_query(&cmd, "commit").await?) == 1)
  }

  async fn start(&self, group: &str, proposal: &str) -> Result<String, AdapterError> {
    let cmd = eval(
      START,
      &[self.group_key(group, "start")],
      &[proposal.to_string()],
    );
    let reply = self.group_query(&cmd, "group start record").await?;
    // Another slot on a cluster, so not in the script: listed at every join, so a group
    // created before the list existed appears once a member joins again.
    let mut add = redis::cmd("SADD");
    add.arg(self.groups_key()).arg(group);
    self.group_query(&add, "group list (SADD)").await?;
    Ok(text(&reply).unwrap_or_else(|| proposal.to_string()))
  }

  async fn signal(&self, group: &str, member: &str) {
    if self.endpoint.pubsub_client().is_some() {
      let cmd = super::signals::publish(&self.group_key(group, "moved"), member);
      let _ = self.group_query(&cmd, "group signal (PUBLISH)").await;
    }
  }

  async fn watch(&self, group: &str) -> Option<Signals> {
    let client = self.endpoint.pubsub_client()?;
    Some(super::signals::watch(
      client,
      self.group_key(group, "moved"),
    ))
  }

  async fn start_record(&self, group: &str) -> Result<Option<String>, AdapterError> {
    let mut cmd = redis::cmd("GET");
    cmd.arg(self.group_key(group, "start"));
    Ok(text(
      &self.group_query(&cmd, "group start record (GET)").await?,
    ))
  }

  async fn group_names(&self) -> Result<Vec<String>, AdapterError> {
    let mut cmd = redis::cmd("SMEMBERS");
    cmd.arg(self.groups_key());
    let mut names: Vec<String> = match self.group_query(&cmd, "group list (SMEMBERS)").await? {
      Value::Array(items) => items.iter().filter_map(text).collect(),
      Value::Set(items) => items.iter().filter_map(text).collect(),
      _ => Vec::new(),
    };
    names.sort();
    Ok(names)
  }

  async fn member_list(&self, group: &str) -> Result<Vec<MemberSeen>, AdapterError> {
    let cmd = eval(&member_list_script(), &self.member_keys(group), &[]);
    let Value::Array(items) = self.group_query(&cmd, "group members").await? else {
      return Ok(Vec::new());
    };
    let mut out: Vec<MemberSeen> = items
      .chunks(3)
      .filter(|c| c.len() == 3)
      .filter_map(|c| {
        Some(MemberSeen {
          name: text(&c[0])?,
          expires_ms: number(&c[1]),
          renewed_ms: number(&c[2]),
        })
      })
      .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
  }

  async fn lease_holder(&self, group: &str, shard: u32) -> Result<Option<LeaseSeen>, AdapterError> {
    let cmd = eval(
      LEASE_HOLDER,
      &[self.group_key(group, &format!("lease:{shard}"))],
      &[],
    );
    Ok(match self.group_query(&cmd, "lease read").await? {
      Value::Array(v) if v.len() == 2 => Some(LeaseSeen {
        member: text(&v[0]).unwrap_or_default(),
        until_ms: number(&v[1]),
      }),
      _ => None,
    })
  }

  async fn count_letters(&self, group: &str, tray: Tray) -> Result<u64, AdapterError> {
    let mut cmd = redis::cmd("XLEN");
    cmd.arg(self.group_key(group, tray.name()));
    Ok(number(
      &self.group_query(&cmd, "letter count (XLEN)").await?,
    ))
  }

  async fn put_letters(
    &self,
    group: &str,
    tray: Tray,
    letters: &[Letter],
  ) -> Result<(), AdapterError> {
    if letters.is_empty() {
      return Ok(());
    }
    let key = self.group_key(group, tray.name());
    let mut pipe = redis::pipe();
    for l in letters {
      pipe.cmd("XADD").arg(&key).arg("*").arg("l").arg(l.encode());
    }
    let mut conn = self.writer()?;
    let timeout = self.config.command_timeout;
    match tokio::time::timeout(timeout, pipe.query_async::<Value>(&mut conn)).await {
      Ok(Ok(_)) => Ok(()),
      Ok(Err(e)) => Err(AdapterError::retryable(super::scrub(
        &self.secrets,
        format!("Redis letter write (XADD) failed: {e}"),
      ))),
      Err(_) => Err(AdapterError {
        code: crate::error::Code::Timeout,
        retryable: true,
        message: format!(
          "Redis letter write (XADD) timed out after commandTimeoutMs ({} ms)",
          timeout.as_millis()
        ),
      }),
    }
  }

  async fn letters(
    &self,
    group: &str,
    tray: Tray,
    after: Option<&str>,
    limit: usize,
  ) -> Result<LetterPage, AdapterError> {
    let start = match after {
      None => "-".to_string(),
      Some(a) if is_entry_id(a) => format!("({a}"),
      Some(a) => {
        return Err(AdapterError {
          code: crate::error::Code::InvalidCursor,
          retryable: false,
          message: format!("dead letter cursor {a:?} is not one returned by deadLetters()"),
        })
      }
    };
    let mut cmd = redis::cmd("XRANGE");
    cmd
      .arg(self.group_key(group, tray.name()))
      .arg(start)
      .arg("+")
      .arg("COUNT")
      .arg(limit + 1);
    let entries = match self.group_query(&cmd, "letter read (XRANGE)").await? {
      Value::Array(items) => items,
      _ => Vec::new(),
    };
    let has_more = entries.len() > limit;
    let entries: Vec<Value> = entries.into_iter().take(limit).collect();
    // The cursor moves past unreadable entries too.
    let next = entries.last().and_then(|e| match e {
      Value::Array(parts) => parts.first().and_then(text),
      _ => None,
    });
    Ok(LetterPage {
      letters: letters_of(entries),
      next,
      has_more,
    })
  }

  async fn take_letters(
    &self,
    group: &str,
    tray: Tray,
    ids: &[String],
  ) -> Result<Vec<Letter>, AdapterError> {
    let ids: Vec<String> = ids.iter().filter(|i| is_entry_id(i)).cloned().collect();
    if ids.is_empty() {
      return Ok(Vec::new());
    }
    let cmd = eval(TAKE, &[self.group_key(group, tray.name())], &ids);
    match self.group_query(&cmd, "letter removal").await? {
      Value::Array(items) => Ok(letters_of(items)),
      _ => Ok(Vec::new()),
    }
  }

  async fn backlog(&self, positions: &[(u32, Option<String>)]) -> Vec<Option<u64>> {
    let asks = positions.iter().map(|(shard, pos)| async move {
      let pos = pos.as_deref().unwrap_or("");
      let key = super::stream_key(&self.config.key_prefix, *shard);
      let args = backlog::args(pos, self.numbered.get(*shard, pos));
      let reply = self
        .query(&eval(backlog::SCRIPT, &[key], &args), "group backlog")
        .await
        .ok()?;
      let (after, number) = backlog::reply(&reply);
      if let Some(n) = number {
        self.numbered.set(*shard, pos, n);
      }
      after
    });
    futures_util::future::join_all(asks).await
  }
}

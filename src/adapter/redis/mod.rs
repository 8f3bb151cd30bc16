//! Redis Streams: one stream per shard, `{<keyPrefix>:<shardId>}`.
//!
//! Entries carry the payload in `d`, `<timestamp> <sequence> <json|bytes> <message id>`
//! in `m` (one field: every field costs parsing on each read) and the partition key in `k`
//! (when given). Writes go through a
//! script that appends each event at most once (see `write.rs`); reads are `XRANGE` pages
//! after the cursor's entry id; subscribers wait with `XREAD BLOCK` on connections of their
//! own. The braces make each shard's keys one hash tag, so Redis Cluster works unchanged.

mod backlog;
mod config;
mod conn;
mod decode;
mod groups;
mod inspect;
mod read;
mod signals;
mod write;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::{RedisError, Value};

use super::{
  Adapter, AdapterError, Outcome, Positions, ProducerSeen, ReadPage, ShardInfo, WriteBatch,
  WriteResult,
};
use crate::error::{BusError, Code};
use crate::event::ProducerId;
use crate::secrets::{redact_url, scrub, url_secrets};
pub use config::{RedisConfig, RedisOptions, RedisTarget, Secret};
use conn::{Conn, Endpoint, MAX_BLOCK};
/// One `XRANGE` entry back into an event (public for the property tests).
pub use decode::entry as decode_entry;
use read::ReadAhead;
pub use write::{mark_key, producers_key, shards_key, stream_key};

/// Waits (subscribers waiting for new entries) that hold a blocking connection at once; the
/// others queue for a turn. Each holds one connection (one per shard on a cluster), so a
/// bus never opens more than this many of them, however many subscribers wait.
pub const MAX_BLOCKING_WAITS: usize = 16;

pub struct RedisAdapter {
  config: RedisConfig,
  endpoint: Endpoint,
  /// Writes and reads; `None` once closed.
  conns: Mutex<Option<(Conn, Conn)>>,
  idle_blockers: Mutex<Vec<Conn>>,
  /// Shards this adapter has recorded in [`shards_key`] (once per shard per process).
  recorded: Mutex<HashSet<u32>>,
  /// The recorded shards of every producer, as last read.
  shards_seen: super::Cached<Vec<u32>>,
  /// Turns for waits; see [`MAX_BLOCKING_WAITS`].
  waits: tokio::sync::Semaphore,
  /// At most one page per shard; entries are immutable, so a page read ahead stays valid.
  ahead: Mutex<HashMap<u32, ReadAhead>>,
  script: redis::Script,
  corrupt: AtomicU64,
  /// Numbers of read positions, for group lag (see `backlog.rs`).
  numbered: backlog::Numbered,
  logged: Mutex<HashSet<String>>,
  secrets: Vec<String>,
}

fn connect_err(msg: String) -> BusError {
  BusError::new(Code::Connect, msg)
}

impl RedisAdapter {
  /// Connects (within `connectTimeoutMs`) and loads the write script.
  pub async fn connect(config: RedisConfig) -> Result<Self, BusError> {
    config.validate()?;
    let mut secrets: Vec<String> = config.urls().iter().flat_map(|u| url_secrets(u)).collect();
    if let Some(p) = &config.password {
      secrets.push(p.0.clone());
    }
    secrets.retain(|s| !s.is_empty());
    crate::log::register_secrets(&secrets);
    let shown = config
      .urls()
      .iter()
      .map(|u| redact_url(u))
      .collect::<Vec<_>>()
      .join(", ");
    let endpoint = Endpoint::new(&config, |m| scrub(&secrets, m))?;
    let script = redis::Script::new(write::SCRIPT);
    let opened = async {
      let writer = endpoint.data(&config).await?;
      let reader = endpoint.data(&config).await?;
      let mut probe = reader.clone();
      script.prepare_invoke().load_async(&mut probe).await?;
      Ok::<_, RedisError>((writer, reader))
    };
    let (writer, reader) = match tokio::time::timeout(config.connect_timeout, opened).await {
      Err(_) => {
        return Err(connect_err(format!(
          "could not connect to Redis at {shown} within connectTimeoutMs ({} ms); check that the server is running and reachable",
          config.connect_timeout.as_millis()
        )))
      }
      Ok(Err(e)) => {
        let hint = if e.code() == Some("WRONGPASS") || e.code() == Some("NOAUTH") || e.to_string().contains("WRONGPASS") {
          "check the username and password"
        } else if e.code() == Some("NOPERM") {
          "the user needs permission to run scripts (EVALSHA, SCRIPT LOAD) and stream commands"
        } else {
          "check the address, TLS settings and credentials"
        };
        return Err(connect_err(scrub(
          &secrets,
          format!("could not connect to Redis at {shown}: {e}; {hint}"),
        )));
      }
      Ok(Ok(c)) => c,
    };
    tracing::info!(url = %shown, key_prefix = %config.key_prefix, "connected to Redis");
    Ok(RedisAdapter {
      config,
      endpoint,
      conns: Mutex::new(Some((writer, reader))),
      idle_blockers: Mutex::new(Vec::new()),
      waits: tokio::sync::Semaphore::new(MAX_BLOCKING_WAITS),
      recorded: Mutex::new(HashSet::new()),
      shards_seen: Default::default(),
      ahead: Mutex::new(HashMap::new()),
      script,
      corrupt: AtomicU64::new(0),
      numbered: backlog::Numbered::default(),
      logged: Mutex::new(HashSet::new()),
      secrets,
    })
  }

  fn error(&self, retryable: bool, msg: String) -> AdapterError {
    AdapterError {
      code: Code::Adapter,
      retryable,
      message: scrub(&self.secrets, msg),
    }
  }

  fn closed(&self) -> AdapterError {
    AdapterError::fatal("the Redis adapter is closed")
  }

  fn writer(&self) -> Result<Conn, AdapterError> {
    self
      .conns
      .lock()
      .as_ref()
      .map(|c| c.0.clone())
      .ok_or_else(|| self.closed())
  }

  fn reader(&self) -> Result<Conn, AdapterError> {
    self
      .conns
      .lock()
      .as_ref()
      .map(|c| c.1.clone())
      .ok_or_else(|| self.closed())
  }

  /// Runs one command on the read connection within the command timeout.
  async fn query(&self, cmd: &redis::Cmd, what: &str) -> Result<Value, AdapterError> {
    let reply = run(self.reader()?, cmd, self.config.command_timeout, what).await;
    reply.map_err(|e| AdapterError {
      message: scrub(&self.secrets, e.message),
      ..e
    })
  }

  /// Adds `shard` to the shard set before its first write from this process, so readers
  /// elsewhere find it before they could miss its events. One round trip per shard per
  /// process, none after.
  /// The producer is recorded with it (for `bus.info()`), in the same slot.
  async fn record_shard(&self, shard: u32, producer: &ProducerId) -> Result<(), AdapterError> {
    if self.recorded.lock().contains(&shard) {
      return Ok(());
    }
    let mut cmd = redis::cmd("EVAL");
    cmd
      .arg(inspect::RECORD_SCRIPT)
      .arg(2)
      .arg(shards_key(&self.config.key_prefix))
      .arg(write::producers_key(&self.config.key_prefix))
      .arg(shard)
      .arg(format!("{:016x}-{}", producer.nonce, producer.generation))
      .arg(inspect::PRODUCERS_KEPT.as_millis() as u64);
    let reply = run(
      self.writer()?,
      &cmd,
      self.config.command_timeout,
      "shard and producer record",
    )
    .await;
    reply.map_err(|e| AdapterError {
      message: scrub(&self.secrets, e.message),
      ..e
    })?;
    self.recorded.lock().insert(shard);
    Ok(())
  }

  /// The shard set of every producer under this prefix.
  async fn shards_in_set(&self) -> Result<Vec<u32>, AdapterError> {
    let mut cmd = redis::cmd("SMEMBERS");
    cmd.arg(shards_key(&self.config.key_prefix));
    let reply = self.query(&cmd, "read of the shard set (SMEMBERS)").await?;
    let mut shards: Vec<u32> = match reply {
      Value::Array(items) | Value::Set(items) => items
        .into_iter()
        .filter_map(|v| match v {
          Value::BulkString(b) => std::str::from_utf8(&b).ok()?.parse().ok(),
          Value::Int(n) => u32::try_from(n).ok(),
          _ => None,
        })
        .collect(),
      _ => Vec::new(),
    };
    shards.sort_unstable();
    Ok(shards)
  }
}

/// Runs `cmd` on `conn` within `timeout`; `what` names the command in errors.
async fn run(
  mut conn: Conn,
  cmd: &redis::Cmd,
  timeout: Duration,
  what: &str,
) -> Result<Value, AdapterError> {
  match tokio::time::timeout(timeout, cmd.query_async::<Value>(&mut conn)).await {
    Ok(Ok(v)) => Ok(v),
    Ok(Err(e)) => Err(AdapterError::retryable(format!("Redis {what} failed: {e}"))),
    Err(_) => Err(AdapterError {
      code: Code::Timeout,
      retryable: true,
      message: format!(
        "Redis {what} timed out after commandTimeoutMs ({} ms)",
        timeout.as_millis()
      ),
    }),
  }
}

#[async_trait]
impl Adapter for RedisAdapter {
  fn kind(&self) -> &'static str {
    "redis"
  }

  fn groups(&self) -> Option<&dyn crate::adapter::group_store::GroupStore> {
    Some(self)
  }

  fn cursor_scope(&self) -> String {
    format!("redis:{}", self.config.key_prefix)
  }

  async fn write(&self, batch: WriteBatch<'_>) -> Result<WriteResult, AdapterError> {
    if batch.events.is_empty() {
      return Ok(WriteResult::AllStored);
    }
    self.record_shard(batch.shard, &batch.producer).await?;
    let mut conn = self.writer()?;
    let (pipe, ranges) = write::build(
      &batch,
      self.script.get_hash(),
      &self.config.key_prefix,
      self.config.max_len,
      self.config.dedup_window.as_millis(),
      self.config.pipeline_size,
    );
    let error = |retryable, msg| self.error(retryable, msg);
    let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.events.len()];
    let sent = tokio::time::timeout(
      self.config.command_timeout,
      pipe.query_async::<Vec<redis::RedisResult<Value>>>(&mut conn),
    )
    .await;
    match sent {
      Ok(Ok(replies)) if replies.len() == ranges.len() => {
        // The script cache is empty after a server restart or failover: load it again;
        // the affected events are retried by the dispatcher.
        if replies
          .iter()
          .any(|r| matches!(r, Err(e) if e.code() == Some("NOSCRIPT")))
        {
          let _ = tokio::time::timeout(
            self.config.command_timeout,
            self.script.prepare_invoke().load_async(&mut conn),
          )
          .await;
        }
        for (reply, range) in replies.into_iter().zip(ranges) {
          write::settle(reply, range, &mut outcomes, error);
        }
      }
      Ok(Ok(replies)) => {
        let e = self.error(
          true,
          format!(
            "Redis returned {} replies for {} commands",
            replies.len(),
            ranges.len()
          ),
        );
        return Err(e);
      }
      Ok(Err(e)) => match write::command_failure(&e, &error) {
        Outcome::Reject(e) | Outcome::Retry(e) => return Err(e),
        Outcome::Stored => unreachable!("a failure is never a store"),
      },
      Err(_) => {
        return Err(AdapterError {
          code: Code::Timeout,
          retryable: true,
          message: format!(
            "Redis write timed out after commandTimeoutMs ({} ms); it is retried and stored once",
            self.config.command_timeout.as_millis()
          ),
        })
      }
    }
    Ok(WriteResult::PerEvent(
      outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Retry(AdapterError::retryable("no reply"))))
        .collect(),
    ))
  }

  async fn read(
    &self,
    shard: u32,
    after: Option<&str>,
    limit: usize,
  ) -> Result<ReadPage, AdapterError> {
    let start = match after {
      None => String::new(),
      Some(p) if decode::is_entry_id(p) => p.to_string(),
      Some(p) => {
        return Err(AdapterError {
          code: Code::InvalidCursor,
          retryable: false,
          message: format!(
            "cursor position {p:?} for shard {shard} is not a Redis stream entry id; use a cursor returned by this bus"
          ),
        })
      }
    };
    // One more than asked tells whether more follow, without another round trip.
    let (entries, count) = self.entries(shard, &start, limit + 1).await?;
    let mut page = ReadPage {
      // A page read ahead for a smaller request cannot tell: assume more.
      has_more: entries.len() > limit || (count <= limit && entries.len() == count),
      ..ReadPage::default()
    };
    let examined = entries.len().min(limit);
    for v in entries.into_iter().take(limit) {
      let Some((id, event)) = decode::entry(shard, v) else {
        return Err(self.error(true, "malformed XRANGE entry".into()));
      };
      match event {
        Ok(ev) => page.events.push(ev),
        Err(reason) => self.note_corrupt(shard, &id, reason),
      }
      // The position moves past unreadable entries too, so one never wedges a shard.
      page.next = Some(id);
    }
    if let Some(next) = &page.next {
      self.numbered.carry(shard, &start, next, examined);
    }
    if page.has_more {
      if let Some(next) = &page.next {
        // The caller is about to turn this page into JS objects: fetch the next meanwhile.
        self.read_ahead(shard, next.clone(), limit + 1);
      }
    }
    Ok(page)
  }

  async fn end_positions(&self, shards: &[u32]) -> Result<Positions, AdapterError> {
    let lasts = shards.iter().map(|&shard| async move {
      let mut cmd = redis::cmd("XREVRANGE");
      cmd
        .arg(stream_key(&self.config.key_prefix, shard))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1);
      let reply = self
        .query(&cmd, "read of the stream end (XREVRANGE)")
        .await?;
      let id = match reply {
        Value::Array(mut entries) if !entries.is_empty() => {
          decode::entry(shard, entries.swap_remove(0)).map(|(id, _)| id)
        }
        _ => None,
      };
      Ok::<_, AdapterError>((shard, id.unwrap_or_else(|| "0-0".into())))
    });
    futures_util::future::try_join_all(lasts)
      .await
      .map(|v| v.into_iter().collect())
  }

  async fn shard_info(&self, shards: &[u32]) -> Result<Vec<ShardInfo>, AdapterError> {
    self.shard_info_of(shards).await
  }

  async fn positions_at(&self, shards: &[u32], time_ms: u64) -> Result<Positions, AdapterError> {
    self.positions_at_time(shards, time_ms).await
  }

  async fn producers(&self) -> Result<Option<Vec<ProducerSeen>>, AdapterError> {
    self.producers_seen().await.map(Some)
  }

  async fn count_after(
    &self,
    shard: u32,
    after: Option<&str>,
  ) -> Result<Option<u64>, AdapterError> {
    self.count_entries_after(shard, after).await.map(Some)
  }

  async fn wait_for_data(&self, shards: &[u32], after: &Positions, max_wait: Duration) {
    let started = tokio::time::Instant::now();
    let block = max_wait.min(MAX_BLOCK);
    if shards.is_empty() {
      tokio::time::sleep(block).await;
      return;
    }
    // A wait that gets no turn within its time ends like one that saw nothing; when an
    // entry arrives the waits in turn return at once, and the queued ones follow.
    let Ok(Ok(_turn)) = tokio::time::timeout(block, self.waits.acquire()).await else {
      return;
    };
    let block = block.saturating_sub(started.elapsed());
    if block.is_zero() {
      return;
    }
    if !self.endpoint.is_cluster() {
      // One command watches every shard.
      self.block_on(shards, after, block).await;
      return;
    }
    // A cluster refuses one XREAD over keys in different slots: one per shard, and the
    // first to return ends the wait (the others' connections are dropped, not reused).
    let waits: Vec<_> = shards
      .iter()
      .map(|s| Box::pin(self.block_on(std::slice::from_ref(s), after, block)))
      .collect();
    futures_util::future::select_all(waits).await;
  }

  async fn flush(&self) -> Result<(), AdapterError> {
    // A write is acknowledged only after the script ran: nothing is buffered client-side.
    // Durability beyond that is the server's appendonly/appendfsync setting.
    Ok(())
  }

  async fn close(&self) -> Result<(), AdapterError> {
    // Dropping the last handle of each connection closes it.
    self.conns.lock().take();
    self.idle_blockers.lock().clear();
    for (_, a) in self.ahead.lock().drain() {
      a.reply.abort();
    }
    Ok(())
  }

  async fn is_healthy(&self) -> bool {
    self.query(&redis::cmd("PING"), "PING").await.is_ok()
  }

  async fn stored_shards(&self) -> Result<Vec<u32>, AdapterError> {
    self.shards_seen.get_or(self.shards_in_set()).await
  }

  fn corrupt_skipped(&self) -> u64 {
    self.corrupt.load(Ordering::Relaxed)
  }
}

//! Reads and waits: `XRANGE` pages (the next one requested ahead while the caller is busy
//! with the last), corrupt entries counted and logged, and `XREAD BLOCK` waits on a small
//! pool of blocking connections.

use super::*;

/// Corrupt entries logged individually before going quiet (the count keeps growing).
pub(super) const MAX_LOGGED_CORRUPT: usize = 1024;
/// Idle blocking connections kept for the next wait.
const MAX_IDLE_BLOCKERS: usize = MAX_BLOCKING_WAITS;

/// The next page of a shard, requested while the caller was still busy with the last one.
pub(super) struct ReadAhead {
  after: String,
  count: usize,
  pub(super) reply: tokio::task::JoinHandle<Result<Value, AdapterError>>,
}

impl RedisAdapter {
  pub(super) fn xrange(&self, shard: u32, after: &str, count: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("XRANGE");
    cmd
      .arg(stream_key(&self.config.key_prefix, shard))
      .arg(if after.is_empty() {
        "-".to_string()
      } else {
        format!("({after}")
      })
      .arg("+")
      .arg("COUNT")
      .arg(count);
    cmd
  }

  /// Starts reading the page after `after` in the background, replacing an older one.
  pub(super) fn read_ahead(&self, shard: u32, after: String, count: usize) {
    let Ok(conn) = self.reader() else { return };
    let cmd = self.xrange(shard, &after, count);
    let timeout = self.config.command_timeout;
    let reply = tokio::spawn(async move { run(conn, &cmd, timeout, "read (XRANGE)").await });
    let old = self.ahead.lock().insert(
      shard,
      ReadAhead {
        after,
        count,
        reply,
      },
    );
    if let Some(old) = old {
      old.reply.abort();
    }
  }

  /// The raw entries after `after` (at most `count`) and the count they were asked with:
  /// the page read ahead when it starts there, else a fresh `XRANGE`.
  pub(super) async fn entries(
    &self,
    shard: u32,
    after: &str,
    count: usize,
  ) -> Result<(Vec<Value>, usize), AdapterError> {
    let ready = self.ahead.lock().remove(&shard);
    let early = match ready {
      Some(a) if a.after == after => match a.reply.await {
        Ok(Ok(v)) => Some((v, a.count)),
        // A failed read-ahead is not reported: the read below tries again.
        _ => None,
      },
      Some(a) => {
        a.reply.abort();
        None
      }
      None => None,
    };
    let (reply, count) = match early {
      Some(r) => r,
      None => {
        let cmd = self.xrange(shard, after, count);
        (self.query(&cmd, "read (XRANGE)").await?, count)
      }
    };
    match reply {
      Value::Array(entries) => Ok((entries, count)),
      Value::Nil => Ok((Vec::new(), count)),
      other => Err(self.error(true, format!("unexpected XRANGE reply: {other:?}"))),
    }
  }

  pub(super) fn note_corrupt(&self, shard: u32, id: &str, reason: &str) {
    self.corrupt.fetch_add(1, Ordering::Relaxed);
    let mut logged = self.logged.lock();
    if logged.len() < MAX_LOGGED_CORRUPT && logged.insert(format!("{shard}/{id}")) {
      let stream = stream_key(&self.config.key_prefix, shard);
      tracing::warn!(
        stream = %stream,
        shard,
        id,
        reason,
        "skipped a corrupt entry in Redis stream {stream} at id {id}: {reason}"
      );
    }
  }

  pub(super) async fn blocker(&self) -> Result<Conn, RedisError> {
    if let Some(c) = self.idle_blockers.lock().pop() {
      return Ok(c);
    }
    self.endpoint.blocking(&self.config).await
  }

  pub(super) fn return_blocker(&self, conn: Conn) {
    if self.conns.lock().is_none() {
      return;
    }
    let mut idle = self.idle_blockers.lock();
    if idle.len() < MAX_IDLE_BLOCKERS {
      idle.push(conn);
    }
  }

  /// `XREAD BLOCK` for `shards` after their positions, on a connection of its own; returns
  /// when one of them has an entry, or after `block`.
  pub(super) async fn block_on(&self, shards: &[u32], after: &Positions, block: Duration) {
    let Ok(mut conn) = self.blocker().await else {
      // No connection now (server down): wait a little instead of spinning.
      tokio::time::sleep(block.min(Duration::from_secs(1))).await;
      return;
    };
    let mut cmd = redis::cmd("XREAD");
    cmd
      .arg("COUNT")
      .arg(1)
      .arg("BLOCK")
      .arg(block.as_millis().max(1) as u64)
      .arg("STREAMS");
    for &s in shards {
      cmd.arg(stream_key(&self.config.key_prefix, s));
    }
    for s in shards {
      cmd.arg(after.get(s).map_or("0-0", |p| p.as_str()));
    }
    // The connection's own response limit is off; this bound covers a dead server.
    let limit = block + self.config.command_timeout;
    match tokio::time::timeout(limit, cmd.query_async::<Value>(&mut conn)).await {
      Ok(Ok(_)) => self.return_blocker(conn),
      Ok(Err(_)) => tokio::time::sleep(block.min(Duration::from_secs(1))).await,
      Err(_) => {}
    }
  }
}

//! Subscriptions: an endless sequence of events from a starting point. Between pages it
//! waits on the adapter (or shutdown, or `stop`) instead of polling in a loop.

use std::sync::Arc;
use std::time::Duration;

use super::ShardSource;
use crate::adapter::Adapter;
use crate::consume::cursor::Cursor;
use crate::consume::filter::Filter;
use crate::consume::poll::{poll, PageOrder, PollRequest};
pub use crate::consume::start::StartAt;
use crate::error::Result;
use crate::event::StoredEvent;
use crate::signal::Signal;
use crate::telemetry::Telemetry;

const PAGE: usize = 512;
/// Longest wait before the subscription looks again: also how soon it covers a shard that
/// another producer started (docs/usage.md: "within about 2 s").
const MAX_WAIT: Duration = Duration::from_secs(2);
const ERROR_BACKOFF_CAP: Duration = Duration::from_secs(5);

pub struct Subscription {
  adapter: Arc<dyn Adapter>,
  /// Where the shards to read come from.
  shards: Arc<dyn ShardSource>,
  /// The bus's shutdown.
  closing: Arc<Signal>,
  filter: Option<Filter>,
  /// None until the start position is resolved (for `Latest`, on the first `next`).
  cursor: Option<Cursor>,
  start: StartAt,
  stop: Arc<Signal>,
  failures: u32,
  telemetry: Arc<Telemetry>,
}

impl Subscription {
  pub(crate) fn new(
    adapter: Arc<dyn Adapter>,
    shards: Arc<dyn ShardSource>,
    closing: Arc<Signal>,
    filter: Option<Filter>,
    start: StartAt,
    telemetry: Arc<Telemetry>,
  ) -> Self {
    Subscription {
      adapter,
      shards,
      closing,
      filter,
      cursor: None,
      start,
      stop: Arc::new(Signal::new()),
      failures: 0,
      telemetry,
    }
  }

  /// Fire to end the subscription; a pending `next` then returns `None`.
  pub fn stop_handle(&self) -> Arc<Signal> {
    self.stop.clone()
  }

  /// The next events in order (at least one), or an empty vector once stopped or the bus
  /// shuts down. Waits without polling while nothing new is stored.
  pub async fn next_batch(&mut self) -> Result<Vec<StoredEvent>> {
    loop {
      if self.stop.is_fired() || self.closing.is_fired() {
        return Ok(Vec::new());
      }
      let shards = super::read_shards(self.adapter.as_ref(), self.shards.all_ids()).await;
      if self.cursor.is_none() {
        match super::start::start_cursor(self.adapter.as_ref(), &shards, &self.start).await {
          Ok(c) => self.cursor = Some(c),
          Err(_) => {
            self.pause().await;
            continue;
          }
        }
      }
      let started = std::time::Instant::now();
      let page = poll(
        self.adapter.as_ref(),
        &shards,
        PollRequest {
          limit: PAGE,
          cursor: self.cursor.clone(),
          filter: self.filter.clone(),
          ordering: PageOrder::Shard,
          shards: None,
          cache: None,
        },
      )
      .await;
      let failed = page.as_ref().err().map(|e| e.code.as_str());
      self.telemetry.receive.observe(started.elapsed(), failed);
      match page {
        Ok(page) => {
          self.failures = 0;
          let n = page.events.len() as u64;
          (self.telemetry.polled).fetch_add(n, std::sync::atomic::Ordering::Relaxed);
          let idle = page.events.is_empty() && !page.has_more;
          self.cursor = Some(page.cursor);
          if !page.events.is_empty() {
            return Ok(page.events);
          }
          if idle {
            let cursor = self.cursor.clone().unwrap_or_default();
            let wait = async {
              if self.adapter.total_order() {
                // Pages of every shard come from one store-wide reader: wait on it.
                let after = cursor.floor.as_deref();
                self.adapter.wait_all(after, MAX_WAIT).await
              } else {
                let positions = cursor.positions;
                self
                  .adapter
                  .wait_for_data(&shards, &positions, MAX_WAIT)
                  .await
              }
            };
            tokio::select! {
              _ = wait => {}
              _ = self.closing.wait() => {}
              _ = self.stop.wait() => {}
            }
          }
        }
        // A cursor problem will not go away by waiting.
        Err(e) if e.code == crate::error::Code::InvalidCursor => return Err(e),
        // Backend trouble: back off and keep going, as a consumer expects across blips.
        Err(_) => self.pause().await,
      }
    }
  }

  async fn pause(&mut self) {
    self.failures += 1;
    let d = crate::retry::backoff(self.failures).min(ERROR_BACKOFF_CAP);
    tokio::select! {
      _ = tokio::time::sleep(d) => {}
      _ = self.closing.wait() => {}
      _ = self.stop.wait() => {}
    }
  }
}

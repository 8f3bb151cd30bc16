//! The poll merger: one page across shards from a cursor.
//!
//! Each shard's position only moves past records that were examined *and* either returned
//! or rejected by the filter, so pages never skip or repeat events. The page is filled in
//! rounds that give every shard with data an equal share of what is left, so a shard with
//! a deep backlog cannot starve the others. `ordering: 'timestamp'` instead merges shards
//! by (timestamp, shard, sequence); across pages that order holds for events that
//! were already stored when the earlier page was read.

use std::collections::VecDeque;

use crate::adapter::Adapter;
use crate::consume::cursor::Cursor;
use crate::consume::filter::Filter;
use crate::error::{BusError, Code, Result};
use crate::event::{PayloadKind, StoredEvent};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PageOrder {
  /// Fair share per shard; per-shard (and so per-key) order.
  #[default]
  Shard,
  /// Merged by timestamp across shards.
  Timestamp,
}

#[derive(Debug, Clone, Default)]
pub struct PollRequest {
  pub limit: usize,
  pub cursor: Option<Cursor>,
  pub filter: Option<Filter>,
  pub ordering: PageOrder,
  pub shards: Option<Vec<u32>>,
}

#[derive(Debug, Clone)]
pub struct PollPage {
  pub events: Vec<StoredEvent>,
  pub cursor: Cursor,
  pub has_more: bool,
}

struct Lane {
  shard: u32,
  position: Option<String>,
  buffer: VecDeque<StoredEvent>,
  /// The adapter has nothing after the buffered records.
  exhausted: bool,
}

impl Lane {
  async fn refill(&mut self, adapter: &dyn Adapter, want: usize) -> Result<()> {
    if !self.buffer.is_empty() || self.exhausted {
      return Ok(());
    }
    let after = self.position.clone();
    let page = adapter
      .read(self.shard, after.as_deref(), want.max(1))
      .await
      .map_err(BusError::from)?;
    if page.events.is_empty() {
      // Corrupt records may have been skipped: move past them even with nothing to return.
      if let Some(next) = page.next {
        self.position = Some(next);
      }
      self.exhausted = !page.has_more;
      if page.has_more && self.position == after {
        // An adapter that claims more but makes no progress would loop forever.
        self.exhausted = true;
      }
    } else {
      self.buffer.extend(page.events);
    }
    Ok(())
  }

  fn has_more(&self) -> bool {
    !self.buffer.is_empty() || !self.exhausted
  }
}

fn matches(filter: Option<&Filter>, ev: &StoredEvent) -> bool {
  match filter {
    None => true,
    Some(f) => ev.kind == PayloadKind::Json && f.matches_json(&ev.payload),
  }
}

/// Reads one page. `known_shards` are the shards that exist (default set and validation).
pub async fn poll(
  adapter: &dyn Adapter,
  known_shards: &[u32],
  req: PollRequest,
) -> Result<PollPage> {
  let mut cursor = req.cursor.unwrap_or_default();
  let mut shards: Vec<u32> = match req.shards {
    Some(list) => {
      for s in &list {
        if !known_shards.contains(s) {
          return Err(BusError::config(format!(
            "poll shards contains {s}, which is not a shard of this bus (shards: {known_shards:?})"
          )));
        }
      }
      list
    }
    None => known_shards.to_vec(),
  };
  shards.sort_unstable();
  shards.dedup();
  let limit = req.limit;
  if limit == 0 || shards.is_empty() {
    return Ok(PollPage {
      events: Vec::new(),
      cursor,
      has_more: false,
    });
  }
  let mut lanes: Vec<Lane> = shards
    .iter()
    .map(|&shard| Lane {
      shard,
      position: cursor.positions.get(&shard).cloned(),
      buffer: VecDeque::new(),
      exhausted: false,
    })
    .collect();
  let filter = req.filter.as_ref();
  // Bounds the work of one poll when a selective filter rejects most records; the page
  // then comes back short (possibly empty) with hasMore = true and an advanced cursor.
  let mut budget = (limit * 20).max(20_000);
  let mut out: Vec<StoredEvent> = Vec::with_capacity(limit.min(1024));
  let fetch = |quota: usize| {
    if filter.is_some() {
      quota.max(256)
    } else {
      quota
    }
  };

  match req.ordering {
    PageOrder::Shard => {
      while out.len() < limit && budget > 0 {
        let live = lanes.iter().filter(|l| l.has_more()).count();
        if live == 0 {
          break;
        }
        let quota = (limit - out.len()).div_ceil(live);
        // Fetch every lane's next page at once: one round trip per round, not per shard.
        futures_util::future::try_join_all(
          lanes
            .iter_mut()
            .filter(|l| l.has_more())
            .map(|l| l.refill(adapter, fetch(quota))),
        )
        .await?;
        let mut progressed = false;
        for lane in lanes.iter_mut() {
          let mut taken = 0;
          while taken < quota && out.len() < limit && budget > 0 {
            lane.refill(adapter, fetch(quota - taken)).await?;
            let Some(ev) = lane.buffer.pop_front() else {
              break;
            };
            budget -= 1;
            progressed = true;
            pace_filter(filter, budget).await;
            lane.position = Some(ev.position.clone());
            if matches(filter, &ev) {
              out.push(ev);
              taken += 1;
            }
          }
        }
        if !progressed {
          break;
        }
      }
    }
    PageOrder::Timestamp => {
      let per = limit.div_ceil(lanes.len());
      while out.len() < limit && budget > 0 {
        futures_util::future::try_join_all(lanes.iter_mut().map(|l| l.refill(adapter, fetch(per))))
          .await?;
        // Every lane with data now has a buffered head, so the smallest head is the next event.
        let next = lanes
          .iter()
          .enumerate()
          .filter_map(|(i, l)| {
            l.buffer
              .front()
              .map(|e| ((e.timestamp_ms, e.shard, e.seq), i))
          })
          .min();
        let Some((_, i)) = next else { break };
        let ev = lanes[i].buffer.pop_front().expect("head exists");
        budget -= 1;
        pace_filter(filter, budget).await;
        lanes[i].position = Some(ev.position.clone());
        if matches(filter, &ev) {
          out.push(ev);
        }
      }
    }
  }

  let has_more = lanes.iter().any(|l| l.has_more());
  for lane in lanes {
    if let Some(p) = lane.position {
      cursor.positions.insert(lane.shard, p);
    }
  }
  Ok(PollPage {
    events: out,
    cursor,
    has_more,
  })
}

/// Filter evaluation runs on the shared runtime; a long filtered poll gives the other
/// tasks (other buses' dispatchers too) a turn every this many records.
const FILTER_SLICE: usize = 256;

async fn pace_filter(filter: Option<&Filter>, budget: usize) {
  if filter.is_some() && budget.is_multiple_of(FILTER_SLICE) {
    tokio::task::yield_now().await;
  }
}

/// Validates and clamps a requested page size.
pub fn check_limit(limit: Option<u32>) -> Result<usize> {
  match limit {
    None => Ok(DEFAULT_LIMIT),
    Some(0) => Err(BusError::new(
      Code::InvalidConfig,
      "poll limit must be at least 1",
    )),
    Some(n) if n as usize > MAX_LIMIT => Err(BusError::new(
      Code::InvalidConfig,
      format!(
        "poll limit must be at most {MAX_LIMIT}, got {n}; page through with the cursor instead"
      ),
    )),
    Some(n) => Ok(n as usize),
  }
}

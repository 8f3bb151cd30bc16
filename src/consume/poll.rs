//! The poll merger: one page across shards from a cursor.
//!
//! Each shard's position only moves past records that were examined *and* either returned
//! or rejected by the filter, so pages never skip or repeat events. The page is filled in
//! rounds that give every shard with data an equal share of what is left, so a shard with
//! a deep backlog cannot starve the others. `ordering: 'timestamp'` instead merges shards
//! by (timestamp, epoch, shard, sequence); across pages that order holds for events that
//! were already stored when the earlier page was read. In both orders a record is only
//! yielded once the epoch barrier (`barrier.rs`) lets it, which keeps each producer's keys
//! in ingest order across its scaling.

use std::collections::BTreeSet;

use crate::adapter::Adapter;
use crate::consume::barrier::{Barrier, Verdict};
use crate::consume::cursor::Cursor;
use crate::consume::filter::Filter;
use crate::consume::lane::{parse_seq, Lane, ReadClock};
use crate::consume::sweep;
use crate::consume::sweep_cache::SweepCache;
use crate::error::{BusError, Code, Result};
use crate::event::StoredEvent;

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

impl PageOrder {
  /// The `ordering` option: `'shard'` (default) or `'timestamp'`.
  pub fn parse(ordering: Option<&str>) -> Result<PageOrder> {
    match ordering {
      None | Some("shard") => Ok(PageOrder::Shard),
      Some("timestamp") => Ok(PageOrder::Timestamp),
      Some(o) => Err(BusError::config(format!(
        "poll request.ordering must be 'shard' or 'timestamp', got {o:?}"
      ))),
    }
  }
}

#[derive(Debug, Clone, Default)]
pub struct PollRequest {
  pub limit: usize,
  pub cursor: Option<Cursor>,
  pub filter: Option<Filter>,
  pub ordering: PageOrder,
  pub shards: Option<Vec<u32>>,
  /// Where timestamp pages over a store-wide order keep what they read ahead (the bus's).
  pub cache: Option<std::sync::Arc<SweepCache>>,
}

#[derive(Debug, Clone)]
pub struct PollPage {
  pub events: Vec<StoredEvent>,
  pub cursor: Cursor,
  pub has_more: bool,
}

/// Reads one page. `known_shards` are the shards that exist (default set and validation).
pub async fn poll(
  adapter: &dyn Adapter,
  known_shards: &[u32],
  req: PollRequest,
) -> Result<PollPage> {
  let mut cursor = req.cursor.unwrap_or_default();
  // Reading a chosen subset of shards: the barrier then only orders within that subset.
  let restricted = req.shards.is_some();
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
  if req.ordering == PageOrder::Shard && !restricted && adapter.total_order() {
    return in_store_order(adapter, cursor, limit, req.filter.as_ref()).await;
  }
  let lanes = shards
    .iter()
    .map(|&shard| Lane::new(shard, cursor.position(shard).cloned()))
    .collect();
  let mut merge = Merge {
    adapter,
    lanes,
    barrier: Barrier::new(std::mem::take(&mut cursor.cleared)),
    clock: 0,
    // Bounds the work of one poll when a selective filter rejects most records; the
    // page then comes back short (possibly empty) with hasMore = true and an advanced
    // cursor.
    budget: (limit * 20).max(20_000),
    filter: req.filter.as_ref(),
    spanned: if restricted { u32::MAX } else { 0 },
    start: &cursor,
    out: Vec::with_capacity(limit.min(1024)),
    sweep: req.ordering == PageOrder::Timestamp && !restricted && adapter.total_order(),
    cache: req.cache,
  };
  match req.ordering {
    PageOrder::Shard => merge.by_shard(limit).await?,
    PageOrder::Timestamp => merge.by_time(limit).await?,
  }
  let has_more = merge.lanes.iter().any(|l| l.has_more());
  let Merge {
    lanes,
    barrier,
    out,
    ..
  } = merge;
  for lane in lanes {
    if let Some(p) = lane.position {
      cursor.positions.insert(lane.shard, p);
    }
  }
  cursor.cleared = barrier.into_cleared();
  Ok(PollPage {
    events: out,
    cursor,
    has_more,
  })
}

struct Merge<'a> {
  adapter: &'a dyn Adapter,
  lanes: Vec<Lane>,
  barrier: Barrier,
  clock: ReadClock,
  budget: usize,
  filter: Option<&'a Filter>,
  /// Shard ids below this have a lane (`u32::MAX`: only the requested shards are read).
  spanned: u32,
  start: &'a Cursor,
  out: Vec<StoredEvent>,
  /// Lanes are filled from the store-wide reader (`sweep.rs`).
  sweep: bool,
  cache: Option<std::sync::Arc<SweepCache>>,
}

impl Merge<'_> {
  /// How many records to ask for when `quota` are wanted: more under a filter, which
  /// rejects some.
  fn fetch(&self, quota: usize) -> usize {
    if self.filter.is_some() {
      quota.max(256)
    } else {
      quota
    }
  }

  /// Reads the given lanes at once: one round trip per round, not per shard.
  async fn read(&mut self, which: &BTreeSet<usize>, want: usize) -> Result<usize> {
    if self.sweep {
      let cache = self.cache.as_deref();
      return sweep::fill(
        self.adapter,
        &mut self.lanes,
        which,
        want,
        &mut self.clock,
        cache,
      )
      .await;
    }
    let (started, completed) = (self.clock, self.clock + 1);
    let adapter = self.adapter;
    let counts = futures_util::future::try_join_all(
      self
        .lanes
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| which.contains(i))
        .map(|(_, l)| l.extend(adapter, want, started, completed)),
    )
    .await?;
    self.clock = completed;
    Ok(counts.into_iter().sum())
  }

  fn due(&self) -> BTreeSet<usize> {
    (0..self.lanes.len())
      .filter(|&i| self.lanes[i].needs_read())
      .collect()
  }

  /// The barrier's verdict on lane `i`'s head, after giving every shard the head's producer
  /// may have used a lane (a shard discovery has not listed yet is read from its cursor
  /// position, or its start).
  fn decide(&mut self, i: usize) -> Verdict {
    let span = self.lanes[i].head().map_or(0, |h| h.stamp.span);
    if span > self.spanned {
      for shard in self.spanned..span {
        if !self.lanes.iter().any(|l| l.shard == shard) {
          let at = self.start.position(shard).cloned();
          self.lanes.push(Lane::new(shard, at));
        }
      }
      self.spanned = span;
    }
    self.barrier.check(&self.lanes, i)
  }

  /// Consumes lane `i`'s head: returned if it matches the filter.
  async fn take(&mut self, i: usize) -> bool {
    let Some(ev) = self.lanes[i].take() else {
      return false;
    };
    self.budget -= 1;
    pace_filter(self.filter, self.budget).await;
    if self.filter.is_none_or(|f| matches(f, &ev)) {
      self.out.push(ev);
      true
    } else {
      false
    }
  }

  /// Lanes the barrier asked for are read further; each such round costs budget, so a
  /// poll ends even when the proof keeps needing reads.
  async fn read_for_barrier(&mut self, waits: &BTreeSet<usize>, want: usize) -> Result<()> {
    let n = self.read(waits, want).await?;
    self.budget = self.budget.saturating_sub(n.max(1));
    Ok(())
  }

  async fn by_shard(&mut self, limit: usize) -> Result<()> {
    while self.out.len() < limit && self.budget > 0 {
      let live = self.lanes.iter().filter(|l| l.has_more()).count();
      if live == 0 {
        break;
      }
      let quota = (limit - self.out.len()).div_ceil(live);
      let due = self.due();
      if !due.is_empty() {
        self.read(&due, self.fetch(quota)).await?;
      }
      let mut progressed = false;
      let mut waits = BTreeSet::new();
      let mut i = 0;
      // Lanes the barrier adds during the round join it.
      while i < self.lanes.len() {
        let mut taken = 0;
        while taken < quota && self.out.len() < limit && self.budget > 0 {
          if self.lanes[i].needs_read() {
            let want = self.fetch(quota - taken);
            self.read(&BTreeSet::from([i]), want).await?;
          }
          if self.lanes[i].head().is_none() {
            break;
          }
          match self.decide(i) {
            Verdict::Go => {}
            Verdict::Behind => break,
            Verdict::Wait(lanes) => {
              waits.extend(lanes);
              break;
            }
          }
          progressed = true;
          if self.take(i).await {
            taken += 1;
          }
        }
        i += 1;
      }
      if !waits.is_empty() {
        self.read_for_barrier(&waits, self.fetch(quota)).await?;
      } else if !progressed {
        break;
      }
    }
    Ok(())
  }

  async fn by_time(&mut self, limit: usize) -> Result<()> {
    while self.out.len() < limit && self.budget > 0 {
      let per = (limit - self.out.len()).div_ceil(self.lanes.len());
      let due = self.due();
      if !due.is_empty() {
        self.read(&due, self.fetch(per)).await?;
      }
      // Every lane with data now has a buffered head; the smallest one the barrier lets
      // go is next. A head the barrier holds back for a read stops the choice: the read
      // may bring an earlier record.
      let mut heads: Vec<(Order, usize)> = (0..self.lanes.len())
        .filter_map(|i| self.lanes[i].head().map(|e| (order_of(e), i)))
        .collect();
      if heads.is_empty() {
        break;
      }
      heads.sort_unstable();
      let mut waits = BTreeSet::new();
      let mut chosen = None;
      for (_, i) in heads {
        match self.decide(i) {
          Verdict::Go => {
            chosen = Some(i);
            break;
          }
          Verdict::Behind => {}
          Verdict::Wait(lanes) => {
            waits.extend(lanes);
            break;
          }
        }
      }
      match chosen {
        Some(i) => {
          self.take(i).await;
        }
        None if !waits.is_empty() => self.read_for_barrier(&waits, self.fetch(per)).await?,
        None => break,
      }
    }
    Ok(())
  }
}

/// A page of every shard in the store's own order (JetStream: stream sequence), from one
/// store-wide reader. That order already keeps each producer's keys in ingest order: a
/// moved key's new shard is only written after its old shard's events are stored
/// (`topology.rs`), so they come later in the stream. It is also fair: shards take turns
/// as they were written. Positions are numbers in one sequence; a record at or below its
/// shard's position was consumed by an earlier page (read per shard) and is passed over.
async fn in_store_order(
  adapter: &dyn Adapter,
  mut cursor: Cursor,
  limit: usize,
  filter: Option<&Filter>,
) -> Result<PollPage> {
  let number = |p: &String| parse_seq(p);
  // Every shard is at the floor or beyond it (a cursor from per-shard reads has no floor:
  // this page then reads from the start, passing over what those reads consumed).
  let floor = cursor.floor.as_ref().map(number).transpose()?.unwrap_or(0);
  let mut at = floor;
  let mut done: std::collections::BTreeMap<u32, u64> = Default::default();
  for (s, p) in &cursor.positions {
    done.insert(*s, number(p)?);
  }
  let mut budget = (limit * 20).max(20_000);
  let mut out = Vec::with_capacity(limit.min(1024));
  let mut has_more = true;
  while out.len() < limit && budget > 0 {
    let need = limit - out.len();
    // Exactly what is missing without a filter, so the reader's next page starts where
    // this one ends (it keeps fetching ahead from there).
    let want = if filter.is_some() {
      need.max(256)
    } else {
      need
    };
    let after = (at > 0).then(|| at.to_string());
    let page = adapter
      .read_all(after.as_deref(), want)
      .await
      .map_err(BusError::from)?;
    let whole = page.events.len();
    let mut used = 0;
    for ev in page.events {
      used += 1;
      let seq = number(&ev.position)?;
      at = seq;
      budget = budget.saturating_sub(1);
      pace_filter(filter, budget).await;
      if seq <= done.get(&ev.shard).copied().unwrap_or(floor) {
        continue;
      }
      done.insert(ev.shard, seq);
      if filter.is_none_or(|f| matches(f, &ev)) {
        out.push(ev);
        if out.len() == limit {
          break;
        }
      }
    }
    if used == whole {
      // Records skipped as corrupt after the last event are behind us too.
      if let Some(next) = page.next.as_ref() {
        at = at.max(number(next)?);
      }
      if !page.has_more {
        has_more = false;
        break;
      }
    }
  }
  // Everything up to `at` is consumed, on every shard: it becomes the floor, and only
  // positions beyond it stay.
  cursor.floor = (at > 0).then(|| at.to_string());
  cursor.positions = done
    .into_iter()
    .filter(|(_, p)| *p > at)
    .map(|(s, p)| (s, p.to_string()))
    .collect();
  Ok(PollPage {
    events: out,
    cursor,
    has_more,
  })
}

/// Merge order for `ordering: 'timestamp'`. The epoch breaks a tie of one producer's
/// timestamps in its ingest order, where a moved key's old and new shard differ.
type Order = (u64, u32, u32, u64);

fn order_of(e: &StoredEvent) -> Order {
  (e.timestamp_ms, e.stamp.epoch, e.shard, e.seq)
}

/// Filter evaluation runs on the shared runtime; a long filtered poll gives the other
/// tasks (other buses' dispatchers too) a turn every this many records.
const FILTER_SLICE: usize = 256;

/// Payloads at least this large are parsed and matched off the runtime's worker: one such
/// event can take milliseconds, and a few polls of them would hold every worker, stalling
/// the dispatchers of every bus in the process.
const HEAVY_PAYLOAD: usize = 64 * 1024;

fn matches(filter: &Filter, ev: &StoredEvent) -> bool {
  let multi_thread = tokio::runtime::Handle::try_current()
    .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
  if ev.payload.len() >= HEAVY_PAYLOAD && multi_thread {
    // Hands this worker's other tasks to another thread while the match runs.
    tokio::task::block_in_place(|| filter.matches_event(ev))
  } else {
    filter.matches_event(ev)
  }
}

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

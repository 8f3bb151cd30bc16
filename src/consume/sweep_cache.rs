//! Store-wide pages a bus read lately, for its next timestamp polls. A poll's lanes stop
//! where it consumed, behind what it read ahead to find every lane's head; the next page
//! starts there and would read the same records again from the store. Here they are kept,
//! by shard, so that a lane takes its own records from memory without passing over the
//! other shards' records again.
//!
//! Only records are served, never the end of the store: a lane fed from here is not
//! exhausted, so that an exhausted lane is always the outcome of a read that started when
//! the clock says (the epoch barrier relies on it).

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::event::StoredEvent;

/// Records kept over all segments, and their payload bytes.
const MAX_EVENTS: usize = 65_536;
const MAX_BYTES: usize = 32 << 20;
/// Records one segment takes before the next page starts a new one (segments are what is
/// dropped when the bounds are reached).
const SEGMENT_EVENTS: usize = 4096;
/// A segment unused this long is dropped: a stream deleted and made again restarts its
/// sequence, and a cache must not outlive a paging session by much.
const IDLE: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct SweepCache {
  segments: Mutex<Vec<Segment>>,
}

impl std::fmt::Debug for SweepCache {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.write_str("SweepCache")
  }
}

/// Every record of the store in (`start`, `end`], by shard, each with its sequence.
struct Segment {
  start: u64,
  end: u64,
  shards: FxHashMap<u32, Vec<(u64, StoredEvent)>>,
  count: usize,
  bytes: usize,
  used: Instant,
}

/// What the cache holds of one shard after a position.
pub struct Slice {
  pub events: Vec<StoredEvent>,
  /// Every record of the store up to here was looked at (the shard has no others there).
  pub to: u64,
}

impl SweepCache {
  /// Up to `max` records of `shard` after `from`, if a kept segment covers `from`.
  pub fn slice(&self, shard: u32, from: u64, max: usize) -> Option<Slice> {
    let mut segments = self.segments.lock();
    let now = Instant::now();
    segments.retain(|s| now.duration_since(s.used) < IDLE);
    let seg = segments
      .iter_mut()
      .find(|s| s.start <= from && from < s.end)?;
    seg.used = now;
    let Some(list) = seg.shards.get(&shard) else {
      return Some(Slice {
        events: Vec::new(),
        to: seg.end,
      });
    };
    let first = list.partition_point(|(seq, _)| *seq <= from);
    let last = list.len().min(first + max.max(1));
    let to = if last == list.len() {
      seg.end
    } else {
      list[last - 1].0
    };
    Some(Slice {
      events: list[first..last].iter().map(|(_, e)| e.clone()).collect(),
      to,
    })
  }

  /// Keeps a page read from the store after `from` (its `events`, at sequences `seqs`),
  /// which looked at every record up to `to`.
  pub fn keep(&self, from: u64, to: u64, seqs: &[u64], events: &[StoredEvent]) {
    if to <= from {
      return;
    }
    let mut segments = self.segments.lock();
    let now = Instant::now();
    let at = match segments
      .iter()
      .position(|s| s.end == from && s.count < SEGMENT_EVENTS)
    {
      Some(i) => i,
      None => {
        segments.push(Segment {
          start: from,
          end: from,
          shards: FxHashMap::default(),
          count: 0,
          bytes: 0,
          used: now,
        });
        segments.len() - 1
      }
    };
    // The segment written goes last: the oldest others are dropped first.
    let mut seg = segments.remove(at);
    for (&seq, ev) in seqs.iter().zip(events) {
      seg.bytes += ev.payload.len();
      seg.count += 1;
      let list = seg.shards.entry(ev.shard).or_default();
      list.push((seq, ev.clone()));
    }
    seg.end = to;
    seg.used = now;
    segments.push(seg);
    loop {
      let (n, b) = segments
        .iter()
        .fold((0, 0), |(n, b), s| (n + s.count, b + s.bytes));
      let others = segments.len() - 1;
      if (n <= MAX_EVENTS && b <= MAX_BYTES) || others == 0 {
        break;
      }
      if let Some(oldest) = (0..others).min_by_key(|&i| segments[i].used) {
        segments.remove(oldest);
      }
    }
  }
}

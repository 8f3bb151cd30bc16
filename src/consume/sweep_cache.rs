//! Store-wide pages a bus read lately, for its next timestamp polls. A poll's lanes stop
//! where it consumed, behind what it read ahead to find every lane's head; the next page
//! starts there and would read the same records again from the store. Here they are
//! served from memory instead: pages read after the end of a kept segment extend it.
//!
//! Only the records are served, never the end of the store: a page served from here says
//! more may follow, so that an exhausted lane is always the outcome of a read that
//! started when the clock says (the epoch barrier relies on it).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::adapter::ReadPage;
use crate::event::StoredEvent;

/// Records kept, over all segments, and their payload bytes.
const MAX_EVENTS: usize = 32_768;
const MAX_BYTES: usize = 32 << 20;
/// Segments kept: the ones a timestamp page jumps between (lanes far apart).
const MAX_SEGMENTS: usize = 8;
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

/// Every record of the store in (`start`, `end`], in order, each with its sequence.
struct Segment {
  start: u64,
  end: u64,
  events: VecDeque<(u64, StoredEvent)>,
  bytes: usize,
  used: Instant,
}

impl SweepCache {
  /// Up to `max` records after `from`, if a kept segment covers `from` and more after it.
  pub fn serve(&self, from: u64, max: usize) -> Option<ReadPage> {
    let mut segments = self.segments.lock();
    let now = Instant::now();
    segments.retain(|s| now.duration_since(s.used) < IDLE);
    let seg = segments
      .iter_mut()
      .find(|s| s.start <= from && from < s.end)?;
    seg.used = now;
    let first = seg.events.partition_point(|(seq, _)| *seq <= from);
    let events: Vec<StoredEvent> = seg
      .events
      .range(first..)
      .take(max.max(1))
      .map(|(_, e)| e.clone())
      .collect();
    let last = first + events.len();
    let next = if last == seg.events.len() {
      seg.end
    } else {
      seg.events[last - 1].0
    };
    Some(ReadPage {
      events,
      next: Some(next.to_string()),
      has_more: true,
      remaining: None,
    })
  }

  /// Keeps a page read from the store after `from`, ending at `to` (what it examined).
  pub fn keep(&self, from: u64, to: u64, events: &[(u64, &StoredEvent)]) {
    if to <= from {
      return;
    }
    let mut segments = self.segments.lock();
    let at = match segments.iter().position(|s| s.end == from) {
      Some(i) => i,
      None => {
        if segments.len() >= MAX_SEGMENTS {
          let oldest = (0..segments.len()).min_by_key(|&i| segments[i].used);
          if let Some(i) = oldest {
            segments.remove(i);
          }
        }
        segments.push(Segment {
          start: from,
          end: from,
          events: VecDeque::new(),
          bytes: 0,
          used: Instant::now(),
        });
        segments.len() - 1
      }
    };
    let seg = &mut segments[at];
    for (seq, ev) in events {
      seg.bytes += ev.payload.len();
      seg.events.push_back((*seq, (*ev).clone()));
    }
    seg.end = to;
    seg.used = Instant::now();
    trim(&mut segments, at);
  }
}

/// Drops the oldest records until the bounds hold, from the segments not just extended
/// first, then from the front of the one that was.
fn trim(segments: &mut Vec<Segment>, fresh: usize) {
  let total = |s: &[Segment]| {
    s.iter()
      .fold((0, 0), |(n, b), g| (n + g.events.len(), b + g.bytes))
  };
  let mut keep_fresh = segments.remove(fresh);
  loop {
    let (n, b) = total(segments);
    let (n, b) = (n + keep_fresh.events.len(), b + keep_fresh.bytes);
    if n <= MAX_EVENTS && b <= MAX_BYTES {
      break;
    }
    if let Some(i) = (0..segments.len()).min_by_key(|&i| segments[i].used) {
      segments.remove(i);
      continue;
    }
    let Some((seq, ev)) = keep_fresh.events.pop_front() else {
      break;
    };
    keep_fresh.bytes -= ev.payload.len();
    keep_fresh.start = seq;
  }
  segments.push(keep_fresh);
}

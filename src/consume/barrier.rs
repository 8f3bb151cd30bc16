//! The epoch barrier: how a reader keeps each key's events in ingest order across a
//! producer's `scaleUp`/`scaleDown`, whatever shards it reads and in whatever order.
//!
//! Every stored event carries its producer's stamp: the epoch (topology changes so far)
//! and the span (shard ids used so far). The write side guarantees that once any event
//! of epoch `e` is stored, every event of that producer with a lower epoch is stored or
//! dropped (`topology.rs`: the hold at each swap). A key only changes shard at an epoch
//! change, and within a shard a producer's epochs never decrease.
//!
//! So before the reader yields a producer's first event of a new epoch `e`, it proves that
//! no shard `0..span` still holds an unread event of that producer with an epoch below `e`:
//! each such shard either has a buffered event of that producer at epoch `e` or later
//! (older ones would be ahead of it, and are yielded first), or was read to its end by a
//! read that started after the epoch-`e` event was seen. Only the first event of each
//! epoch pays for this (at most one extra read of the idle shards); the proven epoch per
//! producer travels in the cursor, so later pages do not repeat it.

use crate::consume::cursor::Cleared;
use crate::consume::lane::Lane;
use crate::event::StoredEvent;

/// At most this many producers are remembered in a cursor. Forgetting one is safe: its
/// next event only pays for the proof again.
const MAX_REMEMBERED: usize = crate::consume::cursor::MAX_CLEARED;

pub enum Verdict {
  /// The head may be yielded now.
  Go,
  /// Another lane holds an older event of the same producer: that one goes first.
  Behind,
  /// These lanes must be read further (or again) before the head may go.
  Wait(Vec<usize>),
}

pub struct Barrier {
  cleared: Cleared,
}

impl Barrier {
  pub fn new(cleared: Cleared) -> Barrier {
    Barrier { cleared }
  }

  /// Whether the head of `lanes[at]` (read at clock `seen`) may be yielded. On `Go` for a
  /// new epoch, remembers it as proven.
  pub fn check(&mut self, lanes: &[Lane], at: usize) -> Verdict {
    let (head, seen) = match lanes[at].buffer.front() {
      Some((ev, seen)) => (ev, *seen),
      None => return Verdict::Go,
    };
    let epoch = head.stamp.epoch;
    if epoch == 0 {
      // A producer's first topology has nothing before it.
      return Verdict::Go;
    }
    let producer = head.producer();
    if epoch <= self.cleared.get(producer).copied().unwrap_or(0) {
      return Verdict::Go;
    }
    let mut reads = Vec::new();
    for (i, lane) in lanes.iter().enumerate() {
      if i == at {
        continue;
      }
      match first_of(lane, producer) {
        Some(ev) if ev.stamp.epoch < epoch => return Verdict::Behind,
        Some(_) => {}
        None if lane.exhausted && lane.exhausted_since >= seen => {}
        None => reads.push(i),
      }
    }
    if !reads.is_empty() {
      return Verdict::Wait(reads);
    }
    self.cleared.insert(producer.to_string(), epoch);
    Verdict::Go
  }

  /// The proven epochs, bounded, for the next cursor.
  pub fn into_cleared(mut self) -> Cleared {
    while self.cleared.len() > MAX_REMEMBERED {
      // The lowest epoch is the cheapest to prove again.
      let Some(k) = self
        .cleared
        .iter()
        .min_by_key(|(_, e)| **e)
        .map(|(k, _)| k.clone())
      else {
        break;
      };
      self.cleared.remove(&k);
    }
    self.cleared
  }
}

fn first_of<'a>(lane: &'a Lane, producer: &str) -> Option<&'a StoredEvent> {
  lane
    .buffer
    .iter()
    .map(|(e, _)| e)
    .find(|e| e.producer() == producer)
}

//! A shard: its bounded ring, sequence and clock state, counters and flush waiters.
//!
//! All mutable state sits behind one short-held mutex. Producers hold it for one push;
//! the dispatcher holds it to move a batch out and to record a batch's outcome. Nobody
//! holds it across I/O, so `ingest` on the JS thread never waits on the network.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

mod counters;

pub use self::counters::{CounterSnapshot, Counters, DropReason};
use crate::config::Backpressure;
use crate::error::{BusError, Code, Result};
use crate::event::{Event, Incoming, Stamp};

struct FlushWaiter {
  target: u64,
  dropped: u64,
  tx: oneshot::Sender<u64>,
}

struct State {
  ring: VecDeque<Event>,
  ring_bytes: usize,
  next_seq: u64,
  last_ts: u64,
  inflight_first: Option<u64>,
  inflight_len: usize,
  waiters: Vec<FlushWaiter>,
  nonempty_since: Option<Instant>,
  urgent: bool,
  closing: bool,
  /// Events from this sequence on wait (are not dispatched) until the hold is released:
  /// set at a topology change, see `topology.rs`.
  hold: Option<u64>,
  /// Stamped on every event pushed; changed only under the routing write lock.
  stamp: Stamp,
  last_error: Option<String>,
}

impl State {
  /// Queued events the dispatcher may take now: those below the hold, if any. Sequences
  /// in the ring are contiguous (only the front is ever removed), so this is arithmetic.
  fn dispatchable(&self) -> usize {
    match (self.hold, self.ring.front()) {
      (Some(hold), Some(front)) => (hold.saturating_sub(front.seq) as usize).min(self.ring.len()),
      _ => self.ring.len(),
    }
  }

  /// Every event with a sequence below this is stored or dropped.
  fn floor(&self) -> u64 {
    self
      .inflight_first
      .or_else(|| self.ring.front().map(|e| e.seq))
      .unwrap_or(self.next_seq)
  }

  fn note_drop(&mut self, seq: u64) {
    for w in &mut self.waiters {
      if seq < w.target {
        w.dropped += 1;
      }
    }
  }

  fn complete_waiters(&mut self) {
    if self.waiters.is_empty() {
      return;
    }
    let floor = self.floor();
    let mut i = 0;
    while i < self.waiters.len() {
      if self.waiters[i].target <= floor {
        let w = self.waiters.swap_remove(i);
        let _ = w.tx.send(w.dropped);
      } else {
        i += 1;
      }
    }
  }
}

/// What the dispatcher sees when deciding whether to cut a batch.
#[derive(Debug, Clone, Copy)]
pub struct Peek {
  pub len: usize,
  pub bytes: usize,
  pub nonempty_since: Option<Instant>,
  pub urgent: bool,
  pub closing: bool,
}

/// A registered flush barrier on one shard.
pub struct FlushTicket {
  /// Events unresolved when the barrier was set.
  pub pending: u64,
  /// Resolves with how many of them were dropped.
  pub done: oneshot::Receiver<u64>,
}

pub struct Shard {
  pub id: u32,
  capacity: usize,
  /// Payload and key bytes the ring holds at most (a lone event always fits).
  max_bytes: usize,
  mode: Backpressure,
  batch_events: usize,
  batch_bytes: usize,
  state: Mutex<State>,
  /// Wakes the dispatcher: first event in an empty ring, a full batch, flush, close.
  pub wake: Notify,
  pub counters: Counters,
}

/// The result of a push that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
  Accepted,
  DroppedNewest,
}

/// Ring slots kept allocated once a backlog has drained.
const RETAINED_SLOTS: usize = 4096;

impl Shard {
  /// A shard whose ring is bounded by `capacity` events only.
  pub fn new(
    id: u32,
    capacity: usize,
    mode: Backpressure,
    batch_events: usize,
    batch_bytes: usize,
  ) -> Arc<Self> {
    Self::with_limits(id, capacity, usize::MAX, mode, batch_events, batch_bytes)
  }

  /// A shard whose ring holds at most `capacity` events and `max_bytes` bytes.
  pub fn with_limits(
    id: u32,
    capacity: usize,
    max_bytes: usize,
    mode: Backpressure,
    batch_events: usize,
    batch_bytes: usize,
  ) -> Arc<Self> {
    Arc::new(Shard {
      id,
      capacity,
      max_bytes,
      mode,
      batch_events,
      batch_bytes,
      state: Mutex::new(State {
        ring: VecDeque::new(),
        ring_bytes: 0,
        next_seq: 0,
        last_ts: 0,
        inflight_first: None,
        inflight_len: 0,
        waiters: Vec::new(),
        nonempty_since: None,
        urgent: false,
        closing: false,
        hold: None,
        stamp: Stamp::default(),
        last_error: None,
      }),
      wake: Notify::new(),
      counters: Counters::default(),
    })
  }

  pub fn capacity(&self) -> usize {
    self.capacity
  }

  /// Places one event in the ring, applying the backpressure mode.
  /// Appends an event read at wall-clock `now_ms` (kept monotonic per shard).
  pub fn push(&self, inc: Incoming, now_ms: u64) -> Result<Pushed> {
    let mut wake = false;
    let size = inc.payload.len() + inc.key.as_ref().map_or(0, |k| k.len());
    // Full in events, or in bytes; an empty ring takes any one event.
    let full = |st: &State| {
      st.ring.len() >= self.capacity
        || (!st.ring.is_empty() && st.ring_bytes.saturating_add(size) > self.max_bytes)
    };
    {
      let mut st = self.state.lock();
      if full(&st) {
        match self.mode {
          Backpressure::Reject => {
            self.counters.rejected.fetch_add(1, Ordering::AcqRel);
            return Err(BusError::new(
              Code::Backpressure,
              format!(
                "shard {} is full ({} events, {} bytes queued; ringCapacity {}, ringMaxBytes {}); slow down, call flush(), raise those limits, or choose backpressure 'dropOldest'/'dropNewest'",
                self.id, st.ring.len(), st.ring_bytes, self.capacity, self.max_bytes
              ),
            ));
          }
          Backpressure::DropNewest => {
            self.counters.ingested.fetch_add(1, Ordering::AcqRel);
            self.counters.dropped_newest.fetch_add(1, Ordering::AcqRel);
            return Ok(Pushed::DroppedNewest);
          }
          Backpressure::DropOldest => {
            // A large event may need several small ones to make room.
            while full(&st) {
              let Some(old) = st.ring.pop_front() else {
                break;
              };
              st.ring_bytes -= old.size();
              st.note_drop(old.seq);
              self.counters.dropped_oldest.fetch_add(1, Ordering::AcqRel);
            }
            // An eviction is the only way a push can complete a flush barrier.
            st.complete_waiters();
          }
        }
      }
      let ts = now_ms.max(st.last_ts);
      st.last_ts = ts;
      let seq = st.next_seq;
      st.next_seq += 1;
      let ev = Event {
        seq,
        timestamp_ms: ts,
        kind: inc.kind,
        key: inc.key,
        payload: inc.payload,
        stamp: st.stamp,
        headers: inc.headers,
      };
      let size = ev.size();
      let before_bytes = st.ring_bytes;
      st.ring_bytes += size;
      // Counted before it becomes visible, so stored + dropped never exceeds ingested.
      self.counters.ingested.fetch_add(1, Ordering::AcqRel);
      st.ring.push_back(ev);
      let len = st.ring.len();
      if len == 1 {
        st.nonempty_since = Some(Instant::now());
        wake = true;
      } else if len == self.batch_events
        || (before_bytes < self.batch_bytes && st.ring_bytes >= self.batch_bytes)
      {
        wake = true;
      }
    }
    if wake {
      self.wake.notify_one();
    }
    Ok(Pushed::Accepted)
  }

  pub fn peek(&self) -> Peek {
    let st = self.state.lock();
    Peek {
      len: st.dispatchable(),
      bytes: st.ring_bytes,
      nonempty_since: st.nonempty_since,
      urgent: st.urgent,
      closing: st.closing,
    }
  }

  /// Moves up to one batch from the ring into `out` (which must be empty).
  pub fn take_batch(&self, out: &mut Vec<Event>) {
    let mut st = self.state.lock();
    let mut bytes = 0usize;
    let limit = self.batch_events.min(st.dispatchable());
    while out.len() < limit {
      let Some(front) = st.ring.front() else { break };
      let size = front.size();
      if !out.is_empty() && bytes + size > self.batch_bytes {
        break;
      }
      bytes += size;
      let ev = st.ring.pop_front().expect("front exists");
      out.push(ev);
    }
    st.ring_bytes -= bytes;
    st.inflight_first = out.first().map(|e| e.seq);
    st.inflight_len = out.len();
    if st.ring.is_empty() {
      st.nonempty_since = None;
      st.urgent = false;
      // A backlog (a backend outage) grew the ring's buffer; once it has drained, give the
      // memory back instead of holding the high-water mark (up to ~100 bytes per slot of
      // `ringCapacity`) for the life of the bus. Ordinary batches never grow it this far.
      if st.ring.capacity() > RETAINED_SLOTS {
        st.ring.shrink_to(RETAINED_SLOTS);
      }
    }
  }

  /// Records the outcome of the batch in flight: `stored` events stored and the
  /// sequences in `dropped` dropped for `reason`.
  pub fn finish_batch(
    &self,
    stored: u64,
    dropped: &[u64],
    reason: DropReason,
    error: Option<String>,
  ) {
    let mut st = self.state.lock();
    for &seq in dropped {
      st.note_drop(seq);
    }
    self.counters.stored.fetch_add(stored, Ordering::AcqRel);
    if !dropped.is_empty() {
      self
        .counters
        .drop_counter(reason)
        .fetch_add(dropped.len() as u64, Ordering::AcqRel);
    }
    if error.is_some() {
      st.last_error = error;
    }
    st.inflight_first = None;
    st.inflight_len = 0;
    st.complete_waiters();
  }

  /// Drops everything still queued (used when the shutdown bound expires).
  pub fn abandon_queued(&self) -> u64 {
    let mut st = self.state.lock();
    let evs: Vec<u64> = st.ring.drain(..).map(|e| e.seq).collect();
    st.ring_bytes = 0;
    st.nonempty_since = None;
    for &seq in &evs {
      st.note_drop(seq);
    }
    self
      .counters
      .dropped_shutdown
      .fetch_add(evs.len() as u64, Ordering::AcqRel);
    st.complete_waiters();
    evs.len() as u64
  }

  /// Sets a flush barrier at the current end of the shard.
  pub fn flush_ticket(&self) -> Option<FlushTicket> {
    let mut st = self.state.lock();
    let pending = (st.ring.len() + st.inflight_len) as u64;
    if pending == 0 {
      return None;
    }
    let (tx, rx) = oneshot::channel();
    let target = st.next_seq;
    st.waiters.push(FlushWaiter {
      target,
      dropped: 0,
      tx,
    });
    st.urgent = true;
    drop(st);
    self.wake.notify_one();
    Some(FlushTicket { pending, done: rx })
  }

  /// Tells the dispatcher to drain the ring and exit. A hold no longer applies: a closing
  /// shard delivers everything it has.
  pub fn close(&self) {
    let mut st = self.state.lock();
    st.closing = true;
    st.hold = None;
    drop(st);
    self.wake.notify_one();
  }

  /// Makes a closed shard usable by a new dispatcher; its sequence carries on, so message
  /// ids are never reused.
  pub fn reopen(&self) {
    self.state.lock().closing = false;
  }

  /// Stamps every event pushed from now on (a bus's first shards, before any routing).
  pub fn set_stamp(&self, stamp: Stamp) {
    self.state.lock().stamp = stamp;
  }

  /// Holds every event pushed from now on (until [`Shard::release`]) and stamps them with
  /// the new topology; returns the first held sequence.
  pub fn hold_from_now(&self, stamp: Stamp) -> u64 {
    let mut st = self.state.lock();
    st.stamp = stamp;
    let at = st.next_seq;
    if !st.closing {
      st.hold = Some(at);
    }
    at
  }

  pub fn release(&self) {
    self.state.lock().hold = None;
    self.wake.notify_one();
  }

  pub fn counters(&self) -> CounterSnapshot {
    let c = &self.counters;
    // Outcomes are read before `ingested`, which only grows, so pending never underflows.
    let stored = c.stored.load(Ordering::Acquire);
    let dropped_oldest = c.dropped_oldest.load(Ordering::Acquire);
    let dropped_newest = c.dropped_newest.load(Ordering::Acquire);
    let dropped_adapter = c.dropped_adapter.load(Ordering::Acquire);
    let dropped_shutdown = c.dropped_shutdown.load(Ordering::Acquire);
    let rejected = c.rejected.load(Ordering::Acquire);
    let retried = c.retried.load(Ordering::Acquire);
    let ingested = c.ingested.load(Ordering::Acquire);
    CounterSnapshot {
      ingested,
      stored,
      dropped_oldest,
      dropped_newest,
      dropped_adapter,
      dropped_shutdown,
      rejected,
      retried,
    }
  }

  /// Queue depth, events in flight and the last adapter error.
  pub fn occupancy(&self) -> Occupancy {
    let st = self.state.lock();
    Occupancy {
      queued: st.ring.len(),
      queued_bytes: st.ring_bytes,
      in_flight: st.inflight_len,
      last_error: st.last_error.clone(),
    }
  }
}

/// What a shard holds right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Occupancy {
  /// Events waiting in the ring.
  pub queued: usize,
  /// Their payload bytes.
  pub queued_bytes: usize,
  /// Events in the adapter write under way.
  pub in_flight: usize,
  /// The last adapter error the dispatcher saw.
  pub last_error: Option<String>,
}

#[cfg(test)]
mod tests;

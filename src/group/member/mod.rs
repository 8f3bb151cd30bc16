//! One member of a consumer group.
//!
//! Two tasks per member. The coordinator (`coordinator.rs`) renews membership and leases
//! every third of the lease, computes the split of shards over live members, takes the
//! shards it is given and hands over the ones it is not, redelivers events whose ack
//! deadline passed, and writes commit records (`commit.rs`: dead letters first, so a
//! committed position never passes an event that is neither acked nor stored as a
//! letter). The reader (`reader.rs`) fills each owned shard's entries from the store, up
//! to `maxInFlight` held events, and waits on the store when every shard is read to its
//! end.
//!
//! What the member holds is its ledger (`ledger.rs`): per shard, entries in read order;
//! the watermark (the committed position) advances over the acked prefix. Acks are
//! synchronous and only touch the ledger, under a lock that is never held across I/O.

mod commit;
mod coordinator;
mod handover;
mod ledger;
mod reader;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use self::ledger::Ledger;
use super::record::StartRecord;
use super::GroupOptions;
use crate::adapter::group_store::GroupStore;
use crate::adapter::Adapter;
use crate::consume::start::StartAt;
use crate::consume::ShardSource;
use crate::error::{BusError, Result};
use crate::event::StoredEvent;
use crate::signal::Signal;
use crate::telemetry::{Count, GroupCounts, GroupMeters};

pub(crate) use self::coordinator::letters_returned;

/// Records read per request.
const PAGE: usize = 512;
const ERROR_BACKOFF_CAP: Duration = Duration::from_secs(5);

/// An event handed to the application, and how many times it has been delivered.
#[derive(Debug, Clone)]
pub struct Delivery {
  /// Shared with the member's ledger until acked: handing it on copies no bytes.
  pub event: Arc<StoredEvent>,
  pub deliveries: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberStats {
  pub delivered: u64,
  pub acked: u64,
  pub nacked: u64,
  pub redelivered: u64,
  pub dead_lettered: u64,
  /// Delivered and not yet acked.
  pub in_flight: u64,
  /// Events on this member's shards not yet acked: read and held, plus stored and not
  /// yet read where the store tells how many.
  pub lag: u64,
  pub shards: Vec<u32>,
}

struct Inner {
  opts: GroupOptions,
  adapter: Arc<dyn Adapter>,
  own: Arc<dyn ShardSource>,
  start: StartRecord,
  state: Mutex<Ledger>,
  /// Wakes `next_batch`.
  deliverable: Notify,
  /// Wakes the reader: room freed, shards taken.
  room: Notify,
  /// Wakes the coordinator: acks to commit, a nack's new deadline.
  wake: Notify,
  /// The bus's shutdown (ignored by members a worker closes itself).
  closing: Arc<Signal>,
  follows_bus: bool,
  stop: Signal,
  done: Arc<Signal>,
  /// This member's counters; `meters` sums them (and more) for the group in this bus.
  c: GroupCounts,
  meters: Arc<GroupMeters>,
  ticks: AtomicU64,
  /// The group's signals, until the coordinator takes them.
  signals: Mutex<Option<crate::adapter::group_store::Signals>>,
  /// Scans of the deadlines (for the engine tests: nacks must not each cause one).
  #[cfg(feature = "test-hooks")]
  scans: AtomicU64,
}

/// A member of a consumer group. Clones share it.
#[derive(Clone)]
pub struct Member {
  inner: Arc<Inner>,
}

/// The adapter's group store, or why it has none.
pub(crate) fn group_store(adapter: &dyn Adapter) -> Result<&dyn GroupStore> {
  adapter.groups().ok_or_else(|| {
    BusError::config(format!(
      "the {} adapter keeps no events, so it has no consumer groups: use {}",
      adapter.kind(),
      crate::adapter::backends_keeping_events()
    ))
  })
}

impl Member {
  /// Joins the group (creating it at `from` when it is new) and starts the member's tasks.
  /// With `follows_bus` false the member ignores the bus's shutdown: its owner closes it.
  pub(crate) async fn start(
    opts: GroupOptions,
    meters: Arc<GroupMeters>,
    adapter: Arc<dyn Adapter>,
    own: Arc<dyn ShardSource>,
    closing: Arc<Signal>,
    follows_bus: bool,
    rt: &tokio::runtime::Handle,
  ) -> Result<Member> {
    opts.validate()?;
    let groups = group_store(adapter.as_ref())?;
    coordinator::claim_name(groups, &opts).await?;
    // A start other than the earliest is kept as the positions it names (the record calls
    // them "latest", as they were before a group could start at a time).
    let proposal = if opts.from != StartAt::Earliest {
      let shards = crate::consume::read_shards(adapter.as_ref(), own.all_ids()).await;
      let cursor =
        crate::consume::start::start_cursor(adapter.as_ref(), &shards, &opts.from).await?;
      StartRecord::Latest(cursor)
    } else {
      StartRecord::Earliest
    };
    let start = StartRecord::decode(&groups.start(&opts.group, &proposal.encode()).await?);
    // Watching before joining: a signal sent in reply to this join is not missed.
    let signals = groups.watch(&opts.group).await;
    let member = Member {
      inner: Arc::new(Inner {
        opts,
        adapter,
        own,
        start,
        state: Mutex::new(Ledger::default()),
        deliverable: Notify::new(),
        room: Notify::new(),
        wake: Notify::new(),
        closing,
        follows_bus,
        stop: Signal::new(),
        done: Arc::new(Signal::new()),
        c: GroupCounts::default(),
        meters,
        ticks: AtomicU64::new(0),
        signals: Mutex::new(signals),
        #[cfg(feature = "test-hooks")]
        scans: AtomicU64::new(0),
      }),
    };
    // Join before the first renewal so that others count this member at once, and tell
    // them: they hand its shards over now, not at their next renewal. A member the split
    // gives nothing (more members than shards) moves nobody's shards, so it says nothing:
    // many members joining at once do not each wake every other.
    if member.tick().await > 0 {
      member.signal().await;
    }
    rt.spawn(member.clone().coordinate());
    rt.spawn(member.clone().read_loop());
    Ok(member)
  }

  /// Adds to this member's counter and its group's.
  fn count(&self, which: Count, n: usize) {
    if n > 0 {
      self
        .inner
        .c
        .get(which)
        .fetch_add(n as u64, Ordering::Relaxed);
      (self.inner.meters.counts.get(which)).fetch_add(n as u64, Ordering::Relaxed);
    }
  }

  /// `n` events reached the application (a consumer yielded them, a worker called its
  /// handler): `messaging.client.consumed.messages`.
  pub fn handed_over(&self, n: usize) {
    (self.inner.meters.consumed).fetch_add(n as u64, Ordering::Relaxed);
  }

  /// The group's measurements in this bus.
  pub(crate) fn meters(&self) -> &GroupMeters {
    &self.inner.meters
  }

  /// Deadline scans so far (engine tests only).
  #[cfg(feature = "test-hooks")]
  pub fn deadline_scans(&self) -> u64 {
    self.inner.scans.load(Ordering::Relaxed)
  }

  pub fn options(&self) -> &GroupOptions {
    &self.inner.opts
  }

  /// Fired once the member has committed, given its shards up and left.
  pub fn done_signal(&self) -> Arc<Signal> {
    self.inner.done.clone()
  }

  fn store(&self) -> &dyn GroupStore {
    // Checked in `start`.
    self.inner.adapter.groups().expect("a group store")
  }

  fn stopping(&self) -> bool {
    self.inner.stop.is_fired() || (self.inner.follows_bus && self.inner.closing.is_fired())
  }

  async fn stopped(&self) {
    if self.inner.follows_bus {
      tokio::select! {
        _ = self.inner.stop.wait() => {}
        _ = self.inner.closing.wait() => {}
      }
    } else {
      self.inner.stop.wait().await
    }
  }

  /// Up to `max` events (at least one), or none once the member is closed. Redeliveries
  /// come before new events. `hold`: no ack deadline (a worker holds them).
  pub async fn next_batch(&self, max: usize, hold: bool) -> Vec<Delivery> {
    // A redelivery already due goes before the events behind it, also when the
    // coordinator has not scanned since (it scans at most every few milliseconds).
    let due = self.inner.state.lock().next_due;
    if !hold && due.is_some_and(|d| d <= Instant::now()) {
      self.redeliver_due(Instant::now());
      self.inner.wake.notify_one();
    }
    loop {
      let notified = self.inner.deliverable.notified();
      tokio::pin!(notified);
      notified.as_mut().enable();
      {
        let mut st = self.inner.state.lock();
        if st.closed || self.stopping() {
          return Vec::new();
        }
        let out = self.take(&mut st, max.max(1), hold);
        if !out.is_empty() {
          return out;
        }
      }
      tokio::select! {
        _ = notified => {}
        _ = self.stopped() => {}
      }
    }
  }

  fn take(&self, st: &mut Ledger, max: usize, hold: bool) -> Vec<Delivery> {
    let due = (!hold).then(|| Instant::now() + self.inner.opts.ack_wait);
    let (out, earlier) = st.take(max, due);
    if earlier {
      self.inner.wake.notify_one();
    }
    let again = out.iter().filter(|d| d.deliveries > 1).count();
    self.count(Count::Delivered, out.len());
    self.count(Count::Redelivered, again);
    out
  }

  /// Room for this many events wakes the reader: it reads pages, not one event per ack.
  fn refill(&self) -> usize {
    (self.inner.opts.max_in_flight / 4).clamp(1, PAGE)
  }

  /// Held events were released: wake the reader when that made room for a page.
  fn freed(&self, st: &Ledger) {
    if st.held() + self.refill() == self.inner.opts.max_in_flight {
      self.inner.room.notify_one();
    }
  }

  /// Marks that commit records changed; wakes the coordinator once per batch of changes.
  fn note_commit(&self, st: &mut Ledger) {
    if st.mark_commit() {
      self.inner.wake.notify_one();
    }
  }

  /// A delivered event was settled (acked, dead-lettered, given back).
  fn settled(&self, st: &mut Ledger) {
    self.note_commit(st);
    self.freed(st);
  }

  /// Acknowledges a delivered event. False when this member does not hold it (already
  /// acked, never delivered here, or its shard was handed over).
  pub fn ack(&self, shard: u32, id: &str) -> bool {
    let mut st = self.inner.state.lock();
    self.ack_locked(&mut st, shard, id)
  }

  /// Acknowledges several delivered events under one lock; returns how many it held.
  pub fn ack_all<'a>(&self, events: impl IntoIterator<Item = (u32, &'a str)>) -> usize {
    let mut st = self.inner.state.lock();
    events
      .into_iter()
      .filter(|(shard, id)| self.ack_locked(&mut st, *shard, id))
      .count()
  }

  fn ack_locked(&self, st: &mut Ledger, shard: u32, id: &str) -> bool {
    let acked = st.ack(shard, id);
    if acked {
      self.count(Count::Acked, 1);
      self.settled(st);
      if st.drained(shard) {
        // The last event a hand-over waited for: the coordinator releases the shard now.
        self.inner.wake.notify_one();
      }
    }
    acked
  }

  /// Redelivers a delivered event, not before `delay`.
  pub fn nack(&self, shard: u32, id: &str, delay: Duration) -> bool {
    let mut st = self.inner.state.lock();
    let Some(earlier) = st.nack(shard, id, Instant::now() + delay) else {
      return false;
    };
    self.count(Count::Nacked, 1);
    if earlier {
      self.inner.wake.notify_one();
    }
    true
  }

  /// Pushes a delivered event's ack deadline to `ackWaitMs` from now.
  pub fn touch(&self, shard: u32, id: &str) -> bool {
    let due = Instant::now() + self.inner.opts.ack_wait;
    self.inner.state.lock().touch(shard, id, due)
  }

  /// A held event failed and will be tried again in place: counts one more delivery and
  /// returns the count (None when this member does not hold it).
  pub fn retrying(&self, shard: u32, id: &str) -> Option<u32> {
    let mut st = self.inner.state.lock();
    let n = st.retrying(shard, id)?;
    self.count(Count::Redelivered, 1);
    self.note_commit(&mut st);
    Some(n)
  }

  /// Moves a held event to the dead letters with `reason`.
  pub fn dead_letter(&self, shard: u32, id: &str, reason: &str) -> bool {
    let mut st = self.inner.state.lock();
    if !st.dead_letter(shard, id, reason) {
      return false;
    }
    self.count(Count::DeadLettered, 1);
    self.settled(&mut st);
    true
  }

  /// A held event that was never handled goes back to the store uncounted (a worker
  /// closing with events it had not started): the next owner delivers it.
  pub fn give_back(&self, shard: u32, id: &str) {
    let mut st = self.inner.state.lock();
    if st.give_back(shard, id) {
      self.settled(&mut st);
    }
  }

  pub fn stats(&self) -> MemberStats {
    let st = self.inner.state.lock();
    let c = &self.inner.c;
    MemberStats {
      delivered: c.delivered.load(Ordering::Relaxed),
      acked: c.acked.load(Ordering::Relaxed),
      nacked: c.nacked.load(Ordering::Relaxed),
      redelivered: c.redelivered.load(Ordering::Relaxed),
      dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
      in_flight: st.out() as u64,
      lag: st.lag(),
      shards: st.shards.keys().copied().collect(),
    }
  }

  /// Commits, gives every shard up and leaves the group. Idempotent.
  pub async fn close(&self) {
    self.inner.stop.fire();
    self.inner.done.wait().await;
  }

  /// Starts closing without waiting (the JS object was garbage collected).
  pub fn close_in_background(&self) {
    self.inner.stop.fire();
  }
}

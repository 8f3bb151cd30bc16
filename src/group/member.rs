//! One member of a consumer group.
//!
//! Two tasks per member. The coordinator renews membership and leases every third of the
//! lease, computes the split of shards over live members, takes the shards it is given
//! and hands over the ones it is not, redelivers events whose ack deadline passed, and
//! writes commit records (dead letters first, so a committed position never passes an
//! event that is neither acked nor stored as a letter). The reader fills each owned shard's
//! entries from the store, up to `maxInFlight` held events, and waits on the store when
//! every shard is read to its end.
//!
//! Per shard, entries are kept in read order; the watermark (the committed position)
//! advances over the acked prefix. Acks are synchronous and only touch memory under a
//! lock that is never held across I/O.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::record::{CommitRecord, StartRecord};
use super::{assigned_at, GroupOptions};
use crate::adapter::group_store::{GroupStore, Letter, Tray};
use crate::adapter::{Adapter, AdapterError, Positions, ReadPage};
use crate::clock::now_ms;
use crate::consume::ShardSource;
use crate::error::{BusError, Result};
use crate::event::StoredEvent;
use crate::signal::Signal;

/// Records read per request.
const PAGE: usize = 512;
/// Longest wait on the store before looking again (new shards, other producers).
const MAX_WAIT: Duration = Duration::from_secs(2);
/// Acks are committed at most this long after they are made.
const COMMIT_DELAY: Duration = Duration::from_millis(50);
/// Least time between two scans of the deadlines.
const MIN_SCAN_GAP: Duration = Duration::from_millis(5);
/// Returned letters picked up per look.
const RETURNED_PAGE: usize = 256;
/// Renewals between looks for returned letters: listing them is the costliest request of a
/// renewal (JetStream lists the bucket's keys), and a slow renewal lets the membership lapse.
const RETURNED_EVERY: u64 = 5;
/// Bumped by `bus.redeliver` in this process: members look for returned letters at once
/// instead of at their next periodic look (members in other processes still wait for it).
pub(crate) static RETURNED_GEN: AtomicU64 = AtomicU64::new(0);
pub(crate) static RETURNED_WAKE: Notify = Notify::const_new();

/// Letters were put back for redelivery (by this process): wakes this process's members.
pub(crate) fn letters_returned() {
  RETURNED_GEN.fetch_add(1, Ordering::AcqRel);
  RETURNED_WAKE.notify_waiters();
}

/// Pages of returned letters read per look at most.
const RETURNED_PAGES_PER_LOOK: usize = 16;
const ERROR_BACKOFF_CAP: Duration = Duration::from_secs(5);
/// A read or wait on the store that takes longer than this is abandoned and issued again:
/// a request lost with a server restart must not stall the member silently.
const READ_BOUND: Duration = Duration::from_secs(10);

/// An event handed to the application, and how many times it has been delivered.
#[derive(Debug, Clone)]
pub struct Delivery {
  pub event: StoredEvent,
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

#[derive(Default)]
struct Counters {
  delivered: AtomicU64,
  acked: AtomicU64,
  nacked: AtomicU64,
  redelivered: AtomicU64,
  dead_lettered: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
  /// Read, waiting to be delivered.
  Queued,
  /// Delivered, waiting for its ack.
  Out,
  Done,
  /// Not to be delivered by this member (the shard is being handed over).
  Dropped,
}

struct Entry {
  id: String,
  pos: String,
  /// Kept until acked (redelivery and dead letters need it).
  event: Option<StoredEvent>,
  status: Status,
  deliveries: u32,
  /// Redeliver at this time (None: held by a worker, no deadline).
  due: Option<Instant>,
  nacked: bool,
}

/// A shard this member holds the lease of.
struct Owned {
  /// Distinguishes this ownership from an earlier one of the same shard.
  gen: u64,
  /// Being handed over since then: nothing new is delivered.
  draining: Option<Instant>,
  watermark: Option<String>,
  dirty: bool,
  read_pos: Option<String>,
  at_end: bool,
  remaining: Option<u64>,
  next_local: u64,
  entries: BTreeMap<u64, Entry>,
  by_id: HashMap<String, u64>,
  /// Acked past the watermark by an earlier owner: skipped when read.
  skip: HashSet<String>,
  /// Deliveries by earlier owners of events not read yet.
  counts: HashMap<String, u32>,
  renewed: Instant,
}

impl Owned {
  fn new(gen: u64, record: CommitRecord) -> Self {
    Owned {
      gen,
      draining: None,
      read_pos: record.watermark.clone(),
      watermark: record.watermark,
      dirty: false,
      at_end: false,
      remaining: None,
      next_local: 0,
      entries: BTreeMap::new(),
      by_id: HashMap::new(),
      skip: record.acked,
      counts: record.counts,
      renewed: Instant::now(),
    }
  }

  /// Moves the watermark over the finished prefix.
  fn advance(&mut self) {
    while let Some(first) = self.entries.first_entry() {
      if first.get().status != Status::Done {
        break;
      }
      let e = first.remove();
      self.by_id.remove(&e.id);
      self.watermark = Some(e.pos);
      self.dirty = true;
    }
  }

  fn record(&self) -> CommitRecord {
    let mut r = CommitRecord {
      watermark: self.watermark.clone(),
      acked: self.skip.clone(),
      counts: self.counts.clone(),
    };
    for e in self.entries.values() {
      if e.status == Status::Done {
        r.acked.insert(e.id.clone());
      } else if e.deliveries > 0 {
        r.counts.insert(e.id.clone(), e.deliveries);
      }
    }
    r
  }

  fn count(&self, status: Status) -> usize {
    self.entries.values().filter(|e| e.status == status).count()
  }
}

/// A returned letter being delivered again.
struct Returned {
  letter: Letter,
  status: Status,
  deliveries: u32,
  due: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ticket {
  Read { shard: u32, local: u64 },
  Letter { shard: u32, id: String },
}

#[derive(Default)]
struct State {
  shards: BTreeMap<u32, Owned>,
  /// Keyed by (shard, event id), as acks name them.
  returned: HashMap<(u32, String), Returned>,
  ready: VecDeque<Ticket>,
  /// Queued and Out entries (bounded by `maxInFlight`).
  held: usize,
  out: usize,
  closed: bool,
  commit_pending: bool,
  dead_out: Vec<Letter>,
  returned_done: Vec<String>,
  next_gen: u64,
  /// A look for returned letters stopped with more left: look again once there is room.
  returned_more: bool,
  /// The earliest deadline the coordinator must look at (a redelivery or dead letter).
  /// Lowered by deliveries and nacks; set by each scan.
  next_due: Option<Instant>,
}

impl State {
  /// Records a new deadline; true when it is earlier than every known one (the
  /// coordinator must wake to honour it).
  fn due_at(&mut self, due: Instant) -> bool {
    let earlier = self.next_due.is_none_or(|n| due < n);
    if earlier {
      self.next_due = Some(due);
    }
    earlier
  }
}

impl State {
  /// Where the entry `(shard, id)` is, if this member has it.
  fn find(&mut self, shard: u32, id: &str) -> Option<Found<'_>> {
    if let Some(o) = self.shards.get_mut(&shard) {
      if let Some(local) = o.by_id.get(id).copied() {
        return Some(Found::Read(o, local));
      }
    }
    self
      .returned
      .get_mut(&(shard, id.to_string()))
      .map(Found::Letter)
  }

  /// Stops delivering `shard`'s queued entries: they stay uncommitted for the next owner.
  fn drop_queued(&mut self, shard: u32) {
    let mut n = 0;
    if let Some(o) = self.shards.get_mut(&shard) {
      for e in o.entries.values_mut() {
        if e.status == Status::Queued {
          e.status = Status::Dropped;
          n += 1;
        }
      }
    }
    let before = self.returned.len();
    self
      .returned
      .retain(|(s, _), r| *s != shard || r.status != Status::Queued);
    n += before - self.returned.len();
    self.held -= n;
  }

  /// Forgets `shard` entirely (its lease is gone or handed over).
  fn forget(&mut self, shard: u32) {
    self.drop_queued(shard);
    if let Some(o) = self.shards.remove(&shard) {
      let out = o.count(Status::Out);
      self.held -= out;
      self.out -= out;
    }
    let out = self
      .returned
      .iter()
      .filter(|((s, _), r)| *s == shard && r.status == Status::Out)
      .count();
    self.returned.retain(|(s, _), _| *s != shard);
    self.held -= out;
    self.out -= out;
  }
}

enum Found<'a> {
  Read(&'a mut Owned, u64),
  Letter(&'a mut Returned),
}

struct Inner {
  opts: GroupOptions,
  adapter: Arc<dyn Adapter>,
  own: Arc<dyn ShardSource>,
  start: StartRecord,
  state: Mutex<State>,
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
  c: Counters,
  ticks: AtomicU64,
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
      "the {} adapter keeps no events, so it has no consumer groups: use memory, jetstream or redis",
      adapter.kind()
    ))
  })
}

impl Member {
  /// Joins the group (creating it at `from` when it is new) and starts the member's tasks.
  /// With `follows_bus` false the member ignores the bus's shutdown: its owner closes it.
  pub(crate) async fn start(
    opts: GroupOptions,
    adapter: Arc<dyn Adapter>,
    own: Arc<dyn ShardSource>,
    closing: Arc<Signal>,
    follows_bus: bool,
    rt: &tokio::runtime::Handle,
  ) -> Result<Member> {
    opts.validate()?;
    let groups = group_store(adapter.as_ref())?;
    claim_name(groups, &opts).await?;
    let proposal = if opts.from_latest {
      let shards = crate::consume::read_shards(adapter.as_ref(), own.all_ids()).await;
      let ends = adapter.end_positions(&shards).await?;
      StartRecord::Latest(crate::consume::cursor::latest(adapter.total_order(), ends))
    } else {
      StartRecord::Earliest
    };
    let start = StartRecord::decode(&groups.start(&opts.group, &proposal.encode()).await?);
    let member = Member {
      inner: Arc::new(Inner {
        opts,
        adapter,
        own,
        start,
        state: Mutex::new(State::default()),
        deliverable: Notify::new(),
        room: Notify::new(),
        wake: Notify::new(),
        closing,
        follows_bus,
        stop: Signal::new(),
        done: Arc::new(Signal::new()),
        c: Counters::default(),
        ticks: AtomicU64::new(0),
        #[cfg(feature = "test-hooks")]
        scans: AtomicU64::new(0),
      }),
    };
    // Join before the first renewal so that others count this member at once.
    member.tick().await;
    rt.spawn(member.clone().coordinate());
    rt.spawn(member.clone().read_loop());
    Ok(member)
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

  fn take(&self, st: &mut State, max: usize, hold: bool) -> Vec<Delivery> {
    let now = Instant::now();
    let due = if hold {
      None
    } else {
      Some(now + self.inner.opts.ack_wait)
    };
    let mut out = Vec::new();
    while out.len() < max {
      let Some(t) = st.ready.pop_front() else { break };
      let delivery = match t {
        Ticket::Read { shard, local } => {
          let Some(o) = st.shards.get_mut(&shard) else {
            continue;
          };
          let Some(e) = o.entries.get_mut(&local) else {
            continue;
          };
          if e.status != Status::Queued {
            continue;
          }
          e.status = Status::Out;
          e.deliveries += 1;
          e.due = due;
          e.nacked = false;
          let Some(event) = e.event.clone() else {
            continue;
          };
          Delivery {
            event,
            deliveries: e.deliveries,
          }
        }
        Ticket::Letter { shard, id } => {
          let Some(r) = st.returned.get_mut(&(shard, id)) else {
            continue;
          };
          if r.status != Status::Queued {
            continue;
          }
          r.status = Status::Out;
          r.deliveries += 1;
          r.due = due;
          Delivery {
            event: r.letter.event.clone(),
            deliveries: r.deliveries,
          }
        }
      };
      st.out += 1;
      if let Some(d) = due {
        if st.due_at(d) {
          self.inner.wake.notify_one();
        }
      }
      self.inner.c.delivered.fetch_add(1, Ordering::Relaxed);
      if delivery.deliveries > 1 {
        self.inner.c.redelivered.fetch_add(1, Ordering::Relaxed);
      }
      out.push(delivery);
    }
    out
  }

  /// Room for this many events wakes the reader: it reads pages, not one event per ack.
  fn refill(&self) -> usize {
    (self.inner.opts.max_in_flight / 4).clamp(1, PAGE)
  }

  /// One held event was released: wake the reader when that made room for a page.
  fn freed(&self, st: &State) {
    if st.held + self.refill() == self.inner.opts.max_in_flight {
      self.inner.room.notify_one();
    }
  }

  /// Marks that commit records changed; wakes the coordinator once per batch of changes.
  fn note_commit(&self, st: &mut State) {
    if !st.commit_pending {
      st.commit_pending = true;
      self.inner.wake.notify_one();
    }
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

  fn ack_locked(&self, st: &mut State, shard: u32, id: &str) -> bool {
    let acked = match st.find(shard, id) {
      Some(Found::Read(o, local)) => {
        let e = o.entries.get_mut(&local).expect("indexed entry");
        if e.status != Status::Out {
          return false;
        }
        e.status = Status::Done;
        e.event = None;
        o.advance();
        true
      }
      Some(Found::Letter(r)) => {
        if r.status != Status::Out {
          return false;
        }
        let letter_id = r.letter.id.clone();
        st.returned.remove(&(shard, id.to_string()));
        st.returned_done.push(letter_id);
        true
      }
      None => false,
    };
    if acked {
      st.out -= 1;
      st.held -= 1;
      self.inner.c.acked.fetch_add(1, Ordering::Relaxed);
      self.note_commit(st);
      self.freed(st);
    }
    acked
  }

  /// Redelivers a delivered event, not before `delay`.
  pub fn nack(&self, shard: u32, id: &str, delay: Duration) -> bool {
    let mut st = self.inner.state.lock();
    let at = Instant::now() + delay;
    let due = Some(at);
    let ok = match st.find(shard, id) {
      Some(Found::Read(o, local)) => {
        let e = o.entries.get_mut(&local).expect("indexed entry");
        let ok = e.status == Status::Out;
        if ok {
          e.due = due;
          e.nacked = true;
        }
        ok
      }
      Some(Found::Letter(r)) => {
        let ok = r.status == Status::Out;
        if ok {
          r.due = due;
        }
        ok
      }
      None => false,
    };
    if ok {
      self.inner.c.nacked.fetch_add(1, Ordering::Relaxed);
      // Only a deadline earlier than every known one needs the coordinator now; the rest
      // are found by the scan already due (a scan per nack was quadratic).
      if st.due_at(at) {
        self.inner.wake.notify_one();
      }
    }
    ok
  }

  /// Pushes a delivered event's ack deadline to `ackWaitMs` from now.
  pub fn touch(&self, shard: u32, id: &str) -> bool {
    let mut st = self.inner.state.lock();
    let due = Some(Instant::now() + self.inner.opts.ack_wait);
    match st.find(shard, id) {
      Some(Found::Read(o, local)) => {
        let e = o.entries.get_mut(&local).expect("indexed entry");
        if e.status == Status::Out && !e.nacked {
          e.due = due;
          return true;
        }
        false
      }
      Some(Found::Letter(r)) if r.status == Status::Out => {
        r.due = due;
        true
      }
      _ => false,
    }
  }

  /// A held event failed and will be tried again in place: counts one more delivery and
  /// returns the count (None when this member does not hold it).
  pub fn retrying(&self, shard: u32, id: &str) -> Option<u32> {
    let mut st = self.inner.state.lock();
    let n = match st.find(shard, id)? {
      Found::Read(o, local) => {
        let e = o.entries.get_mut(&local).expect("indexed entry");
        if e.status != Status::Out {
          return None;
        }
        e.deliveries += 1;
        o.dirty = true;
        e.deliveries
      }
      Found::Letter(r) => {
        if r.status != Status::Out {
          return None;
        }
        r.deliveries += 1;
        r.deliveries
      }
    };
    self.inner.c.redelivered.fetch_add(1, Ordering::Relaxed);
    self.note_commit(&mut st);
    Some(n)
  }

  /// Moves a held event to the dead letters with `reason`.
  pub fn dead_letter(&self, shard: u32, id: &str, reason: &str) -> bool {
    let mut st = self.inner.state.lock();
    let letter = match st.find(shard, id) {
      Some(Found::Read(o, local)) => {
        let e = o.entries.get_mut(&local).expect("indexed entry");
        if e.status != Status::Out {
          return false;
        }
        e.status = Status::Done;
        let letter = letter_of(e.event.take(), reason, e.deliveries);
        o.advance();
        letter
      }
      Some(Found::Letter(r)) => {
        if r.status != Status::Out {
          return false;
        }
        let mut letter = r.letter.clone();
        let old = std::mem::take(&mut letter.id);
        letter.reason = reason.to_string();
        letter.deliveries = r.deliveries;
        letter.time_ms = now_ms();
        st.returned.remove(&(shard, id.to_string()));
        st.returned_done.push(old);
        Some(letter)
      }
      None => return false,
    };
    st.dead_out.extend(letter);
    st.out -= 1;
    st.held -= 1;
    self.inner.c.dead_lettered.fetch_add(1, Ordering::Relaxed);
    self.note_commit(&mut st);
    self.freed(&st);
    true
  }

  /// A held event that was never handled goes back to the store uncounted (a worker
  /// closing with events it had not started): the next owner delivers it.
  pub fn give_back(&self, shard: u32, id: &str) {
    let mut st = self.inner.state.lock();
    let ok = match st.find(shard, id) {
      Some(Found::Read(o, local)) => {
        let e = o.entries.get_mut(&local).expect("indexed entry");
        let ok = e.status == Status::Out;
        if ok {
          e.status = Status::Dropped;
          e.deliveries -= 1;
          o.dirty = true;
        }
        ok
      }
      Some(Found::Letter(r)) => {
        let ok = r.status == Status::Out;
        if ok {
          st.returned.remove(&(shard, id.to_string()));
        }
        ok
      }
      None => false,
    };
    if ok {
      st.out -= 1;
      st.held -= 1;
      self.note_commit(&mut st);
      self.freed(&st);
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
      in_flight: st.out as u64,
      lag: st.held as u64 + st.shards.values().filter_map(|o| o.remaining).sum::<u64>(),
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

  // ---- the coordinator ----

  async fn coordinate(self) {
    let renew = self.inner.opts.renew_every();
    let mut next_tick = Instant::now() + renew;
    let mut commit_at: Option<Instant> = None;
    let mut failures = 0u32;
    let mut last_scan = Instant::now() - MIN_SCAN_GAP;
    let mut returned_gen = RETURNED_GEN.load(Ordering::Acquire);
    loop {
      if self.stopping() {
        break;
      }
      let wake = self.inner.wake.notified();
      tokio::pin!(wake);
      wake.as_mut().enable();
      let returned = RETURNED_WAKE.notified();
      tokio::pin!(returned);
      returned.as_mut().enable();
      let gen = RETURNED_GEN.load(Ordering::Acquire);
      if gen != returned_gen {
        returned_gen = gen;
        self.inner.state.lock().returned_more = true;
      }
      let now = Instant::now();
      if now >= next_tick {
        self.tick().await;
        next_tick = Instant::now() + jittered(renew);
      }
      // Deadlines are scanned when one has passed, at most every MIN_SCAN_GAP: a stream of
      // nacks (each lowering the deadline) costs a scan per gap, not one per nack.
      let due = self.inner.state.lock().next_due;
      let next_due = match due {
        Some(d) => {
          let now = Instant::now();
          let earliest = last_scan + MIN_SCAN_GAP;
          if d <= now && now >= earliest {
            last_scan = now;
            self.redeliver_due(now)
          } else {
            Some(d.max(earliest))
          }
        }
        None => None,
      };
      if self.inner.state.lock().commit_pending {
        let at = *commit_at.get_or_insert(now + COMMIT_DELAY);
        if Instant::now() >= at {
          commit_at = None;
          if self.flush().await.is_err() {
            // Keep the changes; try again after a backoff.
            failures += 1;
            commit_at =
              Some(Instant::now() + crate::retry::backoff(failures).min(ERROR_BACKOFF_CAP));
            self.inner.state.lock().commit_pending = true;
          } else {
            failures = 0;
          }
        }
      }
      let more_letters = {
        let st = self.inner.state.lock();
        st.returned_more && st.held + self.refill() <= self.inner.opts.max_in_flight
      };
      if more_letters {
        self.pick_up_returned().await;
      }
      let mut until = next_tick;
      for t in [next_due, commit_at].into_iter().flatten() {
        until = until.min(t);
      }
      tokio::select! {
        _ = tokio::time::sleep_until(until.into()) => {}
        _ = &mut wake => {}
        _ = &mut returned => {}
        _ = self.stopped() => {}
      }
    }
    self.leave().await;
  }

  /// Final hand-over: nothing more is delivered, acks so far are committed, leases are
  /// released and the member leaves. Events delivered and not acked go to the next owner.
  async fn leave(&self) {
    // Events nacked or past their deadline on their last delivery become dead letters now,
    // so the final commit writes them (the loop may have stopped before it got to them).
    self.redeliver_due(Instant::now());
    let shards: Vec<u32> = {
      let mut st = self.inner.state.lock();
      st.closed = true;
      let shards: Vec<u32> = st.shards.keys().copied().collect();
      for s in &shards {
        st.drop_queued(*s);
      }
      shards
    };
    self.inner.deliverable.notify_waiters();
    self.inner.room.notify_waiters();
    let store = self.store();
    let g = &self.inner.opts.group;
    let me = &self.inner.opts.member;
    for attempt in 1..=3u32 {
      if self.flush().await.is_ok() {
        break;
      }
      tokio::time::sleep(crate::retry::backoff(attempt)).await;
    }
    for s in shards {
      let _ = store.release(g, s, me).await;
    }
    let _ = store.leave(g, me).await;
    {
      let mut st = self.inner.state.lock();
      let ids: Vec<u32> = st.shards.keys().copied().collect();
      for s in ids {
        st.forget(s);
      }
    }
    self.inner.done.fire();
  }

  /// Refreshes what follows each held shard's read position, where only the store knows.
  async fn count_backlog(&self) {
    let asked: Vec<(u32, u64, Option<String>)> = {
      let st = self.inner.state.lock();
      st.shards
        .iter()
        .filter(|(_, o)| o.draining.is_none())
        .map(|(s, o)| (*s, o.gen, o.read_pos.clone()))
        .collect()
    };
    if asked.is_empty() {
      return;
    }
    let positions: Vec<(u32, Option<String>)> =
      asked.iter().map(|(s, _, p)| (*s, p.clone())).collect();
    let counts = self.store().backlog(&positions).await;
    let mut st = self.inner.state.lock();
    for ((s, gen, pos), count) in asked.into_iter().zip(counts) {
      if let (Some(o), Some(n)) = (st.shards.get_mut(&s), count) {
        // A page read meanwhile moved the position: its own count stands.
        if o.gen == gen && o.read_pos == pos {
          o.remaining = Some(n);
        }
      }
    }
  }

  /// This member's rank among the live members and their count. A store whose view lags
  /// its own heartbeat (JetStream) may not list it yet: it counts itself in when joined.
  async fn place(&self, joined: bool) -> std::result::Result<Option<(usize, usize)>, AdapterError> {
    let store = self.store();
    let (g, me) = (
      self.inner.opts.group.as_str(),
      self.inner.opts.member.as_str(),
    );
    if let Some(place) = store.rank(g, me).await? {
      return Ok(Some(place));
    }
    if !joined {
      return Ok(None);
    }
    let mut members = store.members(g).await?;
    let at = members.binary_search_by(|m| m.as_str().cmp(me));
    Ok(Some(match at {
      Ok(i) => (i, members.len()),
      Err(i) => {
        members.insert(i, me.to_string());
        (i, members.len())
      }
    }))
  }

  /// Membership, leases and the split; returned letters.
  async fn tick(&self) {
    let store = self.store();
    let opts = &self.inner.opts;
    let (g, me) = (opts.group.as_str(), opts.member.as_str());
    let joined = store.heartbeat(g, me, opts.lease).await.is_ok();
    let adapter = self.inner.adapter.as_ref();
    let shards = crate::consume::read_shards(adapter, self.inner.own.all_ids()).await;
    let owned: Vec<(u32, bool)> = {
      let st = self.inner.state.lock();
      st.shards
        .iter()
        .map(|(s, o)| (*s, o.draining.is_some()))
        .collect()
    };
    let mine: HashSet<u32> = match self.place(joined).await {
      Ok(Some((rank, count))) => assigned_at(&shards, rank, count).into_iter().collect(),
      Ok(None) => HashSet::new(),
      // Cannot tell who else is live: keep what is held, take nothing new.
      Err(_) => owned.iter().map(|(s, _)| *s).collect(),
    };
    // Renew what is held; hand over what is no longer ours.
    for (s, draining) in &owned {
      if !draining && !mine.contains(s) {
        let mut st = self.inner.state.lock();
        st.drop_queued(*s);
        if let Some(o) = st.shards.get_mut(s) {
          o.draining = Some(Instant::now());
        }
      }
      match store.lease(g, *s, me, opts.lease).await {
        Ok(true) => {
          if let Some(o) = self.inner.state.lock().shards.get_mut(s) {
            o.renewed = Instant::now();
          }
        }
        Ok(false) => {
          tracing::warn!(group = g, member = me, shard = *s, "lost the lease on shard {s} to another member (a renewal came too late); its unacked events go to the new owner");
          self.inner.state.lock().forget(*s)
        }
        Err(_) => {
          let mut st = self.inner.state.lock();
          let expired = st
            .shards
            .get(s)
            .is_some_and(|o| o.renewed.elapsed() >= opts.lease);
          if expired {
            tracing::warn!(
              group = g,
              member = me,
              shard = *s,
              "could not renew the lease on shard {s} within leaseMs; giving it up"
            );
            // Others may own it by now: stop delivering from it.
            st.forget(*s);
          }
        }
      }
    }
    self.finish_handovers().await;
    self.count_backlog().await;
    // Shards given up or lost released what they held.
    self.inner.room.notify_one();
    // Take what is ours and free.
    for s in mine {
      if owned.iter().any(|(o, _)| *o == s) || self.stopping() {
        continue;
      }
      if !matches!(store.lease(g, s, me, opts.lease).await, Ok(true)) {
        continue;
      }
      let record = match store.committed(g, s).await {
        Ok(Some(text)) => CommitRecord::decode(&text).unwrap_or_else(|| CommitRecord {
          // Unreadable: start over from the group's start (at least once).
          watermark: self.inner.start.position(s),
          ..Default::default()
        }),
        Ok(None) => CommitRecord {
          watermark: self.inner.start.position(s),
          ..Default::default()
        },
        Err(_) => {
          let _ = store.release(g, s, me).await;
          continue;
        }
      };
      tracing::info!(
        group = g,
        member = me,
        shard = s,
        from = record.watermark.as_deref().unwrap_or("start"),
        "took shard {s}"
      );
      let mut st = self.inner.state.lock();
      st.next_gen += 1;
      let gen = st.next_gen;
      st.shards.insert(s, Owned::new(gen, record));
      drop(st);
      self.inner.room.notify_one();
    }
    if self
      .inner
      .ticks
      .fetch_add(1, Ordering::Relaxed)
      .is_multiple_of(RETURNED_EVERY)
    {
      self.pick_up_returned().await;
    }
  }

  /// Shards being handed over are released once their delivered events are acked (or
  /// after `ackWaitMs`): a happy-path rebalance delivers nothing twice.
  async fn finish_handovers(&self) {
    let ack_wait = self.inner.opts.ack_wait;
    let ready: Vec<u32> = {
      let st = self.inner.state.lock();
      st.shards
        .iter()
        .filter(|(_, o)| {
          o.draining
            .is_some_and(|since| since.elapsed() >= ack_wait || o.count(Status::Out) == 0)
        })
        .map(|(s, _)| *s)
        .collect()
    };
    if ready.is_empty() {
      return;
    }
    if self.flush().await.is_err() {
      return;
    }
    let store = self.store();
    for s in ready {
      tracing::info!(group = %self.inner.opts.group, member = %self.inner.opts.member, shard = s, "handed shard {s} over, acks committed");
      self.inner.state.lock().forget(s);
      let _ = store
        .release(&self.inner.opts.group, s, &self.inner.opts.member)
        .await;
    }
  }

  /// Letters put back with `bus.redeliver` for shards this member reads, as many as there
  /// is room for. When more remain, `returned_more` asks the coordinator to look again as
  /// soon as room frees (not after the next RETURNED_EVERY renewals), so a bulk redeliver
  /// runs at processing speed.
  async fn pick_up_returned(&self) {
    {
      let mut st = self.inner.state.lock();
      // Letters acked but not yet removed from the store would be found again.
      if !st.returned_done.is_empty() || st.closed {
        st.returned_more = true;
        return;
      }
      st.returned_more = false;
    }
    let store = self.store();
    let mut after: Option<String> = None;
    let mut added = 0usize;
    for _ in 0..RETURNED_PAGES_PER_LOOK {
      let Ok(page) = store
        .letters(
          &self.inner.opts.group,
          Tray::Returned,
          after.as_deref(),
          RETURNED_PAGE,
        )
        .await
      else {
        return;
      };
      let mut st = self.inner.state.lock();
      for letter in page.letters {
        if st.held >= self.inner.opts.max_in_flight {
          break;
        }
        let shard = letter.event.shard;
        let active = st.shards.get(&shard).is_some_and(|o| o.draining.is_none());
        let key = (shard, letter.event.id.clone());
        if !active || st.returned.contains_key(&key) || st.closed {
          continue;
        }
        st.ready.push_back(Ticket::Letter {
          shard,
          id: key.1.clone(),
        });
        st.returned.insert(
          key,
          Returned {
            letter,
            status: Status::Queued,
            deliveries: 0,
            due: None,
          },
        );
        st.held += 1;
        added += 1;
      }
      let full = st.held >= self.inner.opts.max_in_flight;
      if !page.has_more || full {
        // More to take once room frees; letters of other members' shards are theirs.
        st.returned_more = page.has_more && added > 0;
        break;
      }
      after = page.next;
    }
    if added > 0 {
      self.inner.deliverable.notify_one();
    }
  }

  /// Requeues (or dead-letters) events whose deadline passed; returns the next deadline.
  fn redeliver_due(&self, now: Instant) -> Option<Instant> {
    #[cfg(feature = "test-hooks")]
    self.inner.scans.fetch_add(1, Ordering::Relaxed);
    let max = self.inner.opts.max_deliveries;
    let ack_wait_ms = self.inner.opts.ack_wait.as_millis();
    let mut st = self.inner.state.lock();
    let st = &mut *st;
    let mut next: Option<Instant> = None;
    let mut requeue: Vec<Ticket> = Vec::new();
    let mut dead: Vec<Letter> = Vec::new();
    let mut finished = 0usize;
    for (shard, o) in st.shards.iter_mut() {
      let mut advanced = false;
      for (local, e) in o.entries.iter_mut() {
        let Some(due) = e.due.filter(|_| e.status == Status::Out) else {
          continue;
        };
        if due > now {
          next = Some(next.map_or(due, |n| n.min(due)));
          continue;
        }
        e.due = None;
        if e.deliveries >= max {
          let reason = if e.nacked {
            format!("nacked on each of {} deliveries", e.deliveries)
          } else {
            format!(
              "not acked within ackWaitMs ({ack_wait_ms} ms) on each of {} deliveries",
              e.deliveries
            )
          };
          e.status = Status::Done;
          dead.extend(letter_of(e.event.take(), &reason, e.deliveries));
          finished += 1;
          advanced = true;
        } else {
          e.status = Status::Queued;
          requeue.push(Ticket::Read {
            shard: *shard,
            local: *local,
          });
        }
      }
      if advanced {
        o.advance();
      }
    }
    let mut letters_done = Vec::new();
    for ((shard, id), r) in st.returned.iter_mut() {
      let Some(due) = r.due.filter(|_| r.status == Status::Out) else {
        continue;
      };
      if due > now {
        next = Some(next.map_or(due, |n| n.min(due)));
        continue;
      }
      r.due = None;
      if r.deliveries >= max {
        let mut letter = r.letter.clone();
        letters_done.push((*shard, id.clone(), std::mem::take(&mut letter.id)));
        letter.reason = format!(
          "redelivered and not acked on each of {} deliveries",
          r.deliveries
        );
        letter.deliveries = r.deliveries;
        letter.time_ms = now_ms();
        dead.push(letter);
      } else {
        r.status = Status::Queued;
        requeue.push(Ticket::Letter {
          shard: *shard,
          id: id.clone(),
        });
      }
    }
    for (shard, id, letter_id) in letters_done {
      st.returned.remove(&(shard, id));
      st.returned_done.push(letter_id);
      finished += 1;
    }
    let n_requeued = requeue.len();
    // Redeliveries go first, in read order.
    for t in requeue.into_iter().rev() {
      st.ready.push_front(t);
    }
    st.out -= n_requeued + finished;
    st.held -= finished;
    if finished > 0 {
      self
        .inner
        .c
        .dead_lettered
        .fetch_add(dead.len() as u64, Ordering::Relaxed);
      st.dead_out.extend(dead);
      if !st.commit_pending {
        st.commit_pending = true;
      }
      self.inner.room.notify_one();
    }
    if n_requeued > 0 {
      self.inner.deliverable.notify_one();
    }
    st.next_due = next;
    next
  }

  /// Stores new letters, removes finished returned ones, then writes the commit records
  /// that changed. A record whose lease was lost is not written, and the shard is dropped.
  async fn flush(&self) -> std::result::Result<(), AdapterError> {
    let (dead, done, records) = {
      let mut st = self.inner.state.lock();
      st.commit_pending = false;
      let dead = std::mem::take(&mut st.dead_out);
      let done = std::mem::take(&mut st.returned_done);
      let mut records = Vec::new();
      for (s, o) in st.shards.iter_mut() {
        if o.dirty {
          o.dirty = false;
          records.push((*s, o.gen, o.record().encode()));
        }
      }
      (dead, done, records)
    };
    let store = self.store();
    let g = &self.inner.opts.group;
    let restore = |dead: Vec<Letter>, done: Vec<String>, records: &[(u32, u64, String)]| {
      let mut st = self.inner.state.lock();
      let mut d = dead;
      d.append(&mut st.dead_out);
      st.dead_out = d;
      st.returned_done.extend(done);
      for (s, gen, _) in records {
        if let Some(o) = st.shards.get_mut(s).filter(|o| o.gen == *gen) {
          o.dirty = true;
        }
      }
    };
    if !dead.is_empty() {
      if let Err(e) = store.put_letters(g, Tray::Dead, &dead).await {
        restore(dead, done, &records);
        return Err(e);
      }
    }
    if !done.is_empty() {
      if let Err(e) = store.take_letters(g, Tray::Returned, &done).await {
        restore(Vec::new(), done, &records);
        return Err(e);
      }
    }
    let me = &self.inner.opts.member;
    let mut failed = None;
    for (i, (s, gen, text)) in records.iter().enumerate() {
      match store.commit(g, *s, me, text).await {
        Ok(true) => {}
        Ok(false) => {
          let mut st = self.inner.state.lock();
          if st.shards.get(s).is_some_and(|o| o.gen == *gen) {
            st.forget(*s);
          }
        }
        Err(e) => {
          failed = Some((i, e));
          break;
        }
      }
    }
    if let Some((i, e)) = failed {
      restore(Vec::new(), Vec::new(), &records[i..]);
      return Err(e);
    }
    Ok(())
  }

  // ---- the reader ----

  async fn read_loop(self) {
    let mut failures = 0u32;
    loop {
      if self.stopping() {
        return;
      }
      let room = self.inner.room.notified();
      tokio::pin!(room);
      room.as_mut().enable();
      let (space, targets, waiting) = {
        let st = self.inner.state.lock();
        if st.closed {
          return;
        }
        let space = self.inner.opts.max_in_flight.saturating_sub(st.held);
        let active = st.shards.iter().filter(|(_, o)| o.draining.is_none());
        let targets: Vec<(u32, u64, Option<String>)> = active
          .clone()
          .filter(|(_, o)| !o.at_end)
          .map(|(s, o)| (*s, o.gen, o.read_pos.clone()))
          .collect();
        let waiting: Positions = active
          .filter_map(|(s, o)| o.read_pos.clone().map(|p| (*s, p)))
          .collect();
        let ids: Vec<u32> = st
          .shards
          .iter()
          .filter(|(_, o)| o.draining.is_none())
          .map(|(s, _)| *s)
          .collect();
        (space, targets, (ids, waiting))
      };
      if space < self.refill() || (targets.is_empty() && waiting.0.is_empty()) {
        tokio::select! {
          _ = &mut room => {}
          _ = self.stopped() => {}
        }
        continue;
      }
      if targets.is_empty() {
        let (ids, positions) = waiting;
        let wait = self.inner.adapter.wait_for_data(&ids, &positions, MAX_WAIT);
        tokio::select! {
          _ = tokio::time::timeout(MAX_WAIT + READ_BOUND, wait) => {}
          _ = &mut room => {}
          _ = self.stopped() => {}
        }
        let mut st = self.inner.state.lock();
        for o in st.shards.values_mut() {
          o.at_end = false;
        }
        continue;
      }
      let per_shard = (space / targets.len()).clamp(1, PAGE);
      for (shard, gen, pos) in targets {
        let read = self.inner.adapter.read(shard, pos.as_deref(), per_shard);
        let read = tokio::select! {
          r = tokio::time::timeout(READ_BOUND, read) => r,
          _ = self.stopped() => return,
        };
        match read {
          Ok(Ok(page)) => {
            failures = 0;
            self.accept(shard, gen, pos, page);
          }
          // A failed read, or one past its bound: back off, then read again.
          Ok(Err(_)) | Err(_) => {
            failures += 1;
            let d = crate::retry::backoff(failures).min(ERROR_BACKOFF_CAP);
            tokio::select! {
              _ = tokio::time::sleep(d) => {}
              _ = self.stopped() => {}
            }
            break;
          }
        }
      }
    }
  }

  /// Adds a page read from `shard` at `pos`, unless the shard changed hands meanwhile.
  fn accept(&self, shard: u32, gen: u64, pos: Option<String>, page: ReadPage) {
    let filter = self.inner.opts.filter.as_ref();
    let mut st = self.inner.state.lock();
    let st = &mut *st;
    let Some(o) = st.shards.get_mut(&shard) else {
      return;
    };
    if o.gen != gen || o.read_pos != pos || o.draining.is_some() {
      return;
    }
    let mut queued = 0usize;
    let examined = page.events.len();
    for ev in page.events {
      let local = o.next_local;
      o.next_local += 1;
      let done = o.skip.remove(&ev.id) || !filter.is_none_or(|f| f.matches_event(&ev));
      let deliveries = o.counts.remove(&ev.id).unwrap_or(0);
      let entry = Entry {
        id: ev.id.clone(),
        pos: ev.position.clone(),
        event: (!done).then_some(ev),
        status: if done { Status::Done } else { Status::Queued },
        deliveries,
        due: None,
        nacked: false,
      };
      if !done {
        st.ready.push_back(Ticket::Read { shard, local });
        queued += 1;
      }
      o.by_id.insert(entry.id.clone(), local);
      o.entries.insert(local, entry);
    }
    if let Some(next) = page.next {
      o.read_pos = Some(next);
    }
    o.at_end = !page.has_more;
    o.remaining = match page.remaining {
      Some(r) => Some(r),
      None if o.at_end => Some(0),
      // The store counts at renewals only (Redis): count this page off until the next.
      None => o.remaining.map(|r| r.saturating_sub(examined as u64)),
    };
    o.advance();
    let dirty = o.dirty;
    st.held += queued;
    if dirty {
      self.note_commit(st);
    }
    if queued > 0 {
      self.inner.deliverable.notify_one();
    }
  }
}

/// Refuses a member name another live member uses: both would own the same shards and
/// handle every event twice. A name still listed may be a crashed member's (its entry
/// expires within `leaseMs`) or a live one's (renewed every third of it), so the entry is
/// watched for up to a lease before the join is refused.
async fn claim_name(store: &dyn GroupStore, opts: &GroupOptions) -> Result<()> {
  let (g, me) = (opts.group.as_str(), opts.member.as_str());
  let deadline = tokio::time::Instant::now() + opts.lease + opts.renew_every();
  loop {
    if store.rank(g, me).await?.is_none() {
      return Ok(());
    }
    if tokio::time::Instant::now() >= deadline {
      return Err(BusError::config(format!(
        "member {me:?} is already a live member of group {g:?} (in this or another process); give each member a unique name (or leave member unset for a random one)"
      )));
    }
    tokio::time::sleep(opts.renew_every().min(Duration::from_millis(250))).await;
  }
}

/// A renewal period shortened by up to a tenth at random: members that joined together
/// drift apart instead of renewing in step (on JetStream, in step means CAS conflicts on
/// the one member list). Earlier, never later, so leases are renewed as often as before.
fn jittered(renew: Duration) -> Duration {
  let tenth = (renew.as_micros() / 10) as u64;
  if tenth == 0 {
    return renew;
  }
  renew - Duration::from_micros(crate::random::random_u64() % tenth)
}

fn letter_of(event: Option<StoredEvent>, reason: &str, deliveries: u32) -> Option<Letter> {
  event.map(|event| Letter {
    id: String::new(),
    event,
    reason: reason.to_string(),
    deliveries,
    time_ms: now_ms(),
    cut: None,
  })
}

//! One owned shard in the ledger: its entries in read order, the watermark over the
//! finished prefix, and what an earlier owner left in the commit record.

use super::*;

pub(super) struct Entry {
  pub(super) id: String,
  pub(super) pos: String,
  /// Kept until acked (redelivery and dead letters need it).
  pub(super) event: Option<Arc<StoredEvent>>,
  pub(super) status: Status,
  pub(super) deliveries: u32,
  /// Redeliver at this time (None: held by a worker, no deadline).
  pub(super) due: Option<Instant>,
  pub(super) nacked: bool,
}

/// A shard's entries in read order. Locals are consecutive and only the finished prefix
/// is removed, so a deque indexed from the first live local does what a sorted map would,
/// without moving entries around on every removal.
#[derive(Default)]
pub(super) struct Entries {
  /// The local of `items[0]`.
  first: u64,
  items: VecDeque<Entry>,
}

impl Entries {
  pub(super) fn get_mut(&mut self, local: &u64) -> Option<&mut Entry> {
    let at = local.checked_sub(self.first)?;
    self.items.get_mut(usize::try_from(at).ok()?)
  }

  /// Appends the entry read next; `local` must follow the last one.
  pub(super) fn push(&mut self, local: u64, entry: Entry) {
    if self.items.is_empty() {
      self.first = local;
    }
    debug_assert_eq!(local, self.first + self.items.len() as u64);
    self.items.push_back(entry);
  }

  /// Removes and returns the first entry if it is done.
  fn pop_done(&mut self) -> Option<Entry> {
    if self.items.front()?.status != Status::Done {
      return None;
    }
    self.first += 1;
    self.items.pop_front()
  }

  pub(super) fn values(&self) -> impl Iterator<Item = &Entry> {
    self.items.iter()
  }

  pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
    self.items.iter_mut()
  }

  pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut Entry)> {
    let first = self.first;
    (first..).zip(self.items.iter_mut())
  }
}

/// A shard this member holds the lease of.
pub(in crate::group::member) struct Owned {
  /// Distinguishes this ownership from an earlier one of the same shard.
  pub gen: u64,
  /// Being handed over since then: nothing new is delivered.
  pub draining: Option<Instant>,
  pub(super) watermark: Option<String>,
  pub(super) dirty: bool,
  pub read_pos: Option<String>,
  pub at_end: bool,
  pub remaining: Option<u64>,
  pub renewed: Instant,
  pub(super) next_local: u64,
  pub(super) entries: Entries,
  /// Ids are the store's (not chosen by producers): a fast hash is safe here.
  pub(super) by_id: rustc_hash::FxHashMap<String, u64>,
  /// Acked past the watermark by an earlier owner: skipped when read.
  pub(super) skip: HashSet<String>,
  /// Deliveries by earlier owners of events not read yet.
  pub(super) counts: HashMap<String, u32>,
}

impl Owned {
  pub(super) fn new(gen: u64, record: CommitRecord) -> Self {
    Owned {
      gen,
      draining: None,
      read_pos: record.watermark.clone(),
      watermark: record.watermark,
      dirty: false,
      at_end: false,
      remaining: None,
      renewed: Instant::now(),
      next_local: 0,
      entries: Entries::default(),
      by_id: Default::default(),
      skip: record.acked,
      counts: record.counts,
    }
  }

  /// Moves the watermark over the finished prefix.
  pub(super) fn advance(&mut self) {
    while let Some(e) = self.entries.pop_done() {
      self.by_id.remove(&e.id);
      self.watermark = Some(e.pos);
      self.dirty = true;
    }
  }

  pub(super) fn record(&self) -> CommitRecord {
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

  pub(in crate::group::member) fn count(&self, status: Status) -> usize {
    self.entries.values().filter(|e| e.status == status).count()
  }
}

impl Ledger {
  /// Adds a page read from `shard` at `pos`, unless the shard changed hands or moved on
  /// meanwhile. Events acked by an earlier owner or not matching `filter` are done at
  /// once. Returns how many were queued and whether the commit record changed.
  pub fn accept(
    &mut self,
    shard: u32,
    gen: u64,
    pos: Option<String>,
    page: ReadPage,
    filter: Option<&Filter>,
  ) -> Option<(usize, bool)> {
    let o = self.shards.get_mut(&shard)?;
    if o.gen != gen || o.read_pos != pos || o.draining.is_some() {
      return None;
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
        event: (!done).then(|| Arc::new(ev)),
        status: if done { Status::Done } else { Status::Queued },
        deliveries,
        due: None,
        nacked: false,
      };
      if !done {
        self.ready.push_back(Ticket::Read { shard, local });
        queued += 1;
      }
      o.by_id.insert(entry.id.clone(), local);
      o.entries.push(local, entry);
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
    self.held += queued;
    Some((queued, dirty))
  }
}

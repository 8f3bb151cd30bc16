//! The delivery ledger of one member: per owned shard, the entries read and not yet
//! committed, in read order; the returned letters being delivered again; the queue of
//! what is ready to deliver; and what the next commit must write.
//!
//! Plain synchronous code, used under the member's lock: no I/O, no tasks, no wake-ups.
//! Methods say what happened and the member wakes its tasks from that. The two bounds of
//! a member are counted here and only here: `held` (queued or delivered: at most
//! `maxInFlight`) and `out` (delivered and not settled).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::Delivery;
use crate::adapter::group_store::Letter;
use crate::adapter::ReadPage;
use crate::clock::now_ms;
use crate::consume::filter::Filter;
use crate::event::StoredEvent;
use crate::group::record::CommitRecord;

mod commits;
mod deadlines;
mod owned;
mod returned;
#[cfg(test)]
mod tests;

pub(super) use self::owned::Owned;
pub(super) use self::returned::Admit;
use self::returned::{dead_again, Returned};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
  /// Read, waiting to be delivered.
  Queued,
  /// Delivered, waiting for its ack.
  Out,
  Done,
  /// Not to be delivered by this member (the shard is being handed over).
  Dropped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ticket {
  Read { shard: u32, local: u64 },
  Letter { shard: u32, id: String },
}

enum Found<'a> {
  Read(&'a mut Owned, u64),
  Letter(&'a mut Returned),
}

#[derive(Default)]
pub(super) struct Ledger {
  pub shards: BTreeMap<u32, Owned>,
  /// Keyed by (shard, event id), as acks name them.
  returned: HashMap<(u32, String), Returned>,
  ready: VecDeque<Ticket>,
  /// Queued and Out entries (bounded by `maxInFlight`).
  held: usize,
  out: usize,
  pub closed: bool,
  pub commit_pending: bool,
  dead_out: Vec<Letter>,
  returned_done: Vec<String>,
  next_gen: u64,
  /// A look for returned letters stopped with more left: look again once there is room.
  pub returned_more: bool,
  /// The earliest deadline the coordinator must look at (a redelivery or dead letter).
  /// Lowered by deliveries and nacks; set by each scan.
  pub next_due: Option<Instant>,
}

impl Ledger {
  /// Events queued or delivered, not yet settled.
  pub fn held(&self) -> usize {
    self.held
  }

  /// Events delivered and not yet settled.
  pub fn out(&self) -> usize {
    self.out
  }

  /// Held events plus those stored and not yet read, where the store said how many.
  pub fn lag(&self) -> u64 {
    self.held as u64
      + self
        .shards
        .values()
        .filter_map(|o| o.remaining)
        .sum::<u64>()
  }

  /// One delivered event is settled (acked, dead-lettered or given back).
  fn settle_one(&mut self) {
    self.out -= 1;
    self.held -= 1;
  }

  /// Marks that commit records changed; true when none was pending (wake the committer).
  pub fn mark_commit(&mut self) -> bool {
    !std::mem::replace(&mut self.commit_pending, true)
  }

  /// Records a new deadline; true when it is earlier than every known one (the
  /// coordinator must wake to honour it).
  pub fn due_at(&mut self, due: Instant) -> bool {
    let earlier = self.next_due.is_none_or(|n| due < n);
    if earlier {
      self.next_due = Some(due);
    }
    earlier
  }

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

  /// Starts owning `shard` from its commit record.
  pub fn take_shard(&mut self, shard: u32, record: CommitRecord) {
    self.next_gen += 1;
    self.shards.insert(shard, Owned::new(self.next_gen, record));
  }

  /// Starts handing `shard` over: its queued entries are not delivered any more.
  pub fn drain(&mut self, shard: u32) {
    self.drop_queued(shard);
    if let Some(o) = self.shards.get_mut(&shard) {
      o.draining = Some(Instant::now());
    }
  }

  /// `shard` is being handed over and none of its delivered events is out any more.
  pub fn drained(&self, shard: u32) -> bool {
    self
      .shards
      .get(&shard)
      .is_some_and(|o| o.draining.is_some() && o.count(Status::Out) == 0)
  }

  /// Some shard being handed over can go now.
  pub fn handover_ready(&self) -> bool {
    self.shards.keys().any(|s| self.drained(*s))
  }

  /// Stops delivering `shard`'s queued entries: they stay uncommitted for the next owner.
  pub fn drop_queued(&mut self, shard: u32) {
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
  pub fn forget(&mut self, shard: u32) {
    self.drop_queued(shard);
    let mut out = self
      .shards
      .remove(&shard)
      .map_or(0, |o| o.count(Status::Out));
    out += self
      .returned
      .iter()
      .filter(|((s, _), r)| *s == shard && r.status == Status::Out)
      .count();
    self.returned.retain(|(s, _), _| *s != shard);
    self.held -= out;
    self.out -= out;
  }

  /// Forgets every shard (the member left).
  pub fn forget_all(&mut self) {
    let ids: Vec<u32> = self.shards.keys().copied().collect();
    for s in ids {
      self.forget(s);
    }
  }

  /// Delivers up to `max` ready events, redeliveries first. `due`: their ack deadline
  /// (None: a worker holds them). The flag is true when that deadline is the earliest.
  pub fn take(&mut self, max: usize, due: Option<Instant>) -> (Vec<Delivery>, bool) {
    let mut out = Vec::new();
    let mut earlier = false;
    while out.len() < max {
      let Some(t) = self.ready.pop_front() else {
        break;
      };
      let delivery = match t {
        Ticket::Read { shard, local } => {
          let Some(e) = self
            .shards
            .get_mut(&shard)
            .and_then(|o| o.entries.get_mut(&local))
          else {
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
          let Some(r) = self.returned.get_mut(&(shard, id)) else {
            continue;
          };
          if r.status != Status::Queued {
            continue;
          }
          r.status = Status::Out;
          r.deliveries += 1;
          r.due = due;
          Delivery {
            event: Arc::new(r.letter.event.clone()),
            deliveries: r.deliveries,
          }
        }
      };
      self.out += 1;
      if let Some(d) = due {
        earlier |= self.due_at(d);
      }
      out.push(delivery);
    }
    (out, earlier)
  }

  /// Settles a delivered event as acked. False when this member does not hold it.
  pub fn ack(&mut self, shard: u32, id: &str) -> bool {
    let acked = match self.find(shard, id) {
      Some(Found::Read(o, local)) => {
        let e = o.entries.get_mut(&local).expect("indexed entry");
        if e.status != Status::Out {
          return false;
        }
        e.status = Status::Done;
        e.event = None;
        // The record changes even when the watermark does not: an ack out of order is
        // committed in the record's acked ids, not left until the events before it are.
        o.dirty = true;
        o.advance();
        true
      }
      Some(Found::Letter(r)) => {
        if r.status != Status::Out {
          return false;
        }
        let letter_id = r.letter.id.clone();
        self.returned.remove(&(shard, id.to_string()));
        self.returned_done.push(letter_id);
        true
      }
      None => false,
    };
    if acked {
      self.settle_one();
    }
    acked
  }

  /// Sets a delivered event to be redelivered at `at`. None when this member does not
  /// hold it; else whether `at` is now the earliest deadline.
  pub fn nack(&mut self, shard: u32, id: &str, at: Instant) -> Option<bool> {
    match self.find(shard, id)? {
      Found::Read(o, local) => {
        let e = o.entries.get_mut(&local).expect("indexed entry");
        if e.status != Status::Out {
          return None;
        }
        e.due = Some(at);
        e.nacked = true;
      }
      Found::Letter(r) => {
        if r.status != Status::Out {
          return None;
        }
        r.due = Some(at);
      }
    }
    // Only a deadline earlier than every known one needs the coordinator now; the rest
    // are found by the scan already due (a scan per nack was quadratic).
    Some(self.due_at(at))
  }

  /// Moves a delivered event's ack deadline to `due` (not after a nack).
  pub fn touch(&mut self, shard: u32, id: &str, due: Instant) -> bool {
    match self.find(shard, id) {
      Some(Found::Read(o, local)) => {
        let e = o.entries.get_mut(&local).expect("indexed entry");
        if e.status == Status::Out && !e.nacked {
          e.due = Some(due);
          return true;
        }
        false
      }
      Some(Found::Letter(r)) if r.status == Status::Out => {
        r.due = Some(due);
        true
      }
      _ => false,
    }
  }

  /// A held event failed and is tried again in place: one more delivery, counted in the
  /// commit record. Returns the count, None when this member does not hold it.
  pub fn retrying(&mut self, shard: u32, id: &str) -> Option<u32> {
    match self.find(shard, id)? {
      Found::Read(o, local) => {
        let e = o.entries.get_mut(&local).expect("indexed entry");
        if e.status != Status::Out {
          return None;
        }
        e.deliveries += 1;
        o.dirty = true;
        Some(e.deliveries)
      }
      Found::Letter(r) => {
        if r.status != Status::Out {
          return None;
        }
        r.deliveries += 1;
        Some(r.deliveries)
      }
    }
  }

  /// Settles a delivered event as a dead letter with `reason` (stored by the next commit).
  pub fn dead_letter(&mut self, shard: u32, id: &str, reason: &str) -> bool {
    let letter = match self.find(shard, id) {
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
        let (letter, old) = dead_again(r, reason.to_string());
        self.returned.remove(&(shard, id.to_string()));
        self.returned_done.push(old);
        Some(letter)
      }
      None => return false,
    };
    self.dead_out.extend(letter);
    self.settle_one();
    true
  }

  /// A delivered event that was never handled goes back uncounted: this member will not
  /// deliver it again, the next owner of its shard will.
  pub fn give_back(&mut self, shard: u32, id: &str) -> bool {
    let ok = match self.find(shard, id) {
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
          self.returned.remove(&(shard, id.to_string()));
        }
        ok
      }
      None => false,
    };
    if ok {
      self.settle_one();
    }
    ok
  }
}

fn letter_of(event: Option<Arc<StoredEvent>>, reason: &str, deliveries: u32) -> Option<Letter> {
  event.map(|event| Letter {
    id: String::new(),
    event: Arc::unwrap_or_clone(event),
    reason: reason.to_string(),
    deliveries,
    time_ms: now_ms(),
    cut: None,
  })
}

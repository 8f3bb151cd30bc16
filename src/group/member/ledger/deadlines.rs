//! Deadlines: events not acked in time (or nacked) come back, or become dead letters
//! once they used up their deliveries.

use super::*;

/// What a scan of the deadlines did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(in crate::group::member) struct Scan {
  /// The earliest deadline still ahead.
  pub next: Option<Instant>,
  /// Events queued for delivery again.
  pub requeued: usize,
  /// Events that used up their deliveries and left the ledger...
  pub finished: usize,
  /// ...of which this many became dead letters (all but those without an event).
  pub dead: usize,
}

impl Ledger {
  /// Requeues events whose deadline passed, or dead-letters those that used up
  /// `max_deliveries`; redeliveries go first, in read order.
  pub fn scan_due(&mut self, now: Instant, max_deliveries: u32, ack_wait_ms: u128) -> Scan {
    let mut next: Option<Instant> = None;
    let mut requeue: Vec<Ticket> = Vec::new();
    let mut dead: Vec<Letter> = Vec::new();
    let mut finished = 0usize;
    let mut soonest = |due: Instant| next = Some(next.map_or(due, |n: Instant| n.min(due)));
    for (shard, o) in self.shards.iter_mut() {
      let mut advanced = false;
      for (local, e) in o.entries.iter_mut() {
        let Some(due) = e.due.filter(|_| e.status == Status::Out) else {
          continue;
        };
        if due > now {
          soonest(due);
          continue;
        }
        e.due = None;
        if e.deliveries >= max_deliveries {
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
            local,
          });
        }
      }
      if advanced {
        o.advance();
      }
    }
    let mut letters_done = Vec::new();
    for ((shard, id), r) in self.returned.iter_mut() {
      let Some(due) = r.due.filter(|_| r.status == Status::Out) else {
        continue;
      };
      if due > now {
        soonest(due);
        continue;
      }
      r.due = None;
      if r.deliveries >= max_deliveries {
        let reason = format!(
          "redelivered and not acked on each of {} deliveries",
          r.deliveries
        );
        let (letter, old) = dead_again(r, reason);
        letters_done.push((*shard, id.clone(), old));
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
      self.returned.remove(&(shard, id));
      self.returned_done.push(letter_id);
      finished += 1;
    }
    let requeued = requeue.len();
    for t in requeue.into_iter().rev() {
      self.ready.push_front(t);
    }
    self.out -= requeued + finished;
    self.held -= finished;
    let dead_count = dead.len();
    if finished > 0 {
      self.dead_out.extend(dead);
      self.commit_pending = true;
    }
    self.next_due = next;
    Scan {
      next,
      requeued,
      finished,
      dead: dead_count,
    }
  }
}

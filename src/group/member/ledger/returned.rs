//! Returned letters (moved back by `bus.redeliver`) delivered again by this member.

use super::*;

/// A returned letter being delivered again.
pub(super) struct Returned {
  pub(super) letter: Letter,
  pub(super) status: Status,
  pub(super) deliveries: u32,
  pub(super) due: Option<Instant>,
}

/// What became of a returned letter offered to the ledger.
#[derive(Debug, PartialEq, Eq)]
pub(in crate::group::member) enum Admit {
  Added,
  /// Not this member's to deliver (shard not owned or handed over) or already held.
  Skipped,
  /// `maxInFlight` reached.
  Full,
}

impl Ledger {
  /// Whether returned letters must not be picked up now: letters acked but not yet
  /// removed from the store would be found again, and a closed member takes nothing.
  pub fn returned_busy(&self) -> bool {
    !self.returned_done.is_empty() || self.closed
  }

  /// Offers a returned letter for delivery, within `max_in_flight` held events.
  pub fn admit(&mut self, letter: Letter, max_in_flight: usize) -> Admit {
    if self.held >= max_in_flight {
      return Admit::Full;
    }
    let shard = letter.event.shard;
    let active = self
      .shards
      .get(&shard)
      .is_some_and(|o| o.draining.is_none());
    let key = (shard, letter.event.id.clone());
    if !active || self.returned.contains_key(&key) || self.closed {
      return Admit::Skipped;
    }
    self.ready.push_back(Ticket::Letter {
      shard,
      id: key.1.clone(),
    });
    self.returned.insert(
      key,
      Returned {
        letter,
        status: Status::Queued,
        deliveries: 0,
        due: None,
      },
    );
    self.held += 1;
    Admit::Added
  }
}

/// A returned letter that used up its deliveries, as a dead letter again; and the id it
/// had in the returned tray (to remove it there).
pub(super) fn dead_again(r: &Returned, reason: String) -> (Letter, String) {
  let mut letter = r.letter.clone();
  let old = std::mem::take(&mut letter.id);
  letter.reason = reason;
  letter.deliveries = r.deliveries;
  letter.time_ms = now_ms();
  (letter, old)
}

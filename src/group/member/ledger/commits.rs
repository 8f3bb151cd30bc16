//! What the next commit must write, and putting it back when the write fails.

use super::*;

/// What a commit must write: letters to store, returned letters to remove, and the shards
/// whose commit record changed as `(shard, gen, record)`.
#[derive(Default)]
pub(in crate::group::member) struct Changes {
  pub dead: Vec<Letter>,
  pub done: Vec<String>,
  pub records: Vec<(u32, u64, String)>,
}

impl Ledger {
  /// Takes what the next commit must write; `restore` puts it back if that fails.
  pub fn changes(&mut self) -> Changes {
    self.commit_pending = false;
    let mut records = Vec::new();
    for (s, o) in self.shards.iter_mut() {
      if o.dirty {
        o.dirty = false;
        records.push((*s, o.gen, o.record().encode()));
      }
    }
    Changes {
      dead: std::mem::take(&mut self.dead_out),
      done: std::mem::take(&mut self.returned_done),
      records,
    }
  }

  /// Writes `shard`'s record at the next flush even when nothing changed: a hand-over
  /// ends with its position in the store, also when the store had lost it.
  pub fn rewrite_commit(&mut self, shard: u32) {
    if let Some(o) = self.shards.get_mut(&shard) {
      o.dirty = true;
    }
  }

  /// Puts back changes a commit could not write (before any made since).
  pub fn restore(&mut self, dead: Vec<Letter>, done: Vec<String>, records: &[(u32, u64, String)]) {
    let mut d = dead;
    d.append(&mut self.dead_out);
    self.dead_out = d;
    self.returned_done.extend(done);
    for (s, gen, _) in records {
      if let Some(o) = self.shards.get_mut(s).filter(|o| o.gen == *gen) {
        o.dirty = true;
      }
    }
  }

  /// The store refused a commit of `shard` (the lease is gone): forget it if it is still
  /// the same ownership.
  pub fn commit_refused(&mut self, shard: u32, gen: u64) {
    if self.shards.get(&shard).is_some_and(|o| o.gen == gen) {
      self.forget(shard);
    }
  }
}

//! Writing what a member must keep: new dead letters, then the removal of finished
//! returned letters, then the commit records that changed. In that order, so a committed
//! position never passes an event that is neither acked nor stored as a letter.

use super::Member;
use crate::adapter::group_store::Tray;
use crate::adapter::AdapterError;

impl Member {
  /// Writes the changes of the ledger. A record whose lease another member holds is not
  /// written, and the shard is dropped; on an error, what was not written is kept for the
  /// next try.
  pub(super) async fn flush(&self) -> Result<(), AdapterError> {
    let changes = self.inner.state.lock().changes();
    let (dead, done, records) = (changes.dead, changes.done, changes.records);
    let store = self.store();
    let g = &self.inner.opts.group;
    let restore = |dead, done, records: &[(u32, u64, String)]| {
      self.inner.state.lock().restore(dead, done, records);
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
    for (i, (s, gen, text)) in records.iter().enumerate() {
      match store.commit(g, *s, me, text).await {
        Ok(true) => {}
        Ok(false) if self.lease_lost_by_store(*s).await => {
          // Taken again: write the record now, as the refused commit would have.
          if !matches!(store.commit(g, *s, me, text).await, Ok(true)) {
            self.inner.state.lock().commit_refused(*s, *gen);
          }
        }
        Ok(false) => self.inner.state.lock().commit_refused(*s, *gen),
        Err(e) => {
          restore(Vec::new(), Vec::new(), &records[i..]);
          return Err(e);
        }
      }
    }
    Ok(())
  }

  /// A commit was refused because the lease is not ours. When nobody holds it, the store
  /// lost it (a restart without persistence, an eviction, a deleted bucket): this member
  /// still knows its position, so it takes the lease again (true) instead of dropping the
  /// shard, whose next owner would start over from `from`.
  async fn lease_lost_by_store(&self, shard: u32) -> bool {
    // A member on its way out lets the shard go: the next owner continues from the store.
    if self.stopping() || self.inner.state.lock().closed {
      return false;
    }
    let store = self.store();
    let opts = &self.inner.opts;
    if !matches!(store.lease_holder(&opts.group, shard).await, Ok(None)) {
      return false;
    }
    let taken = matches!(
      store
        .lease(&opts.group, shard, &opts.member, opts.lease)
        .await,
      Ok(true)
    );
    if taken {
      // The group's start record went with it: put this member's back, so the group is
      // listed again and a later member without a commit starts where the group did.
      let _ = store.start(&opts.group, &self.inner.start.encode()).await;
      tracing::warn!(
        group = %opts.group,
        member = %opts.member,
        shard,
        "the store had lost the lease and commit of shard {shard} (a restart without persistence or an eviction); took the lease again and wrote the commit"
      );
    }
    taken
  }
}

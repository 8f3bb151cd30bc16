//! Writing what a member must keep: new dead letters, then the removal of finished
//! returned letters, then the commit records that changed. In that order, so a committed
//! position never passes an event that is neither acked nor stored as a letter.

use super::Member;
use crate::adapter::group_store::Tray;
use crate::adapter::AdapterError;

impl Member {
  /// Writes the changes of the ledger. A record whose lease was lost is not written, and
  /// the shard is dropped; on an error, what was not written is kept for the next try.
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
        Ok(false) => self.inner.state.lock().commit_refused(*s, *gen),
        Err(e) => {
          restore(Vec::new(), Vec::new(), &records[i..]);
          return Err(e);
        }
      }
    }
    Ok(())
  }
}

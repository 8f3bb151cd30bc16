//! Dead letters from outside a member: reading them and moving them back into the group
//! (`bus.deadLetters`, `bus.redeliver`). Members pick returned letters up themselves.

use crate::adapter::group_store::{check_letter_cursor, GroupStore, LetterPage, Tray};
use crate::error::Result;

/// Checks the arguments of a dead-letter page request before anything is read.
pub fn check_page(group: &str, after: Option<&str>) -> Result<()> {
  super::check_name("group", group)?;
  if let Some(a) = after {
    check_letter_cursor(a)?;
  }
  Ok(())
}

/// A page of `group`'s dead letters, oldest first.
pub async fn dead_letters(
  store: &dyn GroupStore,
  group: &str,
  after: Option<&str>,
  limit: usize,
) -> Result<LetterPage> {
  Ok(store.letters(group, Tray::Dead, after, limit).await?)
}

/// Moves dead letters (by letter id) to the returned tray, where the member owning each
/// one's shard delivers it again; returns how many moved. Letters are taken before they
/// are put back, so two concurrent calls never move one letter twice.
pub async fn redeliver(store: &dyn GroupStore, group: &str, ids: &[String]) -> Result<usize> {
  let taken = store.take_letters(group, Tray::Dead, ids).await?;
  // A letter that could not carry its payload has no event to deliver: it stays dead.
  let (letters, cut): (Vec<_>, Vec<_>) = taken.into_iter().partition(|l| l.cut.is_none());
  if !cut.is_empty() {
    tracing::warn!(
      group,
      "redeliver({group}): {} dead letter(s) kept dead because their payload did not fit in the letter (see their reason); read those events from the stream by id",
      cut.len()
    );
    store.put_letters(group, Tray::Dead, &cut).await?;
  }
  if let Err(e) = store.put_letters(group, Tray::Returned, &letters).await {
    // Put them back where they were rather than lose them.
    let _ = store.put_letters(group, Tray::Dead, &letters).await;
    return Err(e.into());
  }
  super::member::letters_returned();
  Ok(letters.len())
}

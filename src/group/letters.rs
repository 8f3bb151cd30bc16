//! Dead letters from outside a member: reading them and moving them back into the group
//! (`bus.deadLetters`, `bus.redeliver`). Members pick returned letters up themselves.

use std::collections::HashSet;

use crate::adapter::group_store::{check_letter_cursor, GroupStore, LetterPage, Tray};
use crate::consume::filter::Filter;
use crate::error::Result;

/// Letters read per page while selecting.
const SCAN_PAGE: usize = 500;

/// Which dead letters a bulk call acts on: by id, by the filter over their events, or
/// both (a letter must pass each one given); none given selects all.
#[derive(Debug, Default)]
pub struct Selection {
  pub ids: Option<HashSet<String>>,
  pub filter: Option<Filter>,
  pub limit: Option<usize>,
}

/// The ids of `group`'s dead letters that `sel` selects, oldest first.
pub async fn select(store: &dyn GroupStore, group: &str, sel: &Selection) -> Result<Vec<String>> {
  let limit = sel.limit.unwrap_or(usize::MAX);
  let mut out = Vec::new();
  let mut after: Option<String> = None;
  loop {
    let page = store
      .letters(group, Tray::Dead, after.as_deref(), SCAN_PAGE)
      .await?;
    for l in &page.letters {
      if out.len() == limit {
        return Ok(out);
      }
      let by_id = sel.ids.as_ref().is_none_or(|ids| ids.contains(&l.id));
      let by_filter = sel
        .filter
        .as_ref()
        .is_none_or(|f| f.matches_event(&l.event));
      if by_id && by_filter {
        out.push(l.id.clone());
      }
    }
    if !page.has_more || page.next.is_none() {
      return Ok(out);
    }
    after = page.next;
  }
}

/// What a bulk call does with the letters it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bulk {
  /// Remove them for good (`bus.purgeDeadLetters`).
  Purge,
  /// Put them back into the group (`bus.redeliver(group, { filter })`).
  Redeliver,
}

/// Does `action` to the dead letters `sel` selects; returns how many (with `dry_run`, how
/// many it would: nothing changes).
pub async fn bulk(
  store: &dyn GroupStore,
  group: &str,
  sel: &Selection,
  action: Bulk,
  dry_run: bool,
) -> Result<usize> {
  let ids = select(store, group, sel).await?;
  if dry_run {
    return Ok(ids.len());
  }
  let mut done = 0;
  for chunk in ids.chunks(SCAN_PAGE) {
    done += match action {
      Bulk::Purge => store.take_letters(group, Tray::Dead, chunk).await?.len(),
      Bulk::Redeliver => redeliver(store, group, chunk).await?,
    };
  }
  Ok(done)
}

/// Checks the arguments of a dead-letter page request before anything is read.
pub fn check_page(group: &str, after: Option<&str>) -> Result<()> {
  super::check_name("group", group)?;
  if let Some(a) = after {
    check_letter_cursor(a)?;
  }
  Ok(())
}

/// A page of `group`'s dead letters, oldest first; with `filter`, only those whose event
/// matches (the page's cursor then follows the last letter examined, so paging goes on
/// past the ones left out).
pub async fn dead_letters(
  store: &dyn GroupStore,
  group: &str,
  after: Option<&str>,
  limit: usize,
  filter: Option<&Filter>,
) -> Result<LetterPage> {
  let Some(filter) = filter else {
    return Ok(store.letters(group, Tray::Dead, after, limit).await?);
  };
  let mut out = LetterPage::default();
  let mut after = after.map(str::to_string);
  loop {
    let page = store
      .letters(group, Tray::Dead, after.as_deref(), SCAN_PAGE)
      .await?;
    for (at, l) in page.letters.into_iter().enumerate() {
      if !filter.matches_event(&l.event) {
        continue;
      }
      if out.letters.len() == limit {
        // Full before this page ended: a cursor is the store's own (JetStream's is a
        // stream sequence, not a letter id), so ask for the page up to the last letter
        // examined and take its cursor.
        out.next = match at {
          0 => after,
          n => {
            store
              .letters(group, Tray::Dead, after.as_deref(), n)
              .await?
              .next
          }
        };
        out.has_more = true;
        return Ok(out);
      }
      out.letters.push(l);
    }
    if !page.has_more || page.next.is_none() {
      out.next = page.next.or(after);
      return Ok(out);
    }
    after = page.next;
  }
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

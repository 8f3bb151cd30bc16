//! One shard's stream of records inside a poll: what was consumed, what is buffered, and
//! when the shard was last seen to have nothing more.

use std::collections::VecDeque;

use crate::adapter::Adapter;
use crate::error::{BusError, Code, Result};
use crate::event::StoredEvent;

/// Reads are counted: a read that starts at count `c` sees every record stored before any
/// read that completed at or before `c`. The barrier compares these counts.
pub type ReadClock = u64;

pub struct Lane {
  pub shard: u32,
  /// After the last record consumed (returned or rejected by the filter).
  pub position: Option<String>,
  /// After the last record buffered or skipped as corrupt.
  read_to: Option<String>,
  /// Records not consumed yet, each with the clock at which its read completed.
  pub buffer: VecDeque<(StoredEvent, ReadClock)>,
  /// The last read found nothing after `read_to`.
  pub exhausted: bool,
  /// When `exhausted`: the clock at which that read started.
  pub exhausted_since: ReadClock,
}

impl Lane {
  pub fn new(shard: u32, position: Option<String>) -> Lane {
    Lane {
      shard,
      read_to: position.clone(),
      position,
      buffer: VecDeque::new(),
      exhausted: false,
      exhausted_since: 0,
    }
  }

  /// Reads up to `want` records after what is buffered (also when `exhausted`: new ones
  /// may have been stored since). Returns how many were buffered.
  pub async fn extend(
    &mut self,
    adapter: &dyn Adapter,
    want: usize,
    started: ReadClock,
    completed: ReadClock,
  ) -> Result<usize> {
    let after = self.read_to.clone();
    let page = adapter
      .read(self.shard, after.as_deref(), want.max(1))
      .await
      .map_err(BusError::from)?;
    let n = page.events.len();
    // Corrupt records may have been skipped: move past them even with nothing to return.
    if let Some(next) = page.next {
      self.read_to = Some(next);
    }
    if n == 0 {
      // An adapter that claims more but makes no progress would loop forever.
      self.exhausted = !page.has_more || self.read_to == after;
      if self.exhausted {
        self.exhausted_since = started;
      }
      if self.buffer.is_empty() {
        // Skipped records count as consumed once nothing is buffered before them.
        self.position = self.read_to.clone();
      }
    } else {
      self.exhausted = false;
      self
        .buffer
        .extend(page.events.into_iter().map(|e| (e, completed)));
    }
    Ok(n)
  }

  /// Whether a read is due before records can be taken: nothing buffered and more may come.
  pub fn needs_read(&self) -> bool {
    self.buffer.is_empty() && !self.exhausted
  }

  pub fn has_more(&self) -> bool {
    !self.buffer.is_empty() || !self.exhausted
  }

  pub fn head(&self) -> Option<&StoredEvent> {
    self.buffer.front().map(|(e, _)| e)
  }

  /// Where this lane has read to, as a store-wide sequence (stores with `total_order`):
  /// 0 before the first record.
  pub fn read_to_seq(&self) -> Result<u64> {
    self.read_to.as_deref().map_or(Ok(0), parse_seq)
  }

  /// Buffers a record that a store-wide read found after this lane's `read_to`.
  pub fn push_swept(&mut self, ev: StoredEvent, completed: ReadClock) {
    self.read_to = Some(ev.position.clone());
    self.buffer.push_back((ev, completed));
  }

  /// A store-wide read that started at clock `started` examined every record up to
  /// sequence `to` (None: it found none). `got`: it buffered some for this lane; `end`:
  /// nothing followed. The same outcome as `extend` reaching that far.
  pub fn swept(&mut self, to: Option<u64>, got: bool, end: bool, started: ReadClock) {
    if let Some(to) = to {
      if self.read_to_seq().is_ok_and(|at| to > at) {
        self.read_to = Some(to.to_string());
      }
    }
    if got {
      self.exhausted = false;
      return;
    }
    // Without the end, an exhausted lane stays so as of its earlier read: nothing of it
    // was stored up to `to` since.
    if end {
      self.exhausted = true;
      self.exhausted_since = started;
    }
    if self.buffer.is_empty() {
      self.position = self.read_to.clone();
    }
  }

  /// Takes the head record, moving the position past it (and past corrupt records read
  /// after it, once nothing is buffered).
  pub fn take(&mut self) -> Option<StoredEvent> {
    let (ev, _) = self.buffer.pop_front()?;
    self.position = if self.buffer.is_empty() {
      self.read_to.clone()
    } else {
      Some(ev.position.clone())
    };
    Some(ev)
  }
}

/// A position in a store-wide sequence; anything else in a cursor is corruption.
pub fn parse_seq(p: &str) -> Result<u64> {
  p.parse::<u64>().map_err(|_| {
    BusError::new(
      Code::InvalidCursor,
      "cursor is corrupt (bad position); pass a cursor returned by poll() unchanged",
    )
  })
}

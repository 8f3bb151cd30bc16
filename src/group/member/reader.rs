//! The reader task of a member: reads pages of its owned shards into the ledger while
//! there is room (`maxInFlight`), and waits on the store once every shard is read to its
//! end. Reads and waits are bounded, so a request lost with a server restart never
//! stalls the member.

use std::time::Duration;

use super::{Member, ERROR_BACKOFF_CAP, PAGE};
use crate::adapter::{Positions, ReadPage};

/// Longest wait on the store before looking again (new shards, other producers).
const MAX_WAIT: Duration = Duration::from_secs(2);
/// A read or wait on the store that takes longer than this is abandoned and issued again:
/// a request lost with a server restart must not stall the member silently.
const READ_BOUND: Duration = Duration::from_secs(10);

/// What the reader should do next: how much room there is, the shards to read
/// `(shard, gen, position)`, and the shards and positions to wait on.
struct Plan {
  space: usize,
  targets: Vec<(u32, u64, Option<String>)>,
  ids: Vec<u32>,
  positions: Positions,
}

impl Member {
  fn plan(&self) -> Option<Plan> {
    let st = self.inner.state.lock();
    if st.closed {
      return None;
    }
    let active = st.shards.iter().filter(|(_, o)| o.draining.is_none());
    Some(Plan {
      space: self.inner.opts.max_in_flight.saturating_sub(st.held()),
      targets: active
        .clone()
        .filter(|(_, o)| !o.at_end)
        .map(|(s, o)| (*s, o.gen, o.read_pos.clone()))
        .collect(),
      positions: active
        .clone()
        .filter_map(|(s, o)| o.read_pos.clone().map(|p| (*s, p)))
        .collect(),
      ids: active.map(|(s, _)| *s).collect(),
    })
  }

  pub(super) async fn read_loop(self) {
    let mut failures = 0u32;
    loop {
      if self.stopping() {
        return;
      }
      let room = self.inner.room.notified();
      tokio::pin!(room);
      room.as_mut().enable();
      let Some(plan) = self.plan() else { return };
      if plan.space < self.refill() || (plan.targets.is_empty() && plan.ids.is_empty()) {
        tokio::select! {
          _ = &mut room => {}
          _ = self.stopped() => {}
        }
        continue;
      }
      if plan.targets.is_empty() {
        let wait = self
          .inner
          .adapter
          .wait_for_data(&plan.ids, &plan.positions, MAX_WAIT);
        tokio::select! {
          _ = tokio::time::timeout(MAX_WAIT + READ_BOUND, wait) => {}
          _ = &mut room => {}
          _ = self.stopped() => {}
        }
        let mut st = self.inner.state.lock();
        for o in st.shards.values_mut() {
          o.at_end = false;
        }
        continue;
      }
      let per_shard = (plan.space / plan.targets.len()).clamp(1, PAGE);
      // Every shard's page is asked for at once: a round trip each, not one after another.
      let this = &self;
      let reads = plan
        .targets
        .into_iter()
        .map(|(shard, gen, pos)| async move {
          let started = std::time::Instant::now();
          let read = this.inner.adapter.read(shard, pos.as_deref(), per_shard);
          let read = tokio::time::timeout(READ_BOUND, read).await;
          let failed = match &read {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.code.as_str()),
            Err(_) => Some(crate::error::Code::Timeout.as_str()),
          };
          (this.inner.meters.receive).observe(started.elapsed(), failed);
          (shard, gen, pos, read)
        });
      let pages = tokio::select! {
        pages = futures_util::future::join_all(reads) => pages,
        _ = self.stopped() => return,
      };
      let mut failed = false;
      for (shard, gen, pos, read) in pages {
        match read {
          Ok(Ok(page)) => self.accept(shard, gen, pos, page),
          Ok(Err(_)) | Err(_) => failed = true,
        }
      }
      if failed {
        // A failed read, or one past its bound: back off, then read again.
        failures += 1;
        let d = crate::retry::backoff(failures).min(ERROR_BACKOFF_CAP);
        tokio::select! {
          _ = tokio::time::sleep(d) => {}
          _ = self.stopped() => {}
        }
      } else {
        failures = 0;
      }
    }
  }

  /// Adds a page read from `shard` at `pos` to the ledger.
  fn accept(&self, shard: u32, gen: u64, pos: Option<String>, page: ReadPage) {
    let filter = self.inner.opts.filter.as_ref();
    let mut st = self.inner.state.lock();
    let Some((queued, dirty)) = st.accept(shard, gen, pos, page, filter) else {
      return;
    };
    if dirty {
      self.note_commit(&mut st);
    }
    if queued > 0 {
      self.inner.deliverable.notify_one();
    }
  }
}

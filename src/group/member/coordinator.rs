//! The coordinator task of a member: renewals (membership, leases, the split of shards),
//! hand-overs, deadline scans, returned letters, commits and the final leave.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::ledger::Admit;
use super::{Member, ERROR_BACKOFF_CAP};
use crate::adapter::group_store::{GroupStore, Tray};
use crate::adapter::AdapterError;
use crate::error::{BusError, Result};
use crate::group::{assigned_at, GroupOptions};

/// Acks are committed at most this long after they are made.
const COMMIT_DELAY: Duration = Duration::from_millis(50);
/// Least time between two renewals caused by other members' signals.
const SIGNAL_GAP: Duration = Duration::from_millis(10);
/// Least time between two scans of the deadlines.
const MIN_SCAN_GAP: Duration = Duration::from_millis(5);
/// Returned letters picked up per look.
const RETURNED_PAGE: usize = 256;
/// Pages of returned letters read per look at most.
const RETURNED_PAGES_PER_LOOK: usize = 16;
/// Renewals between looks for returned letters: listing them is the costliest request of a
/// renewal (JetStream lists the bucket's keys), and a slow renewal lets the membership lapse.
const RETURNED_EVERY: u64 = 5;

/// Bumped by `bus.redeliver` in this process: members look for returned letters at once
/// instead of at their next periodic look (members in other processes still wait for it).
static RETURNED_GEN: AtomicU64 = AtomicU64::new(0);
static RETURNED_WAKE: Notify = Notify::const_new();

/// Letters were put back for redelivery (by this process): wakes this process's members.
pub(crate) fn letters_returned() {
  RETURNED_GEN.fetch_add(1, Ordering::AcqRel);
  RETURNED_WAKE.notify_waiters();
}

impl Member {
  pub(super) async fn coordinate(self) {
    let renew = self.inner.opts.renew_every();
    let mut next_tick = Instant::now() + renew;
    let mut last_tick = Instant::now();
    let mut commit_at: Option<Instant> = None;
    let mut failures = 0u32;
    let mut last_scan = Instant::now() - MIN_SCAN_GAP;
    let mut returned_gen = RETURNED_GEN.load(Ordering::Acquire);
    let mut signals = self.inner.signals.lock().take();
    loop {
      if self.stopping() {
        break;
      }
      let wake = self.inner.wake.notified();
      tokio::pin!(wake);
      wake.as_mut().enable();
      let returned = RETURNED_WAKE.notified();
      tokio::pin!(returned);
      returned.as_mut().enable();
      let gen = RETURNED_GEN.load(Ordering::Acquire);
      if gen != returned_gen {
        returned_gen = gen;
        self.inner.state.lock().returned_more = true;
      }
      let now = Instant::now();
      if now >= next_tick {
        self.tick().await;
        last_tick = Instant::now();
        next_tick = last_tick + jittered(renew);
      }
      // Deadlines are scanned when one has passed, at most every MIN_SCAN_GAP: a stream of
      // nacks (each lowering the deadline) costs a scan per gap, not one per nack.
      let due = self.inner.state.lock().next_due;
      let next_due = match due {
        Some(d) => {
          let now = Instant::now();
          let earliest = last_scan + MIN_SCAN_GAP;
          if d <= now && now >= earliest {
            last_scan = now;
            self.redeliver_due(now)
          } else {
            Some(d.max(earliest))
          }
        }
        None => None,
      };
      if self.inner.state.lock().commit_pending {
        let at = *commit_at.get_or_insert(now + COMMIT_DELAY);
        if Instant::now() >= at {
          commit_at = None;
          if let Err(e) = self.flush().await {
            // Keep the changes; try again after a backoff. Said at the first failure and
            // every tenth, so a store refusing writes for long is seen but not flooded.
            failures += 1;
            if failures % 10 == 1 {
              tracing::warn!(group = %self.inner.opts.group, member = %self.inner.opts.member, failures, "could not write commits and dead letters ({failures} tries): {}; acked events stay uncommitted and are kept for the next try", e.message);
            }
            commit_at =
              Some(Instant::now() + crate::retry::backoff(failures).min(ERROR_BACKOFF_CAP));
            self.inner.state.lock().commit_pending = true;
          } else {
            if failures > 0 {
              tracing::info!(group = %self.inner.opts.group, member = %self.inner.opts.member, "commits and dead letters written again after {failures} failed tries");
            }
            failures = 0;
          }
        }
      }
      let more_letters = {
        let st = self.inner.state.lock();
        st.returned_more && st.held() + self.refill() <= self.inner.opts.max_in_flight
      };
      if more_letters {
        self.pick_up_returned().await;
      }
      // A shard being handed over whose last delivered event was just acked goes now.
      if self.inner.state.lock().handover_ready() {
        self.finish_handovers().await;
      }
      let mut until = next_tick;
      for t in [next_due, commit_at].into_iter().flatten() {
        until = until.min(t);
      }
      tokio::select! {
        _ = tokio::time::sleep_until(until.into()) => {}
        _ = &mut wake => {}
        _ = &mut returned => {}
        _ = self.stopped() => {}
        moved = super::handover::next_signal(&mut signals, &self.inner.opts.member) => {
          // Another member joined, left or released shards: renew now, or once
          // SIGNAL_GAP has passed since the last renewal, so a burst of signals (many
          // members joining at once) costs a renewal per gap, not one per signal.
          if moved {
            next_tick = next_tick.min((last_tick + SIGNAL_GAP).max(Instant::now()));
          }
        }
      }
    }
    self.leave().await;
  }

  /// Final hand-over: nothing more is delivered, acks so far are committed, leases are
  /// released and the member leaves. Events delivered and not acked go to the next owner.
  async fn leave(&self) {
    // Events nacked or past their deadline on their last delivery become dead letters now,
    // so the final commit writes them (the loop may have stopped before it got to them).
    self.redeliver_due(Instant::now());
    let shards: Vec<u32> = {
      let mut st = self.inner.state.lock();
      st.closed = true;
      let shards: Vec<u32> = st.shards.keys().copied().collect();
      for s in &shards {
        st.drop_queued(*s);
      }
      shards
    };
    self.inner.deliverable.notify_waiters();
    self.inner.room.notify_waiters();
    let store = self.store();
    let g = &self.inner.opts.group;
    let me = &self.inner.opts.member;
    for attempt in 1..=3u32 {
      if self.flush().await.is_ok() {
        break;
      }
      tokio::time::sleep(crate::retry::backoff(attempt)).await;
    }
    for &s in &shards {
      let _ = store.release(g, s, me).await;
      tracing::info!(group = %g, member = %me, shard = s, "released shard {s} on leaving");
    }
    let _ = store.leave(g, me).await;
    // A member without shards leaves the split as it was for the others (their ranks
    // below the shard count do not change), so only one with shards tells them.
    if !shards.is_empty() {
      self.signal().await;
    }
    self.inner.state.lock().forget_all();
    self.inner.done.fire();
  }

  /// Refreshes what follows each held shard's read position, where only the store knows.
  async fn count_backlog(&self) {
    let asked: Vec<(u32, u64, Option<String>)> = {
      let st = self.inner.state.lock();
      st.shards
        .iter()
        .filter(|(_, o)| o.draining.is_none())
        .map(|(s, o)| (*s, o.gen, o.read_pos.clone()))
        .collect()
    };
    if asked.is_empty() {
      return;
    }
    let positions: Vec<(u32, Option<String>)> =
      asked.iter().map(|(s, _, p)| (*s, p.clone())).collect();
    let counts = self.store().backlog(&positions).await;
    let mut st = self.inner.state.lock();
    for ((s, gen, pos), count) in asked.into_iter().zip(counts) {
      if let (Some(o), Some(n)) = (st.shards.get_mut(&s), count) {
        // A page read meanwhile moved the position: its own count stands.
        if o.gen == gen && o.read_pos == pos {
          o.remaining = Some(n);
        }
      }
    }
  }

  /// This member's rank among the live members and their count. A store whose view lags
  /// its own heartbeat (JetStream) may not list it yet: it counts itself in when joined.
  async fn place(&self, joined: bool) -> std::result::Result<Option<(usize, usize)>, AdapterError> {
    let store = self.store();
    let (g, me) = (
      self.inner.opts.group.as_str(),
      self.inner.opts.member.as_str(),
    );
    if let Some(place) = store.rank(g, me).await? {
      return Ok(Some(place));
    }
    if !joined {
      return Ok(None);
    }
    let mut members = store.members(g).await?;
    let at = members.binary_search_by(|m| m.as_str().cmp(me));
    Ok(Some(match at {
      Ok(i) => (i, members.len()),
      Err(i) => {
        members.insert(i, me.to_string());
        (i, members.len())
      }
    }))
  }

  /// Membership, leases and the split; returned letters. Returns how many shards the
  /// split gives this member.
  pub(super) async fn tick(&self) -> usize {
    let store = self.store();
    let opts = &self.inner.opts;
    let (g, me) = (opts.group.as_str(), opts.member.as_str());
    let joined = store.heartbeat(g, me, opts.lease).await.is_ok();
    let adapter = self.inner.adapter.as_ref();
    let shards = crate::consume::read_shards(adapter, self.inner.own.all_ids()).await;
    let owned: Vec<(u32, bool)> = {
      let st = self.inner.state.lock();
      st.shards
        .iter()
        .map(|(s, o)| (*s, o.draining.is_some()))
        .collect()
    };
    let mine: HashSet<u32> = match self.place(joined).await {
      Ok(Some((rank, count))) => assigned_at(&shards, rank, count).into_iter().collect(),
      Ok(None) => HashSet::new(),
      // Cannot tell who else is live: keep what is held, take nothing new.
      Err(_) => owned.iter().map(|(s, _)| *s).collect(),
    };
    let assigned = mine.len();
    self.renew_held(&owned, &mine).await;
    self.finish_handovers().await;
    self.count_backlog().await;
    // Shards given up or lost released what they held.
    self.inner.room.notify_one();
    for s in mine {
      if owned.iter().any(|(o, _)| *o == s) || self.stopping() {
        continue;
      }
      self.take_shard(s).await;
    }
    if self
      .inner
      .ticks
      .fetch_add(1, Ordering::Relaxed)
      .is_multiple_of(RETURNED_EVERY)
    {
      self.pick_up_returned().await;
    }
    assigned
  }

  /// Renews the leases held; starts handing over the shards no longer `mine`; forgets
  /// shards whose lease was lost (or could not be renewed within a lease).
  async fn renew_held(&self, owned: &[(u32, bool)], mine: &HashSet<u32>) {
    let store = self.store();
    let opts = &self.inner.opts;
    let (g, me) = (opts.group.as_str(), opts.member.as_str());
    for (s, draining) in owned {
      if !draining && !mine.contains(s) {
        self.inner.state.lock().drain(*s);
      }
      match store.lease(g, *s, me, opts.lease).await {
        Ok(true) => {
          if let Some(o) = self.inner.state.lock().shards.get_mut(s) {
            o.renewed = Instant::now();
          }
        }
        Ok(false) => {
          self
            .inner
            .meters
            .leases_lost
            .fetch_add(1, Ordering::Relaxed);
          tracing::warn!(group = g, member = me, shard = *s, "lost the lease on shard {s} to another member (a renewal came too late); its unacked events go to the new owner");
          self.inner.state.lock().forget(*s)
        }
        Err(_) => {
          let mut st = self.inner.state.lock();
          let expired = st
            .shards
            .get(s)
            .is_some_and(|o| o.renewed.elapsed() >= opts.lease);
          if expired {
            tracing::warn!(
              group = g,
              member = me,
              shard = *s,
              "could not renew the lease on shard {s} within leaseMs; giving it up"
            );
            // Others may own it by now: stop delivering from it.
            st.forget(*s);
            self
              .inner
              .meters
              .leases_lost
              .fetch_add(1, Ordering::Relaxed);
          }
        }
      }
    }
  }

  /// Letters put back with `bus.redeliver` for shards this member reads, as many as there
  /// is room for. When more remain, `returned_more` asks the coordinator to look again as
  /// soon as room frees (not after the next RETURNED_EVERY renewals), so a bulk redeliver
  /// runs at processing speed.
  async fn pick_up_returned(&self) {
    {
      let mut st = self.inner.state.lock();
      if st.returned_busy() {
        st.returned_more = true;
        return;
      }
      st.returned_more = false;
    }
    let store = self.store();
    let max = self.inner.opts.max_in_flight;
    let mut after: Option<String> = None;
    let mut added = 0usize;
    for _ in 0..RETURNED_PAGES_PER_LOOK {
      let Ok(page) = store
        .letters(
          &self.inner.opts.group,
          Tray::Returned,
          after.as_deref(),
          RETURNED_PAGE,
        )
        .await
      else {
        return;
      };
      let mut st = self.inner.state.lock();
      for letter in page.letters {
        match st.admit(letter, max) {
          Admit::Added => added += 1,
          Admit::Skipped => {}
          Admit::Full => break,
        }
      }
      let full = st.held() >= max;
      if !page.has_more || full {
        // More to take once room frees; letters of other members' shards are theirs.
        st.returned_more = page.has_more && added > 0;
        break;
      }
      after = page.next;
    }
    if added > 0 {
      self.inner.deliverable.notify_one();
    }
  }

  /// Requeues (or dead-letters) events whose deadline passed; returns the next deadline.
  pub(super) fn redeliver_due(&self, now: Instant) -> Option<Instant> {
    #[cfg(feature = "test-hooks")]
    self.inner.scans.fetch_add(1, Ordering::Relaxed);
    let opts = &self.inner.opts;
    let scan =
      self
        .inner
        .state
        .lock()
        .scan_due(now, opts.max_deliveries, opts.ack_wait.as_millis());
    if scan.finished > 0 {
      self.count(crate::telemetry::Count::DeadLettered, scan.dead);
      self.inner.room.notify_one();
    }
    if scan.requeued > 0 {
      self.inner.deliverable.notify_one();
    }
    scan.next
  }
}

/// Refuses a member name another live member uses: both would own the same shards and
/// handle every event twice. A name still listed may be a crashed member's (its entry
/// expires within `leaseMs`) or a live one's (renewed every third of it), so the entry is
/// watched for up to a lease before the join is refused.
pub(super) async fn claim_name(store: &dyn GroupStore, opts: &GroupOptions) -> Result<()> {
  let (g, me) = (opts.group.as_str(), opts.member.as_str());
  let deadline = tokio::time::Instant::now() + opts.lease + opts.renew_every();
  loop {
    if store.rank(g, me).await?.is_none() {
      return Ok(());
    }
    if tokio::time::Instant::now() >= deadline {
      return Err(BusError::config(format!(
        "member {me:?} is already a live member of group {g:?} (in this or another process); give each member a unique name (or leave member unset for a random one)"
      )));
    }
    tokio::time::sleep(opts.renew_every().min(Duration::from_millis(250))).await;
  }
}

/// A renewal period shortened by up to a tenth at random: members that joined together
/// drift apart instead of renewing in step (on JetStream, in step means CAS conflicts on
/// the one member list). Earlier, never later, so leases are renewed as often as before.
fn jittered(renew: Duration) -> Duration {
  let tenth = (renew.as_micros() / 10) as u64;
  if tenth == 0 {
    return renew;
  }
  renew - Duration::from_micros(crate::random::random_u64() % tenth)
}

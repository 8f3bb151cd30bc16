//! The shard set: every shard the bus has had, the one state of each, their dispatchers,
//! and the routing table ingest reads. Topology changes (`scaleUp`, `scaleDown`, the
//! policy) happen here and nowhere else.
//!
//! Routing is jump consistent hashing over the active shards, whose ids are always
//! `0..n`: growing appends ids and shrinking removes the highest, so a change moves only
//! the keys that must move, and a shard id that comes back continues its old sequence
//! (message ids are never reused, and ids never run out: at most `maxShards` exist).
//!
//! Per-key order across a change: the swap of the routing table happens under its write
//! lock, so every event is routed entirely by the old or entirely by the new table. At the
//! swap every shard of the new table is put on hold from its next sequence: it keeps
//! accepting events but dispatches none of the new ones until every shard of the old table
//! has stored (or dropped) what it held at the swap. A key that moved therefore never has
//! its new events written before its old ones. The hold lasts as long as draining what was
//! queued at the change. Removed shards get no event after the swap (routing is atomic),
//! so "drained" is exact: no late push can arrive, and none can keep a shard draining.

#[cfg(feature = "test-hooks")]
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::config::BusConfig;
use crate::dispatch::{self, DispatchContext};
use crate::error::{BusError, Code, Result};
use crate::event::Stamp;
use crate::shard::Shard;
use crate::signal::Signal;

/// How long a new shard's dispatcher may take to start before activation fails.
const START_LIMIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
  /// Its dispatcher is starting; not routable yet.
  Provisioning,
  Active,
  /// No longer routable; delivering what it holds.
  Draining,
  /// Dispatcher finished (after shutdown).
  Stopped,
  /// Out of the topology; its stored events stay readable.
  Removed,
}

impl ShardState {
  pub fn name(self) -> &'static str {
    match self {
      ShardState::Provisioning => "provisioning",
      ShardState::Active => "active",
      ShardState::Draining => "draining",
      ShardState::Stopped => "stopped",
      ShardState::Removed => "removed",
    }
  }
}

struct Slot {
  shard: Arc<Shard>,
  state: ShardState,
  dispatcher: Option<JoinHandle<()>>,
  /// (when, ingested) at the last rate sample.
  sample: (Instant, u64),
}

pub struct ShardSet {
  /// The active shards, index = id. Ingest routes and pushes under the read lock.
  routing: RwLock<Vec<Arc<Shard>>>,
  /// Every shard ever created, index = id.
  slots: Mutex<Vec<Slot>>,
  /// One topology change at a time.
  change: tokio::sync::Mutex<()>,
  last_change: Mutex<Instant>,
  ctx: Arc<DispatchContext>,
  config: BusConfig,
  rt: Handle,
  closing: Arc<Signal>,
  /// Topology changes so far; stamped on events with the span (`slots.len()`).
  epoch: std::sync::atomic::AtomicU32,
  /// Test hook: the next activations fail as if their dispatcher never started.
  #[cfg(feature = "test-hooks")]
  fail_activations: AtomicU32,
}

impl ShardSet {
  pub fn start(
    config: &BusConfig,
    ctx: Arc<DispatchContext>,
    rt: Handle,
    closing: Arc<Signal>,
  ) -> ShardSet {
    let set = ShardSet {
      routing: RwLock::new(Vec::new()),
      slots: Mutex::new(Vec::new()),
      change: tokio::sync::Mutex::new(()),
      last_change: Mutex::new(Instant::now()),
      ctx,
      config: config.clone(),
      rt,
      closing,
      epoch: Default::default(),
      #[cfg(feature = "test-hooks")]
      fail_activations: Default::default(),
    };
    let mut slots = set.slots.lock();
    let mut routing = set.routing.write();
    for id in 0..config.shards {
      let shard = set.new_shard(id);
      shard.set_stamp(Stamp {
        epoch: 0,
        span: config.shards,
      });
      // Started shards are routable at once: nothing is routed before `start` returns.
      let (handle, _) = set.spawn_dispatcher(&shard);
      routing.push(shard.clone());
      slots.push(Slot {
        shard,
        state: ShardState::Active,
        dispatcher: Some(handle),
        sample: (Instant::now(), 0),
      });
    }
    drop(routing);
    drop(slots);
    set
  }

  fn new_shard(&self, id: u32) -> Arc<Shard> {
    Shard::with_limits(
      id,
      self.config.ring_capacity,
      self.config.ring_max_bytes,
      self.config.backpressure,
      self.config.batch.max_events,
      self.config.batch.max_bytes,
    )
  }

  fn spawn_dispatcher(
    &self,
    shard: &Arc<Shard>,
  ) -> (JoinHandle<()>, tokio::sync::oneshot::Receiver<()>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let handle = self
      .rt
      .spawn(dispatch::run(shard.clone(), self.ctx.clone(), Some(tx)));
    (handle, rx)
  }

  /// Runs `f` with the active shards; a topology change waits until it returns.
  pub fn with_routing<T>(&self, f: impl FnOnce(&[Arc<Shard>]) -> T) -> T {
    f(&self.routing.read())
  }

  pub fn active_count(&self) -> u32 {
    self.routing.read().len() as u32
  }

  /// Every shard id that may hold stored events (removed ones included).
  pub fn all_ids(&self) -> Vec<u32> {
    (0..self.slots.lock().len() as u32).collect()
  }

  /// Every shard ever created (for totals that never go down).
  pub fn all_shards(&self) -> Vec<Arc<Shard>> {
    self.slots.lock().iter().map(|s| s.shard.clone()).collect()
  }

  /// Shards not removed, with their state (no rate sample taken).
  pub fn current(&self) -> Vec<(Arc<Shard>, ShardState)> {
    let slots = self.slots.lock();
    slots
      .iter()
      .filter(|s| s.state != ShardState::Removed)
      .map(|s| (s.shard.clone(), s.state))
      .collect()
  }

  /// Shards not removed, with their state and events/s since the previous sample.
  pub fn listed(&self) -> Vec<(Arc<Shard>, ShardState, f64)> {
    let now = Instant::now();
    let mut slots = self.slots.lock();
    slots
      .iter_mut()
      .filter(|s| s.state != ShardState::Removed)
      .map(|s| {
        let ingested = s.shard.counters().ingested;
        let secs = now.duration_since(s.sample.0).as_secs_f64();
        let rate = if secs > 0.0 {
          (ingested - s.sample.1) as f64 / secs
        } else {
          0.0
        };
        s.sample = (now, ingested);
        (s.shard.clone(), s.state, rate)
      })
      .collect()
  }

  pub fn since_last_change(&self) -> Duration {
    self.last_change.lock().elapsed()
  }

  #[cfg(feature = "test-hooks")]
  pub fn inject_activation_failures(&self, n: u32) {
    self.fail_activations.store(n, Ordering::SeqCst);
  }

  /// Whether an injected failure makes this activation fail (test hook).
  fn activation_fails(&self) -> bool {
    #[cfg(feature = "test-hooks")]
    return self
      .fail_activations
      .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
      .is_ok();
    #[cfg(not(feature = "test-hooks"))]
    false
  }

  fn check_open(&self) -> Result<()> {
    if self.closing.is_fired() {
      return Err(BusError::shut_down());
    }
    Ok(())
  }

  /// Adds `n` shards at once; returns their ids once they are routable.
  pub async fn scale_up(&self, n: u32) -> Result<Vec<u32>> {
    let _one = self.change.lock().await;
    self.check_open()?;
    let (_, max) = self.config.shard_bounds();
    let active = self.active_count();
    let total = active.saturating_add(n);
    if n == 0 || total > max {
      return Err(BusError::config(format!(
        "scaleUp({n}) would make {total} shards; it must add at least 1 and stay within {max} (scaling.maxShards)"
      )));
    }
    let ids: Vec<u32> = (active..active + n).collect();
    // Provision: a dispatcher per new shard (an earlier shard with the same id comes back
    // with its sequence), routable only once every dispatcher reported that it runs.
    let mut started = Vec::new();
    {
      let mut slots = self.slots.lock();
      // Checked under the lock that shutdown's `close_all` takes: a dispatcher started
      // after it would never be told to stop.
      self.check_open()?;
      for &id in &ids {
        if slots.len() == id as usize {
          slots.push(Slot {
            shard: self.new_shard(id),
            state: ShardState::Removed,
            dispatcher: None,
            sample: (Instant::now(), 0),
          });
        }
        let slot = &mut slots[id as usize];
        slot.shard.reopen();
        let (handle, rx) = self.spawn_dispatcher(&slot.shard);
        slot.dispatcher = Some(handle);
        slot.state = ShardState::Provisioning;
        started.push(rx);
      }
    }
    let all_started = async {
      for rx in started {
        rx.await.map_err(|_| ())?;
      }
      Ok::<_, ()>(())
    };
    let fail = self.activation_fails();
    let ok = !fail
      && matches!(
        tokio::time::timeout(START_LIMIT, all_started).await,
        Ok(Ok(()))
      );
    if !ok {
      self.stop(&ids, true).await;
      return Err(BusError::new(
        Code::Timeout,
        format!(
          "scaleUp({n}): a new shard's dispatcher did not start within {} ms; nothing changed",
          START_LIMIT.as_millis()
        ),
      ));
    }
    let old = self.swap(|routing, slots| {
      for &id in &ids {
        routing.push(slots[id as usize].shard.clone());
        slots[id as usize].state = ShardState::Active;
      }
    });
    self.settle(old).await;
    Ok(ids)
  }

  /// Removes the `n` highest shards; returns their ids once they delivered all they held.
  pub async fn scale_down(&self, n: u32) -> Result<Vec<u32>> {
    let _one = self.change.lock().await;
    self.check_open()?;
    let (min, _) = self.config.shard_bounds();
    let active = self.active_count();
    if n == 0 || active < min.saturating_add(n) {
      return Err(BusError::config(format!(
        "scaleDown({n}) would leave {} shards; it must remove at least 1 and keep {min} (scaling.minShards)",
        active as i64 - n as i64
      )));
    }
    let ids: Vec<u32> = (active - n..active).collect();
    let old = self.swap(|routing, slots| {
      routing.truncate((active - n) as usize);
      for &id in &ids {
        slots[id as usize].state = ShardState::Draining;
      }
    });
    self.settle(old).await;
    // Nothing is routed to them any more and they hold nothing: stop their dispatchers.
    self.stop(&ids, false).await;
    Ok(ids)
  }

  /// Ends the dispatchers of `ids` (after they drained, or at once with `abort`, for a
  /// provisioning that failed and may not have started) and marks the shards removed.
  async fn stop(&self, ids: &[u32], abort: bool) {
    let handles: Vec<JoinHandle<()>> = {
      let mut slots = self.slots.lock();
      ids
        .iter()
        .filter_map(|&id| {
          let slot = &mut slots[id as usize];
          slot.shard.close();
          slot.dispatcher.take()
        })
        .collect()
    };
    for h in handles {
      if abort {
        h.abort();
      }
      let _ = h.await;
    }
    let mut slots = self.slots.lock();
    for &id in ids {
      slots[id as usize].state = ShardState::Removed;
    }
  }

  /// Installs a new routing table under the write lock: holds every shard of the new
  /// table and registers, on every shard of the old one, a barrier at what it holds now.
  fn swap(
    &self,
    change: impl FnOnce(&mut Vec<Arc<Shard>>, &mut Vec<Slot>),
  ) -> Vec<crate::shard::FlushTicket> {
    let mut routing = self.routing.write();
    let mut slots = self.slots.lock();
    let old: Vec<_> = routing.iter().filter_map(|s| s.flush_ticket()).collect();
    change(&mut routing, &mut slots);
    // Under the write lock, so every event is stamped with the table that routed it.
    let stamp = Stamp {
      epoch: self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1,
      span: slots.len() as u32,
    };
    for s in routing.iter() {
      s.hold_from_now(stamp);
    }
    *self.last_change.lock() = Instant::now();
    old
  }

  /// Waits until every old shard delivered what it held at the swap, then lets the new
  /// table's shards dispatch their held events.
  async fn settle(&self, old: Vec<crate::shard::FlushTicket>) {
    for t in old {
      // Completed by delivery, drop or shutdown; never left pending.
      let _ = t.done.await;
    }
    for s in self.routing.read().iter() {
      s.release();
    }
  }

  /// At shutdown: every dispatcher is told to drain and exit; returns their handles.
  pub fn close_all(&self) -> Vec<JoinHandle<()>> {
    let mut slots = self.slots.lock();
    slots
      .iter_mut()
      .filter_map(|slot| {
        slot.shard.close();
        if slot.state != ShardState::Removed {
          slot.state = ShardState::Stopped;
        }
        slot.dispatcher.take()
      })
      .collect()
  }
}

impl crate::consume::ShardSource for ShardSet {
  fn all_ids(&self) -> Vec<u32> {
    ShardSet::all_ids(self)
  }
}

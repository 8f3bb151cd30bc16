//! The bus: one lifecycle state machine (running → shutting down → closed) over the shards,
//! their dispatchers and the adapter.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::watch;

use std::sync::Weak;

use crate::adapter::group_store::{GroupStore, LetterPage};
use crate::adapter::{Adapter, AdapterConfig};
use crate::clock::Clock;
use crate::config::BusConfig;
use crate::consume::filter::Filter;
use crate::consume::poll::{poll, PollPage, PollRequest};
use crate::consume::subscribe::{StartAt, Subscription};
use crate::dispatch::DispatchContext;
use crate::error::{BusError, Code, Result};
use crate::event::{Incoming, ProducerId};
use crate::group::member::Member;
use crate::group::worker::{Worker, WorkerOptions};
use crate::group::GroupOptions;
use crate::identity::{self, IdentityLock};
use crate::routing;
use crate::shard::{CounterSnapshot, Pushed};
use crate::signal::Signal;
use crate::topology::ShardSet;

const RUNNING: u8 = 0;
const SHUTTING_DOWN: u8 = 1;
const CLOSED: u8 = 2;

/// Extra time given to the adapter's flush and close after the drain bound.
const ADAPTER_CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long joining a group may take beyond waiting out a listed name.
const JOIN_BOUND: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
  pub counters: CounterSnapshot,
  pub queued: u64,
  pub in_flight: u64,
  pub shards: u32,
  pub state: &'static str,
  /// Records the adapter skipped on read because they could not be decoded.
  pub corrupt_skipped: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardStats {
  pub id: u32,
  pub state: &'static str,
  pub capacity: u64,
  pub queued: u64,
  pub queued_bytes: u64,
  pub in_flight: u64,
  /// Events ingested per second since the previous `shard_stats` call.
  pub event_rate: f64,
  pub counters: CounterSnapshot,
  pub last_error: Option<String>,
}

/// What a flush covered: the events pending when it was called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
  pub pending: u64,
  pub stored: u64,
  pub dropped: u64,
}

struct BusCore {
  config: BusConfig,
  adapter: Arc<dyn Adapter>,
  shards: Arc<ShardSet>,
  producer: ProducerId,
  clock: Clock,
  state: AtomicU8,
  active_ingests: AtomicUsize,
  /// Fired when shutdown starts: subscriptions end, new polls are refused.
  closing: Arc<Signal>,
  abort: Arc<Signal>,
  /// Fired at environment teardown: JS runs no more, so no handler will settle.
  exiting: Arc<Signal>,
  /// Shutdown's bound passed while members were closing: workers stop waiting for handlers.
  released: Arc<Signal>,
  shutdown: Mutex<Option<watch::Receiver<Option<Stats>>>>,
  identity: Mutex<Option<IdentityLock>>,
  /// Fired when a consumer or worker of this bus has finished closing: shutdown waits.
  members: Mutex<Vec<Arc<Signal>>>,
  rt: Handle,
}

/// A handle to a running bus. Clones share the same bus.
#[derive(Clone)]
pub struct Bus {
  core: Arc<BusCore>,
}

/// A handle that does not keep the bus alive (for registries of live buses).
#[derive(Clone)]
pub struct WeakBus(Weak<BusCore>);

impl WeakBus {
  /// The bus, while anything else still holds it.
  pub fn upgrade(&self) -> Option<Bus> {
    self.0.upgrade().map(|core| Bus { core })
  }

  /// Whether the bus is gone.
  pub fn is_dropped(&self) -> bool {
    self.0.strong_count() == 0
  }
}

/// Keeps shutdown from proceeding while an ingest is placing events.
struct IngestGuard<'a>(&'a AtomicUsize);

impl Drop for IngestGuard<'_> {
  fn drop(&mut self) {
    self.0.fetch_sub(1, Ordering::SeqCst);
  }
}

impl Bus {
  /// Starts a bus with an in-process adapter (memory or noop) built from `adapter`.
  pub fn start(config: BusConfig, adapter: &AdapterConfig, rt: Handle) -> Result<Bus> {
    config.validate()?;
    adapter.validate(&config)?;
    let adapter = crate::adapter::build_local(adapter)?;
    Self::start_with_adapter(config, adapter, rt)
  }

  /// Starts a bus over any adapter (network adapters, test doubles).
  pub fn start_with_adapter(
    config: BusConfig,
    adapter: Arc<dyn Adapter>,
    rt: Handle,
  ) -> Result<Bus> {
    config.validate()?;
    let (producer, lock) = match &config.producer_nonce_path {
      Some(path) => {
        let (id, lock) = identity::load_persistent(path)?;
        (id, Some(lock))
      }
      None => (identity::ephemeral(), None),
    };
    let abort = Arc::new(Signal::new());
    let ctx = Arc::new(DispatchContext {
      adapter: adapter.clone(),
      producer,
      batch: config.batch.clone(),
      timeout: config.adapter_timeout,
      retries: config.retries,
      abort: abort.clone(),
    });
    let closing = Arc::new(Signal::new());
    let shards = Arc::new(ShardSet::start(&config, ctx, rt.clone(), closing.clone()));
    if let Some(policy) = config.scaling.clone().filter(|p| p.auto) {
      crate::scaling::start_monitor(policy, Arc::downgrade(&shards), closing.clone(), &rt);
    }
    let bus = Bus {
      core: Arc::new(BusCore {
        config,
        adapter,
        shards,
        producer,
        clock: Clock::new(),
        state: AtomicU8::new(RUNNING),
        active_ingests: AtomicUsize::new(0),
        closing,
        abort,
        exiting: Arc::new(Signal::new()),
        released: Arc::new(Signal::new()),
        shutdown: Mutex::new(None),
        identity: Mutex::new(lock),
        members: Mutex::new(Vec::new()),
        rt,
      }),
    };
    Ok(bus)
  }

  /// A handle that does not keep this bus alive.
  pub fn downgrade(&self) -> WeakBus {
    WeakBus(Arc::downgrade(&self.core))
  }

  /// Test hook: the next `n` shard activations fail as if their dispatcher never started.
  #[cfg(feature = "test-hooks")]
  pub fn inject_activation_failures(&self, n: u32) {
    self.core.shards.inject_activation_failures(n);
  }

  /// Active shards now.
  pub fn num_shards(&self) -> u32 {
    self.core.shards.active_count()
  }

  /// Adds `n` shards; resolves with their ids once they are routable.
  pub async fn scale_up(&self, n: u32) -> Result<Vec<u32>> {
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    self.core.shards.scale_up(n).await
  }

  /// Removes the `n` highest shards; resolves with their ids once they drained.
  pub async fn scale_down(&self, n: u32) -> Result<Vec<u32>> {
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    self.core.shards.scale_down(n).await
  }

  pub fn producer(&self) -> ProducerId {
    self.core.producer
  }

  pub fn is_running(&self) -> bool {
    self.core.state.load(Ordering::SeqCst) == RUNNING
  }

  fn enter(&self) -> Result<IngestGuard<'_>> {
    self.core.active_ingests.fetch_add(1, Ordering::SeqCst);
    let guard = IngestGuard(&self.core.active_ingests);
    if self.core.state.load(Ordering::SeqCst) != RUNNING {
      return Err(BusError::shut_down());
    }
    Ok(guard)
  }

  fn check_size(&self, inc: &Incoming) -> Result<()> {
    self.check_event_size(inc.payload.len(), false)
  }

  /// Refuses an event of `size` bytes (of at least `size`, when `at_least`) over
  /// maxEventBytes: callers check before copying a large value out of JS.
  pub fn check_event_size(&self, size: usize, at_least: bool) -> Result<()> {
    let max = self.core.config.max_event_bytes;
    if size > max {
      let at_least = if at_least { "at least " } else { "" };
      return Err(BusError::invalid_event(format!(
        "event is {at_least}{size} bytes, over maxEventBytes ({max}); split it or raise maxEventBytes"
      )));
    }
    Ok(())
  }

  /// The shard an event would go to now.
  pub fn route(&self, inc: &Incoming) -> u32 {
    self
      .core
      .shards
      .with_routing(|shards| shard_for(shards, inc))
  }

  /// Accepts one event; returns its shard id.
  pub fn ingest(&self, inc: Incoming) -> Result<u32> {
    self.check_size(&inc)?;
    let _guard = self.enter()?;
    self.core.shards.with_routing(|shards| {
      let shard = shard_for(shards, &inc);
      shards[shard as usize].push(inc, self.core.clock.now_ms())?;
      Ok(shard)
    })
  }

  /// Accepts events in order and returns how many were accepted. Nothing is accepted when
  /// any event is invalid. Under `reject`, it stops at the first full shard: the events
  /// from the returned index on were not accepted (an error when that index is 0).
  pub fn ingest_batch(&self, events: Vec<Incoming>) -> Result<usize> {
    for (i, inc) in events.iter().enumerate() {
      self
        .check_size(inc)
        .map_err(|e| BusError::invalid_event(format!("events[{i}]: {}", e.message)))?;
    }
    let _guard = self.enter()?;
    // One clock read for the whole batch: its events share a timestamp.
    let now = self.core.clock.now_ms();
    self.core.shards.with_routing(|shards| {
      let mut accepted = 0;
      for inc in events {
        let shard = shard_for(shards, &inc);
        match shards[shard as usize].push(inc, now) {
          Ok(Pushed::Accepted) | Ok(Pushed::DroppedNewest) => accepted += 1,
          Err(e) if e.code == Code::Backpressure && accepted > 0 => break,
          Err(e) => return Err(e),
        }
      }
      Ok(accepted)
    })
  }

  /// Sets the flush barrier now (at the call, not when a task first runs) and returns a
  /// future that resolves once every event accepted before it is stored or dropped, and
  /// the adapter has flushed.
  pub fn begin_flush(
    &self,
  ) -> Result<impl std::future::Future<Output = Result<FlushReport>> + Send + 'static> {
    if self.core.state.load(Ordering::SeqCst) == CLOSED {
      return Err(BusError::shut_down());
    }
    let tickets: Vec<_> = self
      .core
      .shards
      .all_shards()
      .iter()
      .filter_map(|s| s.flush_ticket())
      .collect();
    let core = self.core.clone();
    Ok(async move {
      let mut report = FlushReport::default();
      for t in tickets {
        report.pending += t.pending;
        // A waiter is always completed (by delivery, drop or shutdown abandonment).
        report.dropped += t.done.await.unwrap_or(0);
      }
      report.stored = report.pending - report.dropped;
      match tokio::time::timeout(core.config.adapter_timeout, core.adapter.flush()).await {
        Ok(Ok(())) => Ok(report),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(BusError::new(
          Code::Timeout,
          format!(
            "adapter flush did not finish within adapterTimeoutMs ({} ms); check the backend",
            core.config.adapter_timeout.as_millis()
          ),
        )),
      }
    })
  }

  /// See [`Bus::begin_flush`].
  pub async fn flush(&self) -> Result<FlushReport> {
    self.begin_flush()?.await
  }

  /// Stops accepting, drains every ring, closes the adapter. Idempotent; concurrent callers
  /// share one shutdown. Bounded by `shutdownTimeoutMs` plus a short adapter close grace.
  pub async fn shutdown(&self) -> Stats {
    let mut rx = {
      let mut slot = self.core.shutdown.lock();
      match &*slot {
        Some(rx) => rx.clone(),
        None => {
          let (tx, rx) = watch::channel(None);
          *slot = Some(rx.clone());
          let core = self.core.clone();
          // A task, so the shutdown completes even if every caller stops waiting.
          self.core.rt.spawn(async move {
            let stats = run_shutdown(core).await;
            let _ = tx.send(Some(stats));
          });
          rx
        }
      }
    };
    let done = rx.wait_for(|v| v.is_some()).await;
    match done {
      Ok(v) => v.clone().unwrap_or_default(),
      Err(_) => self.stats(),
    }
  }

  /// Shuts down from a thread outside the runtime, waiting at most `bound`. Used at
  /// environment teardown, where JS runs no more: workers do not wait for their handlers
  /// (their events go back to the group). Returns None when the bound expired.
  pub fn shutdown_blocking(&self, bound: Duration) -> Option<Stats> {
    self.core.exiting.fire();
    let (tx, rx) = std::sync::mpsc::channel();
    let bus = self.clone();
    let abort = self.core.abort.clone();
    let cutoff = bound.saturating_sub(Duration::from_millis(200));
    self.core.rt.spawn(async move {
      // Stop retrying in time for the final counts to be reported.
      tokio::time::sleep(cutoff).await;
      abort.fire();
    });
    self.core.rt.spawn(async move {
      let _ = tx.send(bus.shutdown().await);
    });
    rx.recv_timeout(bound).ok()
  }

  /// Starts a shutdown without waiting for it (the JS object was garbage collected).
  pub fn shutdown_in_background(&self) {
    if self.core.shutdown.lock().is_some() {
      return;
    }
    let bus = self.clone();
    self.core.rt.spawn(async move {
      bus.shutdown().await;
    });
  }

  pub async fn poll(&self, req: PollRequest) -> Result<PollPage> {
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    let adapter = self.core.adapter.as_ref();
    let page = async {
      let shards = crate::consume::read_shards(adapter, self.core.shard_ids()).await;
      poll(adapter, &shards, req).await
    };
    // Shutdown ends a poll in flight (a slow filter, a backend that stopped answering).
    tokio::select! {
      page = page => page,
      _ = self.core.closing.wait() => Err(BusError::shut_down()),
    }
  }

  pub fn subscribe(&self, filter: Option<Filter>, start: StartAt) -> Result<Subscription> {
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    Ok(Subscription::new(
      self.core.adapter.clone(),
      self.core.shards.clone(),
      self.core.closing.clone(),
      filter,
      start,
    ))
  }

  pub fn cursor_scope(&self) -> String {
    self.core.adapter.cursor_scope()
  }

  /// Joins a consumer group (DESIGN §8); `bus.shutdown()` closes the member.
  pub async fn consumer(&self, opts: GroupOptions) -> Result<Member> {
    let member = self.start_member(opts, true).await?;
    self.track(member.done_signal())?;
    Ok(member)
  }

  /// Starts a `process()` worker over a new member of `opts.group`. Returns at once; the
  /// member joins in the background, retrying while the backend is unreachable.
  pub fn process(&self, opts: GroupOptions, worker: WorkerOptions) -> Result<Worker> {
    worker.validate()?;
    opts.validate()?;
    self.group_store()?;
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    let bus = self.clone();
    let closing = self.core.closing.clone();
    let join = crate::group::join::with_retries(opts, closing, move |opts| {
      let bus = bus.clone();
      async move { bus.start_member(opts, false).await }
    });
    let signals = crate::group::worker::BusSignals {
      closing: self.core.closing.clone(),
      exiting: self.core.exiting.clone(),
      released: self.core.released.clone(),
    };
    let w = Worker::start(join, worker, signals, &self.core.rt);
    self.track(w.done_signal())?;
    Ok(w)
  }

  async fn start_member(&self, opts: GroupOptions, follows_bus: bool) -> Result<Member> {
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    let start = Member::start(
      opts.clone(),
      self.core.adapter.clone(),
      self.core.shards.clone(),
      self.core.closing.clone(),
      follows_bus,
      &self.core.rt,
    );
    // A join waits at most a lease for a name still listed, plus this much for the store:
    // past that it is ERR_TIMEOUT, never a hang.
    let bound = opts.lease + opts.renew_every() + JOIN_BOUND;
    let group = opts.group.clone();
    let member = tokio::select! {
      m = tokio::time::timeout(bound, start) => m.map_err(|_| BusError::new(
        Code::Timeout,
        format!(
          "joining group {group:?} did not finish within {} ms: the store is unreachable or overloaded; try again (and check the server)",
          bound.as_millis()
        ),
      ))??,
      _ = self.core.closing.wait() => return Err(BusError::shut_down()),
    };
    if !self.is_running() {
      member.close().await;
      return Err(BusError::shut_down());
    }
    Ok(member)
  }

  /// Registers a member or worker for shutdown to wait on.
  fn track(&self, done: Arc<Signal>) -> Result<()> {
    let mut members = self.core.members.lock();
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    members.retain(|d| !d.is_fired());
    members.push(done);
    Ok(())
  }

  /// The group store, or why this adapter has none.
  fn group_store(&self) -> Result<&dyn GroupStore> {
    crate::group::member::group_store(self.core.adapter.as_ref())
  }

  /// A page of `group`'s dead letters, oldest first.
  pub async fn dead_letters(
    &self,
    group: &str,
    after: Option<&str>,
    limit: usize,
  ) -> Result<LetterPage> {
    crate::group::letters::check_page(group, after)?;
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    crate::group::letters::dead_letters(self.group_store()?, group, after, limit).await
  }

  /// Moves dead letters (by letter id) back into `group`: the member that owns each one's
  /// shard delivers it again. Returns how many were found and moved.
  pub async fn redeliver(&self, group: &str, ids: &[String]) -> Result<usize> {
    crate::group::check_name("group", group)?;
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    crate::group::letters::redeliver(self.group_store()?, group, ids).await
  }

  pub async fn is_healthy(&self) -> bool {
    self.is_running() && self.core.adapter.is_healthy().await
  }

  pub fn stats(&self) -> Stats {
    let mut s = Stats {
      shards: self.num_shards(),
      state: self.state_name(),
      corrupt_skipped: self.core.adapter.corrupt_skipped(),
      ..Stats::default()
    };
    for shard in self.core.shards.all_shards() {
      s.counters.add(&shard.counters());
      let o = shard.occupancy();
      s.queued += o.queued as u64;
      s.in_flight += o.in_flight as u64;
    }
    s
  }

  pub fn shard_stats(&self) -> Vec<ShardStats> {
    let running = self.is_running();
    self
      .core
      .shards
      .listed()
      .into_iter()
      .map(|(shard, state, event_rate)| {
        let counters = shard.counters();
        let o = shard.occupancy();
        ShardStats {
          id: shard.id,
          state: if running { state.name() } else { "stopped" },
          capacity: shard.capacity() as u64,
          queued: o.queued as u64,
          queued_bytes: o.queued_bytes as u64,
          in_flight: o.in_flight as u64,
          event_rate,
          counters,
          last_error: o.last_error,
        }
      })
      .collect()
  }

  fn state_name(&self) -> &'static str {
    match self.core.state.load(Ordering::SeqCst) {
      RUNNING => "running",
      SHUTTING_DOWN => "shuttingDown",
      _ => "closed",
    }
  }
}

impl BusCore {
  /// Every shard that may hold stored events, removed ones included.
  fn shard_ids(&self) -> Vec<u32> {
    self.shards.all_ids()
  }
}

/// The index in `shards` (the active table) that an event routes to.
fn shard_for(shards: &[Arc<crate::shard::Shard>], inc: &Incoming) -> u32 {
  routing::route(inc.key.as_deref(), &inc.payload, shards.len() as u32)
}

async fn run_shutdown(core: Arc<BusCore>) -> Stats {
  core.state.store(SHUTTING_DOWN, Ordering::SeqCst);
  // Ingest holds no lock across I/O, so in-flight calls finish within microseconds.
  while core.active_ingests.load(Ordering::SeqCst) != 0 {
    tokio::task::yield_now().await;
  }
  core.closing.fire();
  let deadline = Instant::now() + core.config.shutdown_timeout;
  // Consumers and workers finish their handlers and commit while the adapter is open.
  let members: Vec<Arc<Signal>> = core.members.lock().clone();
  for done in members {
    if tokio::time::timeout_at(deadline.into(), done.wait())
      .await
      .is_err()
    {
      // Workers still waiting for handlers stop waiting, so their close() settles.
      core.released.fire();
      break;
    }
  }
  let mut handles = core.shards.close_all();
  for h in handles.iter_mut() {
    if tokio::time::timeout_at(deadline.into(), &mut *h)
      .await
      .is_err()
    {
      // Bound reached: dispatchers drop what is left (counted) and exit promptly.
      core.abort.fire();
      break;
    }
  }
  for h in handles {
    // A handle already awaited to completion must not be polled again.
    if !h.is_finished() {
      let _ = h.await;
    }
  }
  let grace = deadline
    .saturating_duration_since(Instant::now())
    .max(ADAPTER_CLOSE_GRACE);
  let _ = tokio::time::timeout(grace, core.adapter.flush()).await;
  let _ = tokio::time::timeout(ADAPTER_CLOSE_GRACE, core.adapter.close()).await;
  core.state.store(CLOSED, Ordering::SeqCst);
  core.identity.lock().take();
  Bus { core: core.clone() }.stats()
}

//! The bus: one lifecycle state machine (running → shutting down → closed) over the shards,
//! their dispatchers and the adapter. Ingest, flush and reads are here; `shutdown.rs`
//! ends the bus, `groups.rs` starts its consumers and workers, `stats.rs` counts.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::adapter::group_store::{GroupStore, LetterPage};
use crate::adapter::{Adapter, AdapterConfig};
use crate::clock::Clock;
use crate::config::BusConfig;
use crate::consume::filter::Filter;
use crate::consume::poll::{poll, PollPage, PollRequest};
use crate::consume::subscribe::{StartAt, Subscription};
use crate::consume::sweep_cache::SweepCache;
use crate::dispatch::DispatchContext;
use crate::error::{BusError, Code, Result};
use crate::event::{Incoming, ProducerId};
use crate::group::inspect::{GroupView, ResetShard};
use crate::group::letters::{Bulk, Selection};
use crate::group::member::Member;
use crate::group::worker::{Worker, WorkerOptions};
use crate::group::GroupOptions;
use crate::identity::{self, IdentityLock};
use crate::routing;
use crate::shard::{CounterSnapshot, Pushed};
use crate::signal::Signal;
use crate::telemetry::Telemetry;
use crate::topology::ShardSet;

mod groups;
mod metrics;
mod shutdown;
mod stats;

pub use self::metrics::LagOf;
pub use self::stats::{ShardStats, Stats};

const RUNNING: u8 = 0;
const SHUTTING_DOWN: u8 = 1;
const CLOSED: u8 = 2;

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
  telemetry: Arc<Telemetry>,
  rt: Handle,
  /// What timestamp polls read ahead, for the next page (`sweep_cache.rs`).
  sweep_cache: Arc<SweepCache>,
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
    let telemetry = Arc::new(Telemetry::default());
    let ctx = Arc::new(DispatchContext {
      adapter: adapter.clone(),
      producer,
      batch: config.batch.clone(),
      timeout: config.adapter_timeout,
      retries: config.retries,
      abort: abort.clone(),
      telemetry: telemetry.clone(),
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
        telemetry,
        rt,
        sweep_cache: Default::default(),
      }),
    };
    Ok(bus)
  }

  /// What the bus measures (metrics and OpenTelemetry read it).
  pub fn telemetry(&self) -> &Telemetry {
    &self.core.telemetry
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

  pub async fn poll(&self, mut req: PollRequest) -> Result<PollPage> {
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    req.cache = Some(self.core.sweep_cache.clone());
    let adapter = self.core.adapter.as_ref();
    let page = async {
      let started = Instant::now();
      let shards = crate::consume::read_shards(adapter, self.core.shard_ids()).await;
      let page = poll(adapter, &shards, req).await;
      let t = &self.core.telemetry;
      match &page {
        Ok(p) => {
          t.receive.observe(started.elapsed(), None);
          t.polled.fetch_add(p.events.len() as u64, Ordering::Relaxed);
        }
        Err(e) => t.receive.observe(started.elapsed(), Some(e.code.as_str())),
      }
      page
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
      self.core.telemetry.clone(),
    ))
  }

  pub fn cursor_scope(&self) -> String {
    self.core.adapter.cursor_scope()
  }

  /// The cursor a read from `start` begins at (for `poll({ from })`).
  pub async fn start_cursor(&self, start: &StartAt) -> Result<crate::consume::cursor::Cursor> {
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    let adapter = self.core.adapter.as_ref();
    let shards = crate::consume::read_shards(adapter, self.core.shard_ids()).await;
    crate::consume::start::start_cursor(adapter, &shards, start).await
  }

  /// What the store holds on every shard it reports or this bus made (`bus.info()`): it
  /// reads the store, and joins no group.
  pub async fn info(&self) -> Result<StoreInfo> {
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    let adapter = self.core.adapter.as_ref();
    let shards = crate::consume::read_shards(adapter, self.core.shard_ids()).await;
    Ok(StoreInfo {
      shards: adapter.shard_info(&shards).await?,
      producers: adapter.producers().await?,
    })
  }

  pub async fn is_healthy(&self) -> bool {
    self.is_running() && self.core.adapter.is_healthy().await
  }
}

/// What the store holds (`bus.info()`).
#[derive(Debug, Clone)]
pub struct StoreInfo {
  pub shards: Vec<crate::adapter::ShardInfo>,
  /// Producers, where the store records them.
  pub producers: Option<Vec<crate::adapter::ProducerSeen>>,
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

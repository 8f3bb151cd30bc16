//! `bus.process()`: runs a handler over a group member's events with `concurrency` across
//! keys and one event at a time per key. A failed event is retried in place, with backoff,
//! while that key's later events wait behind it; past `maxDeliveries` it becomes a dead
//! letter and the key moves on. The handler itself runs in JS: the JS side takes runnable
//! events with [`Worker::next_runnable`] and reports each outcome with [`Worker::settle`]
//! (or the successes of a whole turn with [`Worker::settle_all`]). Each taken event has a
//! token, a number, so the JS side reports it without reading anything off the event.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::member::{Delivery, Member, MemberStats};
use crate::signal::Signal;

mod options;

pub use self::options::WorkerOptions;

/// Events taken from the member per request.
const FETCH: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
  pub member: MemberStats,
  /// Handlers running now.
  pub running: u64,
  /// Taken from the group, waiting for their key or a free slot.
  pub queued: u64,
  /// Failed and waiting for their retry.
  pub retrying: u64,
  /// Handlers that resolved.
  pub handled: u64,
  /// Handlers that threw or rejected.
  pub failed: u64,
}

/// Events handed to JS, numbered consecutively from `first`.
#[derive(Debug, Default)]
pub struct Taken {
  pub first: u32,
  pub deliveries: Vec<Delivery>,
}

#[derive(Default)]
struct State {
  /// Token → event whose handler runs. Tokens wrap around; fewer than `concurrency` are
  /// ever live at once.
  running: rustc_hash::FxHashMap<u32, (Delivery, Instant)>,
  next_token: u32,
  /// Key → its events waiting behind the one running or retrying. Present: key busy.
  keys: HashMap<Arc<str>, VecDeque<Delivery>>,
  runnable: VecDeque<Delivery>,
  retries: Vec<(Instant, Delivery)>,
}

struct Inner {
  /// Set once the member has joined (`process()` returns before that).
  member: tokio::sync::OnceCell<Member>,
  opts: WorkerOptions,
  st: Mutex<State>,
  /// Events became runnable or a slot freed.
  runnable: Notify,
  /// The last running handler settled.
  idle: Notify,
  retry_wake: Notify,
  signals: BusSignals,
  stop: Signal,
  done: Arc<Signal>,
  handled: AtomicU64,
  failed: AtomicU64,
}

/// The bus's signals a worker follows.
pub struct BusSignals {
  /// The bus is shutting down: close.
  pub closing: Arc<Signal>,
  /// JS runs no more (environment teardown): running handlers will never settle.
  pub exiting: Arc<Signal>,
  /// Shutdown's bound passed: stop waiting for handlers (their events go back).
  pub released: Arc<Signal>,
}

/// A running `process()` worker. Clones share it.
#[derive(Clone)]
pub struct Worker {
  inner: Arc<Inner>,
}

impl Worker {
  /// Starts a worker whose member comes from `join` (a member that does not follow the
  /// bus's shutdown: the worker closes it after its handlers finish).
  pub fn start<F>(
    join: F,
    opts: WorkerOptions,
    signals: BusSignals,
    rt: &tokio::runtime::Handle,
  ) -> Worker
  where
    F: std::future::Future<Output = Option<Member>> + Send + 'static,
  {
    let w = Worker {
      inner: Arc::new(Inner {
        member: tokio::sync::OnceCell::new(),
        opts,
        st: Mutex::new(State::default()),
        runnable: Notify::new(),
        idle: Notify::new(),
        retry_wake: Notify::new(),
        signals,
        stop: Signal::new(),
        done: Arc::new(Signal::new()),
        handled: AtomicU64::new(0),
        failed: AtomicU64::new(0),
      }),
    };
    rt.spawn(w.clone().feed(join));
    rt.spawn(w.clone().retry_timer());
    rt.spawn(w.clone().watch_shutdown());
    w
  }

  pub fn done_signal(&self) -> Arc<Signal> {
    self.inner.done.clone()
  }

  fn stopping(&self) -> bool {
    self.inner.stop.is_fired()
  }

  async fn feed<F>(self, join: F)
  where
    F: std::future::Future<Output = Option<Member>>,
  {
    let member = tokio::select! {
      m = join => m,
      _ = self.inner.stop.wait() => None,
    };
    let Some(member) = member else {
      // Closed before joining, or the bus shut down: nothing to hand over.
      self.inner.stop.fire();
      self.inner.done.fire();
      return;
    };
    let member = self.inner.member.get_or_init(|| async { member }).await;
    if self.stopping() {
      // `close()` ran while the member was joining and found none to close.
      member.close().await;
      self.inner.done.fire();
      return;
    }
    loop {
      let batch = tokio::select! {
        b = member.next_batch(FETCH, true) => b,
        _ = self.inner.stop.wait() => return,
      };
      if batch.is_empty() {
        return;
      }
      let mut st = self.inner.st.lock();
      for d in batch {
        place(&mut st, d);
      }
      drop(st);
      self.inner.runnable.notify_one();
    }
  }

  async fn retry_timer(self) {
    loop {
      let wake = self.inner.retry_wake.notified();
      tokio::pin!(wake);
      wake.as_mut().enable();
      let next = {
        let now = Instant::now();
        let mut st = self.inner.st.lock();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut st.retries)
          .into_iter()
          .partition(|(at, _)| *at <= now);
        st.retries = later;
        let moved = !due.is_empty();
        // A retry runs before the rest of its key (which waits behind it anyway).
        for (_, d) in due.into_iter().rev() {
          st.runnable.push_front(d);
        }
        if moved {
          self.inner.runnable.notify_one();
        }
        st.retries.iter().map(|(at, _)| *at).min()
      };
      let sleep = async {
        match next {
          Some(at) => tokio::time::sleep_until(at.into()).await,
          None => std::future::pending().await,
        }
      };
      tokio::select! {
        _ = sleep => {}
        _ = &mut wake => {}
        _ = self.inner.stop.wait() => return,
      }
    }
  }

  async fn watch_shutdown(self) {
    tokio::select! {
      _ = self.inner.signals.closing.wait() => self.close().await,
      _ = self.inner.stop.wait() => {}
    }
  }

  /// Runnable events for free handler slots (none when all are busy or nothing waits).
  pub fn take_runnable(&self) -> Taken {
    if self.stopping() {
      return Taken::default();
    }
    let mut st = self.inner.st.lock();
    let free = self.inner.opts.concurrency.saturating_sub(st.running.len());
    let first = st.next_token;
    let mut deliveries = Vec::new();
    // One clock read for the turn: they are handed to JS together.
    let now = Instant::now();
    while deliveries.len() < free {
      let Some(d) = st.runnable.pop_front() else {
        break;
      };
      let token = st.next_token;
      st.next_token = token.wrapping_add(1);
      st.running.insert(token, (d.clone(), now));
      deliveries.push(d);
    }
    if let Some(member) = self.inner.member.get() {
      member.handed_over(deliveries.len());
    }
    Taken { first, deliveries }
  }

  /// Waits for runnable events and a free slot; empty once the worker is closing.
  pub async fn next_runnable(&self) -> Taken {
    loop {
      let notified = self.inner.runnable.notified();
      tokio::pin!(notified);
      notified.as_mut().enable();
      if self.stopping() {
        return Taken::default();
      }
      let out = self.take_runnable();
      if !out.deliveries.is_empty() {
        return out;
      }
      tokio::select! {
        _ = notified => {}
        _ = self.inner.stop.wait() => {}
      }
    }
  }

  /// The handler of the event taken as `token` finished: `error` is None when it
  /// resolved, else what it threw, and `kind` the error's type for metrics (its `code` or
  /// class name). Unknown tokens are ignored.
  pub fn settle(&self, token: u32, error: Option<String>, kind: Option<&str>) {
    let mut st = self.inner.st.lock();
    self.settle_one(&mut st, token, error, kind);
    self.settled(st);
  }

  /// The handlers of all these tokens resolved (one lock each for a JS turn's worth).
  pub fn settle_all(&self, tokens: &[u32]) {
    let Some(member) = self.inner.member.get() else {
      return;
    };
    let mut st = self.inner.st.lock();
    // One clock read for the turn's settlements, not one per event.
    let (now, now_ms) = (Instant::now(), crate::clock::now_ms());
    let done: Vec<Delivery> = tokens
      .iter()
      .filter_map(|t| st.running.remove(t))
      .map(|(d, started)| {
        handled(
          member,
          &d,
          now.saturating_duration_since(started),
          now_ms,
          None,
        );
        d
      })
      .collect();
    member.ack_all(done.iter().map(|d| (d.event.shard, d.event.id.as_str())));
    self
      .inner
      .handled
      .fetch_add(done.len() as u64, Ordering::Relaxed);
    for d in &done {
      next_of_key(&mut st, d);
    }
    self.settled(st);
  }

  fn settled(&self, st: parking_lot::MutexGuard<'_, State>) {
    if st.running.is_empty() {
      self.inner.idle.notify_waiters();
    }
    drop(st);
    self.inner.runnable.notify_one();
  }

  fn settle_one(&self, st: &mut State, token: u32, error: Option<String>, kind: Option<&str>) {
    // Events come from the member, so it is set.
    let Some(member) = self.inner.member.get() else {
      return;
    };
    let Some((mut d, started)) = st.running.remove(&token) else {
      return;
    };
    let failed = error
      .as_ref()
      .map(|_| kind.unwrap_or(crate::telemetry::OTHER));
    handled(
      member,
      &d,
      started.elapsed(),
      crate::clock::now_ms(),
      failed,
    );
    let (shard, id) = (d.event.shard, d.event.id.as_str());
    match error {
      None => {
        self.inner.handled.fetch_add(1, Ordering::Relaxed);
        member.ack(shard, id);
        next_of_key(st, &d);
      }
      Some(message) => {
        self.inner.failed.fetch_add(1, Ordering::Relaxed);
        let max = member.options().max_deliveries;
        let retry = if d.deliveries >= max {
          None
        } else {
          member.retrying(shard, id)
        };
        match retry {
          Some(n) => {
            d.deliveries = n;
            let at = Instant::now() + self.inner.opts.delay(n);
            st.retries.push((at, d));
            self.inner.retry_wake.notify_one();
          }
          None => {
            let reason = format!(
              "handler failed on each of {} deliveries; last error: {message}",
              d.deliveries
            );
            member.dead_letter(shard, id, &reason);
            next_of_key(st, &d);
          }
        }
      }
    }
  }

  pub fn stats(&self) -> WorkerStats {
    let st = self.inner.st.lock();
    WorkerStats {
      member: self
        .inner
        .member
        .get()
        .map(Member::stats)
        .unwrap_or_default(),
      running: st.running.len() as u64,
      queued: (st.runnable.len() + st.keys.values().map(VecDeque::len).sum::<usize>()) as u64,
      retrying: st.retries.len() as u64,
      handled: self.inner.handled.load(Ordering::Relaxed),
      failed: self.inner.failed.load(Ordering::Relaxed),
    }
  }

  /// Stops taking events, waits for running handlers to settle (their acks are committed),
  /// gives back what was taken and not started, and closes the member. Idempotent. At
  /// environment teardown it stops waiting: the handlers still running never finish, so
  /// their events go back too and are delivered again (at least once).
  pub async fn close(&self) {
    if self.inner.stop.is_fired() {
      self.inner.done.wait().await;
      return;
    }
    self.inner.stop.fire();
    self.inner.runnable.notify_waiters();
    // A handler that never settles (or awaits this very close) is waited for at most
    // `ackWaitMs`: by then its event is due for redelivery anyway.
    let bound = self
      .inner
      .member
      .get()
      .map_or(crate::group::DEFAULT_ACK_WAIT, |m| m.options().ack_wait);
    let give_up = tokio::time::sleep(bound);
    tokio::pin!(give_up);
    loop {
      let idle = self.inner.idle.notified();
      tokio::pin!(idle);
      idle.as_mut().enable();
      let running = self.inner.st.lock().running.len();
      if running == 0 {
        break;
      }
      tokio::select! {
        _ = idle => {}
        _ = self.inner.signals.exiting.wait() => break,
        _ = self.inner.signals.released.wait() => break,
        _ = &mut give_up => {
          tracing::warn!(
            running,
            "worker.close(): {running} handler(s) still running after ackWaitMs ({} ms); closing without them, their events go back to the group (make handlers settle, or close with a longer ackWaitMs)",
            bound.as_millis()
          );
          break;
        }
      }
    }
    let waiting: Vec<Delivery> = {
      let mut st = self.inner.st.lock();
      let mut all: Vec<Delivery> = st.running.drain().map(|(_, (d, _))| d).collect();
      all.extend(st.runnable.drain(..));
      all.extend(st.retries.drain(..).map(|(_, d)| d));
      for (_, q) in st.keys.drain() {
        all.extend(q);
      }
      all
    };
    if let Some(member) = self.inner.member.get() {
      for d in waiting {
        member.give_back(d.event.shard, &d.event.id);
      }
      member.close().await;
      self.inner.done.fire();
    }
    // Else the joining task closes what it gets and fires `done`.
    self.inner.done.wait().await;
  }
}

/// Queues a new event: runnable unless an earlier event of its key is still in hand.
fn place(st: &mut State, d: Delivery) {
  match d.event.key.clone() {
    None => st.runnable.push_back(d),
    Some(k) => match st.keys.get_mut(&k) {
      Some(q) => q.push_back(d),
      None => {
        st.keys.insert(k, VecDeque::new());
        st.runnable.push_back(d);
      }
    },
  }
}

/// `d` is finished: its key's next event becomes runnable, or the key is free.
fn next_of_key(st: &mut State, d: &Delivery) {
  let Some(k) = &d.event.key else { return };
  let next = st.keys.get_mut(k).and_then(VecDeque::pop_front);
  match next {
    Some(n) => st.runnable.push_back(n),
    None => {
      st.keys.remove(k);
    }
  }
}

/// Records a finished handler: its time, and the time from the event's creation to `now_ms`.
fn handled(member: &Member, d: &Delivery, took: Duration, now_ms: u64, failed: Option<&str>) {
  let m = member.meters();
  m.process.observe(took, failed);
  let age = now_ms.saturating_sub(d.event.timestamp_ms);
  m.ingest_to_handled.observe(Duration::from_millis(age));
}

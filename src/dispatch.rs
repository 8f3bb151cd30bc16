//! One dispatcher task per shard: waits for events without polling, cuts adaptive batches,
//! writes them with a timeout, retries with backoff (`retry.rs`), and records
//! every event's outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::adapter::{Adapter, AdapterError, Outcome, WriteBatch, WriteResult};
use crate::config::BatchConfig;
use crate::event::{Event, ProducerId};
use crate::retry::backoff;
use crate::shard::{DropReason, Shard};
use crate::signal::Signal;
use crate::telemetry::{BatchRecord, Tally, Telemetry, MAX_LINKS};

pub struct DispatchContext {
  pub adapter: Arc<dyn Adapter>,
  pub producer: ProducerId,
  pub batch: BatchConfig,
  pub timeout: Duration,
  pub retries: u32,
  /// Fired when the shutdown bound expires: stop retrying and drop what is left.
  pub abort: Arc<Signal>,
  pub telemetry: Arc<Telemetry>,
}

/// Adaptive batching, the default (no `maxDelayMs`): a shard writes its first event at
/// once, and what arrives while a write is in flight forms the next batch. Only while
/// events arrive faster than [`ADAPTIVE_RATE`] does it wait [`ADAPTIVE_LINGER`] for more:
/// at that rate the wait gathers a real batch, and it spares the producer the wake-up of
/// this task for nearly every event, which costs more than ingesting the event.
pub const ADAPTIVE_RATE: f64 = 20_000.0;
/// The wait at high rates: the fixed linger of earlier versions, so throughput under load
/// is theirs.
pub const ADAPTIVE_LINGER: Duration = Duration::from_millis(2);

/// Batches taken closer together than this count as this far apart, so a burst of a few
/// events at once does not read as a high rate.
const PACE_FLOOR: Duration = Duration::from_millis(1);

/// The shard's recent event rate, from the batches it takes.
struct Pace {
  last_take: Instant,
  /// Events per second, smoothed over the last few batches.
  rate: f64,
}

impl Pace {
  fn new(now: Instant) -> Self {
    Pace {
      last_take: now,
      rate: 0.0,
    }
  }

  /// A batch of `events` was taken at `now` (a parameter, so the tests need no sleeps).
  fn taken(&mut self, events: usize, now: Instant) {
    let secs = now
      .duration_since(self.last_take)
      .max(PACE_FLOOR)
      .as_secs_f64();
    // Halving the old estimate forgets a burst within a few batches.
    self.rate = 0.5 * self.rate + 0.5 * (events as f64 / secs);
    self.last_take = now;
  }

  fn linger(&self, now: Instant) -> Duration {
    // A long silence since the last batch says the load has dropped.
    let quiet = now.saturating_duration_since(self.last_take) > PACE_FLOOR * 4;
    if self.rate >= ADAPTIVE_RATE && !quiet {
      ADAPTIVE_LINGER
    } else {
      Duration::ZERO
    }
  }
}

/// Runs until the shard is closed and empty, or the abort signal fires. `started` is told
/// once the task runs (a new shard becomes routable only then).
pub async fn run(
  shard: Arc<Shard>,
  ctx: Arc<DispatchContext>,
  started: Option<tokio::sync::oneshot::Sender<()>>,
) {
  if let Some(tx) = started {
    let _ = tx.send(());
  }
  let mut batch: Vec<Event> = Vec::with_capacity(ctx.batch.max_events.min(4096));
  let mut backlog = false;
  let mut pace = Pace::new(Instant::now());
  loop {
    if ctx.abort.is_fired() {
      abandon(&shard);
      return;
    }
    // Wait until a batch is worth cutting.
    loop {
      let notified = shard.wake.notified();
      tokio::pin!(notified);
      notified.as_mut().enable();
      let p = shard.peek();
      if p.len == 0 {
        if p.closing {
          return;
        }
        backlog = false;
        tokio::select! {
          _ = &mut notified => continue,
          _ = ctx.abort.wait() => break,
        }
      }
      let full = p.len >= ctx.batch.max_events || p.bytes >= ctx.batch.max_bytes;
      let linger = match ctx.batch.max_delay {
        Some(d) => d,
        None => pace.linger(Instant::now()),
      };
      if full || backlog || p.urgent || p.closing || linger.is_zero() {
        break;
      }
      // Linger for more events, but no longer than that after the first one.
      let deadline = p.nonempty_since.unwrap_or_else(Instant::now) + linger;
      if deadline <= Instant::now() {
        break;
      }
      tokio::select! {
        _ = &mut notified => continue,
        _ = tokio::time::sleep_until(deadline.into()) => break,
        _ = ctx.abort.wait() => break,
      }
    }
    if ctx.abort.is_fired() {
      abandon(&shard);
      return;
    }
    shard.take_batch(&mut batch);
    if batch.is_empty() {
      continue;
    }
    pace.taken(batch.len(), Instant::now());
    // A full batch means events arrive faster than we write: skip the linger next time.
    backlog = batch.len() >= ctx.batch.max_events;
    deliver(&shard, &ctx, &mut batch).await;
    batch.clear();
  }
}

/// Drops what the ring still holds once shutdown's bound ran out, and says so: every
/// dropped event is in some ERROR record's count.
fn abandon(shard: &Shard) {
  let n = shard.abandon_queued();
  if n > 0 {
    tracing::error!(
      shard = shard.id,
      dropped = n,
      stored = 0,
      reason = "dropped at shutdown: still queued when shutdownTimeoutMs ran out",
      "dropped {n} events: dropped at shutdown: still queued when shutdownTimeoutMs ran out"
    );
  }
}

/// Writes one batch until every event is stored or dropped.
async fn deliver(shard: &Shard, ctx: &DispatchContext, batch: &mut Vec<Event>) {
  let mut todo: Vec<Event> = std::mem::take(batch);
  let mut stored = 0u64;
  let mut dropped: Vec<u64> = Vec::new();
  let mut reason = DropReason::Adapter;
  let mut last_error: Option<AdapterError> = None;
  let mut attempt = 0u32;
  let started = Instant::now();
  let started_ms = crate::clock::now_ms() as f64;
  let record = ctx.telemetry.batches.enabled();
  let (events, links) = (todo.len(), if record { links(&todo) } else { Vec::new() });
  let mut latency = Tally::default();
  loop {
    let write = ctx.adapter.write(WriteBatch {
      shard: shard.id,
      producer: ctx.producer,
      events: &todo,
    });
    let result = tokio::select! {
      r = tokio::time::timeout(ctx.timeout, write) => r,
      _ = ctx.abort.wait() => {
        dropped.extend(todo.iter().map(|e| e.seq));
        reason = DropReason::Shutdown;
        break;
      }
    };
    let now_ms = crate::clock::now_ms();
    let mut stored_now = |ev: &Event| {
      latency.observe(Duration::from_millis(
        now_ms.saturating_sub(ev.timestamp_ms),
      ));
    };
    let mut retry: Vec<Event> = Vec::new();
    match result {
      Ok(Ok(WriteResult::AllStored)) => {
        stored += todo.len() as u64;
        todo.iter().for_each(&mut stored_now);
      }
      Ok(Ok(WriteResult::PerEvent(outcomes))) if outcomes.len() == todo.len() => {
        for (ev, outcome) in todo.drain(..).zip(outcomes) {
          match outcome {
            Outcome::Stored => {
              stored += 1;
              stored_now(&ev);
            }
            Outcome::Retry(e) => {
              retry.push(ev);
              last_error = Some(e);
            }
            Outcome::Reject(e) => {
              dropped.push(ev.seq);
              last_error = Some(e);
            }
          }
        }
      }
      Ok(Ok(WriteResult::PerEvent(outcomes))) => {
        last_error = Some(AdapterError::retryable(format!(
          "adapter returned {} outcomes for {} events",
          outcomes.len(),
          todo.len()
        )));
        retry = std::mem::take(&mut todo);
      }
      Ok(Err(e)) if e.retryable => {
        last_error = Some(e);
        retry = std::mem::take(&mut todo);
      }
      Ok(Err(e)) => {
        dropped.extend(todo.iter().map(|e| e.seq));
        last_error = Some(e);
      }
      Err(_) => {
        last_error = Some(AdapterError {
          code: crate::error::Code::Timeout,
          retryable: true,
          message: format!(
            "adapter write timed out after {} ms",
            ctx.timeout.as_millis()
          ),
        });
        retry = std::mem::take(&mut todo);
      }
    }
    if retry.is_empty() {
      break;
    }
    attempt += 1;
    if attempt > ctx.retries {
      dropped.extend(retry.iter().map(|e| e.seq));
      break;
    }
    let why = last_error.as_ref().map_or("", |e| e.message.as_str());
    let delay = backoff(attempt);
    let delay_ms = delay.as_millis() as u64;
    // The first retry of a batch is worth a warning; the rest of a streak only at debug.
    // (`tracing` takes the level as a constant, hence the macro.)
    macro_rules! retrying {
      ($log:ident) => {
        tracing::$log!(
          shard = shard.id,
          events = retry.len(),
          attempt,
          delay_ms,
          reason = why,
          "write failed, retrying: {why}"
        )
      };
    }
    if attempt == 1 {
      retrying!(warn);
    } else {
      retrying!(debug);
    }
    tokio::select! {
      _ = tokio::time::sleep(delay) => {}
      _ = ctx.abort.wait() => {
        dropped.extend(retry.iter().map(|e| e.seq));
        reason = DropReason::Shutdown;
        break;
      }
    }
    shard
      .counters
      .retried
      .fetch_add(retry.len() as u64, std::sync::atomic::Ordering::Relaxed);
    todo = retry;
  }
  let error = if dropped.is_empty() {
    None
  } else {
    match (reason, last_error.clone()) {
      (DropReason::Shutdown, Some(e)) => Some(format!("dropped at shutdown: {}", e.message)),
      // Aborted on its first attempt: no error was seen, but the drop must still be told.
      (DropReason::Shutdown, None) => Some(
        "dropped at shutdown: the write was still unanswered when shutdownTimeoutMs ran out"
          .to_string(),
      ),
      (_, Some(e)) if attempt > ctx.retries => Some(format!(
        "{} (gave up after {} retries)",
        e.message, ctx.retries
      )),
      (_, e) => e.map(|e| e.message),
    }
  };
  if let Some(why) = &error {
    tracing::error!(
      shard = shard.id,
      dropped = dropped.len(),
      stored,
      reason = why.as_str(),
      "dropped {} events: {why}",
      dropped.len()
    );
  }
  if !latency.is_empty() {
    ctx.telemetry.ingest_to_stored.add(&latency);
  }
  let failure = (!dropped.is_empty()).then(|| match reason {
    DropReason::Shutdown => crate::error::Code::ShutDown.as_str(),
    _ => last_error
      .as_ref()
      .map_or(crate::error::Code::Adapter, |e| e.code)
      .as_str(),
  });
  ctx.telemetry.send.observe(started.elapsed(), failure);
  if record {
    ctx.telemetry.batches.push(BatchRecord {
      shard: shard.id,
      events: events as u32,
      started_ms,
      duration: started.elapsed(),
      attempts: attempt + 1,
      error: failure,
      links,
    });
  }
  shard.finish_batch(stored, &dropped, reason, error);
  *batch = todo;
}

/// The batch's first distinct trace contexts (`traceparent`, `tracestate`), for the links
/// of its `send` span.
fn links(events: &[Event]) -> Vec<(Box<str>, Option<Box<str>>)> {
  let mut out: Vec<(Box<str>, Option<Box<str>>)> = Vec::new();
  for ev in events {
    let Some(h) = &ev.headers else { continue };
    let find = |name: &str| {
      h.iter()
        .find(|(k, _)| k.as_ref() == name)
        .map(|(_, v)| v.clone())
    };
    let Some(parent) = find("traceparent") else {
      continue;
    };
    if out.iter().any(|(p, _)| *p == parent) {
      continue;
    }
    out.push((parent, find("tracestate")));
    if out.len() == MAX_LINKS {
      break;
    }
  }
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn adaptive_pace_lingers_only_at_high_rates() {
    // Time is given, not slept: the test says what happens at which moment.
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut p = Pace::new(t0);
    assert_eq!(p.linger(t0), Duration::ZERO);
    // A burst of a few events at once is not a rate.
    p.taken(3, t0);
    p.taken(2, t0);
    assert_eq!(p.linger(t0), Duration::ZERO);
    // 1,000 events per batch, batches a millisecond apart: far over the threshold.
    for ms in 1..=3 {
      p.taken(1000, at(ms));
    }
    assert_eq!(p.linger(at(3)), ADAPTIVE_LINGER);
    // Then silence: no lingering for the next event.
    assert_eq!(p.linger(at(3 + 5)), Duration::ZERO);
    // A moderate rate (one event every 2 ms) brings the estimate down within a few batches.
    for k in 1..=8 {
      p.taken(1, at(8 + 2 * k));
    }
    assert_eq!(p.linger(at(24)), Duration::ZERO);
  }

  /// The option docs state the adaptive policy's numbers; they must be these.
  #[test]
  fn typings_state_the_adaptive_policy() {
    let dts = include_str!("../index.d.ts");
    let rate = format!(
      "faster than {},{:03}/s",
      ADAPTIVE_RATE as u64 / 1000,
      ADAPTIVE_RATE as u64 % 1000
    );
    let linger = format!("waits {} ms for more", ADAPTIVE_LINGER.as_millis());
    assert!(
      dts.contains(&rate) && dts.contains(&linger),
      "index.d.ts must say {rate:?} and {linger:?}"
    );
  }
}

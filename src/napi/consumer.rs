//! The `Consumer` class: a consumer group member, iterated with `for await`.
//!
//! Like a subscription, events come from the engine in small batches and `next()` hands
//! out buffered ones on the JS thread. Batches stay small because an event's ack deadline
//! starts when the batch is taken.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use parking_lot::Mutex;

use crate::error::{BusError, Code};
use crate::group::member::{Delivery, Member};
use crate::napi::convert::{self, ConsumerStats, DeliveryValue};
use crate::napi::errors::{resolved, spawn, throw};
use crate::napi::scope::type_name;
use crate::napi::scope::Scope;
use crate::napi::subscription::async_iterable;

/// Deliveries taken per native hop.
const BATCH: usize = 64;

/// One step of the iteration, as `for await` expects it.
///
/// @typeParam T - The events' type, as `EventBus<T>` declares it.
#[napi(object, object_from_js = false)]
pub struct ConsumerStep {
  pub done: bool,
  #[napi(ts_type = "GroupEvent<T>")]
  pub value: Option<DeliveryValue>,
}

// Declares the typings only: `nack` reads its options itself, to refuse what a plain
// conversion would wrap or round.
/// Options of `consumer.nack()`.
#[napi(object)]
#[allow(dead_code)]
pub struct NackOptions {
  /// Deliver again no sooner than this many milliseconds: a whole number from 0 to
  /// 86400000 (else `ERR_INVALID_CONFIG`). Default: 0.
  pub delay_ms: Option<u32>,
}

struct Shared {
  buffer: VecDeque<Delivery>,
  done: bool,
  /// A `next()` is taking a batch from the member; others wait for it (`filled`) rather
  /// than take batches of their own that nobody is waiting for.
  fetching: bool,
}

/// What concurrent `next()` calls share: the buffer, and the signal that it changed.
struct Queue {
  shared: Mutex<Shared>,
  filled: tokio::sync::Notify,
}

impl Queue {
  /// The next delivery: from the buffer, or from a batch this call (or a concurrent one)
  /// takes from the member. None once the member is closed.
  async fn next(&self, member: &Member) -> Option<Delivery> {
    loop {
      let filled = self.filled.notified();
      tokio::pin!(filled);
      let fetch = {
        let mut shared = self.shared.lock();
        if let Some(d) = shared.buffer.pop_front() {
          member.handed_over(1);
          return Some(d);
        }
        if shared.done {
          return None;
        }
        if shared.fetching {
          // Registered before the lock is released: a fill after this point wakes it.
          filled.as_mut().enable();
          false
        } else {
          shared.fetching = true;
          true
        }
      };
      if !fetch {
        filled.await;
        continue;
      }
      let batch = member.next_batch(BATCH, false).await;
      {
        let mut shared = self.shared.lock();
        shared.fetching = false;
        if batch.is_empty() {
          shared.done = true;
        }
        shared.buffer.extend(batch);
      }
      self.filled.notify_waiters();
    }
  }
}

/// A member of a consumer group (`bus.consumer()`). Iterate it with `for await`; ack each
/// event. `break` ends the iteration and closes the member, as `close()` does.
///
/// @typeParam T - The events' type, as `EventBus<T>` declares it.
#[napi]
pub struct Consumer {
  member: Member,
  queue: Arc<Queue>,
}

fn step(d: Option<Delivery>) -> ConsumerStep {
  ConsumerStep {
    done: d.is_none(),
    value: d.map(DeliveryValue),
  }
}

/// `(shardId, id)` of an event object, as delivered. Anything else (null, a number, an
/// object whose getters throw) is `ERR_INVALID_EVENT`.
pub(crate) fn event_ref(
  env: &Env,
  ev: Unknown<'_>,
  method: &str,
) -> std::result::Result<(u32, String), BusError> {
  let bad = |why: &str| {
    BusError::new(
      Code::InvalidEvent,
      format!("{method}() takes an event this consumer delivered (with its shardId and id); {why}"),
    )
  };
  let read = |scope: &mut Scope<'_>| {
    // SAFETY: the value belongs to this running call.
    let ev = unsafe { scope.adopt(ev.raw()) };
    if scope.type_of(ev) != napi::sys::ValueType::napi_object {
      return Err(bad(&format!("got {}", type_name(scope.type_of(ev)))));
    }
    let what = format!("{method}(event): event.shardId");
    let shard = scope.named(ev, c"shardId", &what)?;
    let shard = scope
      .double(shard)
      .filter(|s| *s >= 0.0 && s.fract() == 0.0 && *s <= u32::MAX as f64)
      .ok_or_else(|| bad("its shardId is not a shard number"))?;
    let what = format!("{method}(event): event.id");
    let id = scope.named(ev, c"id", &what)?;
    if scope.type_of(id) != napi::sys::ValueType::napi_string {
      return Err(bad("its id is not a string"));
    }
    let id = scope.string_bytes(id, &what, |_| Ok(()))?;
    Ok((shard as u32, String::from_utf8_lossy(&id).into_owned()))
  };
  // SAFETY: called from a napi-rs method, on the JS thread, within the call of `env`.
  unsafe { Scope::with(env.raw(), read) }
}

/// `options.delayMs` of `nack()`: a whole number of milliseconds in range, or 0 when absent.
fn nack_delay(env: &Env, options: Option<Unknown<'_>>) -> std::result::Result<u64, BusError> {
  let Some(options) = options else {
    return Ok(0);
  };
  let read = |scope: &mut Scope<'_>| {
    // SAFETY: the value belongs to this running call.
    let o = unsafe { scope.adopt(options.raw()) };
    match scope.type_of(o) {
      napi::sys::ValueType::napi_undefined | napi::sys::ValueType::napi_null => return Ok(0),
      napi::sys::ValueType::napi_object => {}
      other => {
        return Err(BusError::config(format!(
          "nack options must be an object, got {}",
          type_name(other)
        )))
      }
    }
    let v = scope
      .named(o, c"delayMs", "nack options.delayMs")
      .map_err(|e| BusError::config(e.message))?;
    if matches!(
      scope.type_of(v),
      napi::sys::ValueType::napi_undefined | napi::sys::ValueType::napi_null
    ) {
      return Ok(0);
    }
    match scope.double(v) {
      Some(d) if d.fract() == 0.0 && (0.0..=MAX_NACK_DELAY_MS as f64).contains(&d) => Ok(d as u64),
      Some(d) => Err(BusError::config(format!(
        "nack options.delayMs must be a whole number of milliseconds from 0 to {MAX_NACK_DELAY_MS}, got {d}"
      ))),
      None => Err(BusError::config(format!(
        "nack options.delayMs must be a number of milliseconds, got {}",
        type_name(scope.type_of(v))
      ))),
    }
  };
  // SAFETY: called from a napi-rs method, on the JS thread, within the call of `env`.
  unsafe { Scope::with(env.raw(), read) }
}

/// Longest `nack` delay: a day, as for `ackWaitMs`.
const MAX_NACK_DELAY_MS: u64 = 86_400_000;

impl Consumer {
  pub fn new(member: Member) -> Self {
    Consumer {
      member,
      queue: Arc::new(Queue {
        shared: Mutex::new(Shared {
          buffer: VecDeque::new(),
          done: false,
          fetching: false,
        }),
        filled: tokio::sync::Notify::new(),
      }),
    }
  }

  /// Wraps the native object so `for await` finds `[Symbol.asyncIterator]`.
  pub fn into_iterable(self, env: &Env) -> Result<Object<'_>> {
    let instance = self.into_instance(env)?;
    async_iterable(env, instance.as_object(env))
  }

  /// Gives back what was taken and not yet yielded: the next owner delivers it.
  fn give_back_buffer(&self) {
    let mut shared = self.queue.shared.lock();
    shared.done = true;
    for d in shared.buffer.drain(..) {
      self.member.give_back(d.event.shard, &d.event.id);
    }
    drop(shared);
    // Waiting next() calls end.
    self.queue.filled.notify_waiters();
  }
}

impl Drop for Consumer {
  fn drop(&mut self) {
    // Garbage collected without close: hand the shards over instead of holding them.
    self.member.close_in_background();
  }
}

#[napi]
impl Consumer {
  /// The group's name.
  #[napi(getter)]
  pub fn group(&self) -> String {
    self.member.options().group.clone()
  }

  /// This member's name.
  #[napi(getter)]
  pub fn member(&self) -> String {
    self.member.options().member.clone()
  }

  /// The next event (`{ done: false, value }`), or `{ done: true }` once closed.
  #[napi(ts_return_type = "Promise<ConsumerStep<T>>")]
  pub fn next<'env>(
    &self,
    env: &'env Env,
  ) -> std::result::Result<PromiseRaw<'env, ConsumerStep>, Error<Code>> {
    {
      let mut shared = self.queue.shared.lock();
      if let Some(d) = shared.buffer.pop_front() {
        self.member.handed_over(1);
        return resolved(env, step(Some(d)));
      }
      if shared.done {
        return resolved(env, step(None));
      }
    }
    let member = self.member.clone();
    let queue = self.queue.clone();
    spawn(env, async move { Ok(queue.next(&member).await) }, |_, d| {
      Ok(step(d))
    })
    .map_err(|e| throw(BusError::new(Code::Internal, e.reason)))
  }

  /// Ends the iteration (called by `break`) and closes the member.
  #[napi(js_name = "return", ts_return_type = "Promise<ConsumerStep<T>>")]
  pub fn finish<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ConsumerStep>> {
    self.give_back_buffer();
    let member = self.member.clone();
    spawn(
      env,
      async move {
        member.close().await;
        Ok(())
      },
      |_, ()| Ok(step(None)),
    )
  }

  /// Acknowledges a delivered event: it is done for the group. Synchronous; acks reach the
  /// backend in batches (within about 50 ms). Returns false when this member no longer
  /// holds the event (already acked, dead-lettered, or its shard moved to another member,
  /// which delivers it again). Throws `ERR_INVALID_EVENT` for an object without
  /// `shardId` and `id`.
  #[napi(ts_args_type = "event: GroupEvent<T>")]
  pub fn ack(&self, env: &Env, event: Unknown) -> Result<bool, Code> {
    let (shard, id) = event_ref(env, event, "ack").map_err(throw)?;
    Ok(self.member.ack(shard, &id))
  }

  /// Delivers the event again, no sooner than `delayMs` (it counts as a delivery toward
  /// `maxDeliveries`). Returns false when this member does not hold it.
  #[napi(ts_args_type = "event: GroupEvent<T>, options?: NackOptions | undefined | null")]
  pub fn nack(&self, env: &Env, event: Unknown, options: Option<Unknown>) -> Result<bool, Code> {
    let (shard, id) = event_ref(env, event, "nack").map_err(throw)?;
    let delay = nack_delay(env, options).map_err(throw)?;
    Ok(self.member.nack(shard, &id, Duration::from_millis(delay)))
  }

  /// For a long handler: pushes the event's ack deadline to `ackWaitMs` from now. Returns
  /// false when this member does not hold it.
  #[napi(ts_args_type = "event: GroupEvent<T>")]
  pub fn touch(&self, env: &Env, event: Unknown) -> Result<bool, Code> {
    let (shard, id) = event_ref(env, event, "touch").map_err(throw)?;
    Ok(self.member.touch(shard, &id))
  }

  /// Commits acks so far, gives this member's shards up and leaves the group; its unacked
  /// events go to the other members. Idempotent; iteration ends.
  #[napi]
  pub fn close<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
    self.give_back_buffer();
    let member = self.member.clone();
    spawn(
      env,
      async move {
        member.close().await;
        Ok(())
      },
      |_, ()| Ok(()),
    )
  }

  /// Counters as plain numbers, and the shards this member owns.
  #[napi]
  pub fn stats(&self) -> ConsumerStats {
    convert::consumer_stats(&self.member.stats())
  }
}

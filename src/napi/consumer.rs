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
use crate::napi::errors::{spawn, throw};
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

/// Options of `consumer.nack()`.
#[napi(object)]
pub struct NackOptions {
  /// Deliver again no sooner than this (0 to 86400000). Default: 0.
  pub delay_ms: Option<u32>,
}

struct Shared {
  buffer: VecDeque<Delivery>,
  done: bool,
}

/// A member of a consumer group (`bus.consumer()`). Iterate it with `for await`; ack each
/// event. `break` ends the iteration and closes the member, as `close()` does.
///
/// @typeParam T - The events' type, as `EventBus<T>` declares it.
#[napi]
pub struct Consumer {
  member: Member,
  shared: Arc<Mutex<Shared>>,
}

fn step(d: Option<Delivery>) -> ConsumerStep {
  ConsumerStep {
    done: d.is_none(),
    value: d.map(DeliveryValue),
  }
}

/// `(shardId, id)` of an event object, as delivered.
pub(crate) fn event_ref(ev: &Object, method: &str) -> std::result::Result<(u32, String), BusError> {
  let bad = || {
    BusError::new(
      Code::InvalidEvent,
      format!("{method}() takes an event this consumer delivered (with its shardId and id)"),
    )
  };
  let shard: Option<f64> = ev.get_named_property("shardId").map_err(|_| bad())?;
  let id: Option<String> = ev.get_named_property("id").map_err(|_| bad())?;
  match (shard, id) {
    (Some(s), Some(id)) if s >= 0.0 && s.fract() == 0.0 && s <= u32::MAX as f64 => {
      Ok((s as u32, id))
    }
    _ => Err(bad()),
  }
}

impl Consumer {
  pub fn new(member: Member) -> Self {
    Consumer {
      member,
      shared: Arc::new(Mutex::new(Shared {
        buffer: VecDeque::new(),
        done: false,
      })),
    }
  }

  /// Wraps the native object so `for await` finds `[Symbol.asyncIterator]`.
  pub fn into_iterable(self, env: &Env) -> Result<Object<'_>> {
    let instance = self.into_instance(env)?;
    async_iterable(env, instance.as_object(env))
  }

  /// Gives back what was taken and not yet yielded: the next owner delivers it.
  fn give_back_buffer(&self) {
    let mut shared = self.shared.lock();
    shared.done = true;
    for d in shared.buffer.drain(..) {
      self.member.give_back(d.event.shard, &d.event.id);
    }
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
  pub fn next<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ConsumerStep>> {
    {
      let mut shared = self.shared.lock();
      if let Some(d) = shared.buffer.pop_front() {
        return PromiseRaw::resolve(env, step(Some(d)));
      }
      if shared.done {
        return PromiseRaw::resolve(env, step(None));
      }
    }
    let member = self.member.clone();
    let shared = self.shared.clone();
    spawn(
      env,
      async move { Ok(member.next_batch(BATCH, false).await) },
      move |_, batch: Vec<Delivery>| -> std::result::Result<ConsumerStep, BusError> {
        let mut shared = shared.lock();
        shared.buffer.extend(batch);
        let d = shared.buffer.pop_front();
        if d.is_none() {
          shared.done = true;
        }
        Ok(step(d))
      },
    )
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
  pub fn ack(&self, event: Object) -> Result<bool, Code> {
    let (shard, id) = event_ref(&event, "ack").map_err(throw)?;
    Ok(self.member.ack(shard, &id))
  }

  /// Delivers the event again, no sooner than `delayMs` (it counts as a delivery toward
  /// `maxDeliveries`). Returns false when this member does not hold it.
  #[napi(ts_args_type = "event: GroupEvent<T>, options?: NackOptions | undefined | null")]
  pub fn nack(&self, event: Object, options: Option<NackOptions>) -> Result<bool, Code> {
    let (shard, id) = event_ref(&event, "nack").map_err(throw)?;
    let delay = options.and_then(|o| o.delay_ms).unwrap_or(0);
    crate::config::check_range("nack options.delayMs", delay as u64, 0, 86_400_000)
      .map_err(throw)?;
    Ok(
      self
        .member
        .nack(shard, &id, Duration::from_millis(delay as u64)),
    )
  }

  /// For a long handler: pushes the event's ack deadline to `ackWaitMs` from now. Returns
  /// false when this member does not hold it.
  #[napi(ts_args_type = "event: GroupEvent<T>")]
  pub fn touch(&self, event: Object) -> Result<bool, Code> {
    let (shard, id) = event_ref(&event, "touch").map_err(throw)?;
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

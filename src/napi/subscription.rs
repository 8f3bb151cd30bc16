//! The async iterator returned by `subscribe()`.
//!
//! Events arrive from the engine in pages; `next()` hands out buffered events with an
//! already-resolved promise on the JS thread and only crosses to the runtime to fetch
//! (or wait for) the next page. One native hop per event would cost far more than the
//! event itself.

use std::collections::VecDeque;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use parking_lot::Mutex;

use crate::consume::subscribe::Subscription as EngineSubscription;
use crate::error::{BusError, Code};
use crate::event::StoredEvent;
use crate::napi::convert::EventValue;
use crate::napi::errors::{resolved, spawn, throw};
use crate::napi::scope::Scope;
use crate::signal::Signal;

/// One step of the iteration, as `for await` expects it.
///
/// @typeParam T - The events' type, as `EventBus<T>` declares it.
#[napi(object, object_from_js = false)]
pub struct SubscriptionStep {
  pub done: bool,
  #[napi(ts_type = "BusEvent<T>")]
  pub value: Option<EventValue>,
}

struct Shared {
  buffer: VecDeque<StoredEvent>,
  done: bool,
}

/// Events from `subscribe()`. Use with `for await`; breaking out of the loop releases it,
/// and `shutdown()` ends it.
///
/// @typeParam T - The events' type, as `EventBus<T>` declares it.
#[napi]
pub struct Subscription {
  engine: Arc<tokio::sync::Mutex<EngineSubscription>>,
  shared: Arc<Mutex<Shared>>,
  stop: Arc<Signal>,
}

fn step(ev: Option<StoredEvent>) -> SubscriptionStep {
  SubscriptionStep {
    done: ev.is_none(),
    value: ev.map(EventValue),
  }
}

impl Subscription {
  pub fn new(sub: EngineSubscription) -> Self {
    let stop = sub.stop_handle();
    Subscription {
      engine: Arc::new(tokio::sync::Mutex::new(sub)),
      shared: Arc::new(Mutex::new(Shared {
        buffer: VecDeque::new(),
        done: false,
      })),
      stop,
    }
  }

  /// Wraps the native object so `for await` finds `[Symbol.asyncIterator]`.
  pub fn into_iterable(self, env: &Env) -> Result<Object<'_>> {
    let instance = self.into_instance(env)?;
    async_iterable(env, instance.as_object(env))
  }
}

/// Gives `object` a `[Symbol.asyncIterator]` returning itself, so `for await` takes it.
pub(crate) fn async_iterable<'env>(env: &'env Env, object: Object<'env>) -> Result<Object<'env>> {
  let run = |scope: &mut Scope<'_>| {
    // SAFETY: `object` was created in this running call.
    let target = unsafe { scope.adopt(object.raw()) };
    let global = scope.global()?;
    let symbol = scope.named(global, c"Symbol", "Symbol")?;
    let key = scope.named(symbol, c"asyncIterator", "Symbol.asyncIterator")?;
    let returns_this = scope
      .script("(function () { return this })")
      .map_err(|reason| BusError::new(Code::Internal, reason))?;
    scope.set_property(target, key, returns_this)
  };
  // SAFETY: napi-rs runs the calling method on the JS thread within the call of `env`.
  unsafe { Scope::with(env.raw(), run) }.map_err(|e| Error::from_reason(e.message))?;
  Ok(object)
}

impl Drop for Subscription {
  fn drop(&mut self) {
    self.stop.fire();
  }
}

#[napi]
impl Subscription {
  /// The next event (`{ done: false, value }`), or `{ done: true }` once ended.
  #[napi(ts_return_type = "Promise<SubscriptionStep<T>>")]
  pub fn next<'env>(
    &self,
    env: &'env Env,
  ) -> std::result::Result<PromiseRaw<'env, SubscriptionStep>, Error<Code>> {
    {
      let mut shared = self.shared.lock();
      if let Some(ev) = shared.buffer.pop_front() {
        return resolved(env, step(Some(ev)));
      }
      if shared.done || self.stop.is_fired() {
        return resolved(env, step(None));
      }
    }
    let engine = self.engine.clone();
    let shared = self.shared.clone();
    spawn(
      env,
      async move { engine.lock().await.next_batch().await },
      move |_, batch: Vec<StoredEvent>| -> std::result::Result<SubscriptionStep, BusError> {
        let mut shared = shared.lock();
        shared.buffer.extend(batch);
        let ev = shared.buffer.pop_front();
        if ev.is_none() {
          shared.done = true;
        }
        Ok(step(ev))
      },
    )
    .map_err(|e| throw(BusError::new(Code::Internal, e.reason)))
  }

  /// Ends the subscription (called by `break`); pending and later `next()` calls finish.
  #[napi(js_name = "return", ts_return_type = "Promise<SubscriptionStep<T>>")]
  pub fn finish<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, SubscriptionStep>> {
    self.stop.fire();
    let mut shared = self.shared.lock();
    shared.done = true;
    shared.buffer.clear();
    PromiseRaw::resolve(env, step(None))
  }
}

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
use crate::error::BusError;
use crate::event::StoredEvent;
use crate::napi::convert::EventValue;
use crate::napi::errors::spawn;
use crate::signal::Signal;

/// One step of the iteration, as `for await` expects it.
#[napi(object, object_from_js = false)]
pub struct SubscriptionStep {
  pub done: bool,
  #[napi(ts_type = "BusEvent")]
  pub value: Option<EventValue>,
}

struct Shared {
  buffer: VecDeque<StoredEvent>,
  done: bool,
}

/// Events from `subscribe()`. Use with `for await`; breaking out of the loop releases it,
/// and `shutdown()` ends it.
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
    let object = instance.as_object(env);
    let global = env.get_global()?;
    // `Symbol` is a function, so read `Symbol.asyncIterator` through the raw API.
    let symbol: Unknown = global.get_named_property("Symbol")?;
    let mut key = std::ptr::null_mut();
    // SAFETY: `symbol` belongs to the current handle scope; the name is NUL-terminated.
    let status = unsafe {
      sys::napi_get_named_property(env.raw(), symbol.raw(), c"asyncIterator".as_ptr(), &mut key)
    };
    if status != sys::Status::napi_ok {
      return Err(Error::from_reason("Symbol.asyncIterator is not available"));
    }
    let make: Function<&str, Function<(), Unknown>> = global.get_named_property("Function")?;
    let returns_this = make.call("return this")?;
    // SAFETY: all three values belong to the current handle scope.
    let status =
      unsafe { sys::napi_set_property(env.raw(), object.raw(), key, returns_this.raw()) };
    if status != sys::Status::napi_ok {
      return Err(Error::from_reason(
        "could not make the subscription iterable",
      ));
    }
    Ok(object)
  }
}

impl Drop for Subscription {
  fn drop(&mut self) {
    self.stop.fire();
  }
}

#[napi]
impl Subscription {
  /// The next event (`{ done: false, value }`), or `{ done: true }` once ended.
  #[napi]
  pub fn next<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, SubscriptionStep>> {
    {
      let mut shared = self.shared.lock();
      if let Some(ev) = shared.buffer.pop_front() {
        return PromiseRaw::resolve(env, step(Some(ev)));
      }
      if shared.done || self.stop.is_fired() {
        return PromiseRaw::resolve(env, step(None));
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
  }

  /// Ends the subscription (called by `break`); pending and later `next()` calls finish.
  #[napi(js_name = "return")]
  pub fn finish<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, SubscriptionStep>> {
    self.stop.fire();
    let mut shared = self.shared.lock();
    shared.done = true;
    shared.buffer.clear();
    PromiseRaw::resolve(env, step(None))
  }
}

//! The `Worker` class returned by `bus.process()`.
//!
//! The engine decides which events may run (one per key, `concurrency` at once, retries
//! first); a small JS loop compiled here takes them, calls the handler and reports each
//! outcome. Handlers run on the JS thread as any promise-returning function does.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::error::{BusError, Code};
use crate::group::member::Delivery;
use crate::group::worker::Worker as EngineWorker;
use crate::napi::consumer::event_ref;
use crate::napi::convert::{self, DeliveryList, WorkerStats};
use crate::napi::errors::{spawn, throw};
use crate::napi::scope::Scope;

/// The JS side of a worker: take runnable events, run the handler, settle each with its
/// error's message (or undefined). A handler that throws synchronously counts as failed;
/// an error whose message cannot be read is described instead.
const DRIVER_JS: &str = r#"(function (worker, handler) {
  const describe = (e) => {
    try {
      if (e !== null && typeof e === 'object' && 'message' in e) return String(e.message)
      return String(e)
    } catch (_) {
      return 'handler failed with a value that cannot be described'
    }
  }
  const run = (ev) => {
    let p
    try {
      p = handler(ev)
    } catch (e) {
      worker.settle(ev, describe(e))
      return
    }
    if (p !== null && (typeof p === 'object' || typeof p === 'function') && typeof p.then === 'function') {
      p.then(() => worker.settle(ev), (e) => worker.settle(ev, describe(e)))
    } else {
      worker.settle(ev)
    }
  }
  const loop = async () => {
    for (;;) {
      const batch = await worker.take()
      if (batch.length === 0) return
      for (const ev of batch) run(ev)
    }
  }
  loop()
})"#;

/// A running `process()` worker.
#[napi]
pub struct Worker {
  worker: EngineWorker,
}

impl Worker {
  /// Starts the JS loop over `handler` and returns the worker object.
  pub fn launch<'env>(
    env: &'env Env,
    worker: EngineWorker,
    handler: Unknown<'_>,
  ) -> std::result::Result<Object<'env>, BusError> {
    let instance = Worker { worker }
      .into_instance(env)
      .map_err(|e| BusError::new(Code::Internal, e.reason))?;
    let object = instance.as_object(env);
    let run = |scope: &mut Scope<'_>| {
      // SAFETY: both values belong to this running call.
      let (target, handler) = unsafe { (scope.adopt(object.raw()), scope.adopt(handler.raw())) };
      let driver = scope
        .script(DRIVER_JS)
        .map_err(|reason| BusError::new(Code::Internal, reason))?;
      scope.call(driver, [target, handler]).map_err(|reason| {
        BusError::new(Code::Internal, format!("starting the worker: {reason}"))
      })?;
      Ok::<(), BusError>(())
    };
    // SAFETY: called from a napi-rs method, on the JS thread, within the call of `env`.
    unsafe { Scope::with(env.raw(), run) }?;
    Ok(object)
  }
}

#[napi]
impl Worker {
  /// Runnable events (the driver's next batch); empty once the worker is closing.
  #[napi(skip_typescript)]
  pub fn take<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, DeliveryList>> {
    let ready: Vec<Delivery> = self.worker.take_runnable();
    if !ready.is_empty() {
      return PromiseRaw::resolve(env, DeliveryList(ready));
    }
    let worker = self.worker.clone();
    spawn(
      env,
      async move { Ok(worker.next_runnable().await) },
      |_, batch| Ok(DeliveryList(batch)),
    )
  }

  /// The handler finished with `event`: `error` is its error's message when it failed.
  #[napi(skip_typescript)]
  pub fn settle(&self, event: Object, error: Option<String>) -> Result<(), Code> {
    let (shard, id) = event_ref(&event, "settle").map_err(throw)?;
    self.worker.settle(shard, &id, error);
    Ok(())
  }

  /// Stops taking events, waits for running handlers to finish and their acks to be
  /// committed, then leaves the group (events taken and not started go to the other
  /// members). Idempotent.
  #[napi]
  pub fn close<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
    let worker = self.worker.clone();
    spawn(
      env,
      async move {
        worker.close().await;
        Ok(())
      },
      |_, ()| Ok(()),
    )
  }

  /// Counters as plain numbers, with the member's.
  #[napi]
  pub fn stats(&self) -> WorkerStats {
    convert::worker_stats(&self.worker.stats())
  }
}

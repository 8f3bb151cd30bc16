//! The `Worker` class returned by `bus.process()`.
//!
//! The engine decides which events may run (one per key, `concurrency` at once, retries
//! first); a small JS loop compiled here takes them, calls the handler and reports each
//! outcome. Handlers run on the JS thread as any promise-returning function does.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::error::{BusError, Code};
use crate::group::worker::Worker as EngineWorker;
use crate::napi::convert::{self, TakenList, WorkerStats};
use crate::napi::errors::spawn;
use crate::napi::scope::Scope;

/// The JS side of a worker: take runnable events, run the handler, report each outcome
/// by the event's token. Successes of one JS turn go back in one call (`settleAll`, in a
/// microtask, or before the next take); a failure goes at once with its error's message. A handler that throws
/// synchronously counts as failed; an error whose message cannot be read is described.
const DRIVER_JS: &str = include_str!("js/driver.js");

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
  /// Runnable events (the driver's next batch, tokens from `first`); empty once the
  /// worker is closing.
  #[napi(skip_typescript)]
  pub fn take<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, TakenList>> {
    let ready = self.worker.take_runnable();
    if !ready.deliveries.is_empty() {
      return PromiseRaw::resolve(env, TakenList(ready, Some(self.worker.clone())));
    }
    let worker = self.worker.clone();
    spawn(
      env,
      async move {
        let taken = worker.next_runnable().await;
        Ok((taken, worker))
      },
      |_, (taken, worker)| Ok(TakenList(taken, Some(worker))),
    )
  }

  /// The handler of the event taken as `token` failed: `error` is its error's message,
  /// `kind` its type for metrics (`err.code` or the class name).
  #[napi(skip_typescript)]
  pub fn settle(&self, token: u32, error: Option<String>, kind: Option<String>) {
    self.worker.settle(token, error, kind.as_deref());
  }

  /// The handlers of these tokens resolved.
  #[napi(skip_typescript)]
  pub fn settle_all(&self, tokens: Vec<u32>) {
    self.worker.settle_all(&tokens);
  }

  /// The driver loop failed unexpectedly: the worker closes (logged), so `close()` and
  /// `shutdown()` still settle.
  #[napi(skip_typescript)]
  pub fn abort(&self, reason: String) {
    tracing::error!("a process() worker stopped: its driver failed ({reason}); its events go to the other members");
    let worker = self.worker.clone();
    napi::bindgen_prelude::spawn(async move { worker.close().await });
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

//! Exit-time draining of buses that were never shut down.
//!
//! Each JS environment (the main thread or a worker) keeps a list of its live buses. At
//! process `exit` (which `process.exit()` also emits) and at environment teardown, every
//! bus still running gets a bounded best-effort drain, and whatever it could not deliver
//! is logged, to stderr even when a `setLogger` sink was set (JS no longer runs).

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use parking_lot::Mutex;

use crate::bus::{Bus, WeakBus};

/// Longest a forgotten bus may hold up exit to drain.
const TEARDOWN_BOUND: Duration = Duration::from_secs(3);

type Registry = Arc<Mutex<Vec<WeakBus>>>;

/// `process.once(event, listener)`.
type ProcessOnce<'env> = Function<'env, FnArgs<(&'env str, Function<'env, (), ()>)>, Unknown<'env>>;

/// Per-environment instance data.
struct LiveBuses(Registry);

fn drain_all(registry: &Registry) {
  let buses: Vec<Bus> = registry
    .lock()
    .drain(..)
    .filter_map(|w| w.upgrade())
    .collect();
  for bus in buses {
    report(&bus);
  }
}

fn report(bus: &Bus) {
  if !bus.is_running() {
    return;
  }
  // A JS sink cannot run any more: what is logged from here on must reach stderr.
  crate::log::exiting();
  let before = bus.stats().counters.pending();
  match bus.shutdown_blocking(TEARDOWN_BOUND) {
    Some(stats) => {
      let lost = stats.counters.dropped_shutdown;
      if lost > 0 {
        tracing::error!(
          lost,
          pending = before,
          "an EventBus was not shut down before exit; {lost} of {before} pending events could not be delivered. Call `await bus.shutdown()` before exiting."
        );
      }
    }
    None => tracing::error!(
      pending = before,
      "an EventBus was not shut down before exit; delivery of {before} pending events could not be confirmed within {} ms. Call `await bus.shutdown()` before exiting.",
      TEARDOWN_BOUND.as_millis()
    ),
  }
}

/// Adds `bus` to its environment's list, installing the exit listener and the cleanup
/// hook the first time.
pub fn track(env: &Env, bus: &Bus) -> Result<()> {
  let weak = bus.downgrade();
  if let Some(live) = env.get_instance_data::<LiveBuses>()? {
    let mut list = live.0.lock();
    list.retain(|w| !w.is_dropped());
    list.push(weak);
    return Ok(());
  }
  let registry: Registry = Arc::new(Mutex::new(vec![weak]));
  env.set_instance_data(LiveBuses(registry.clone()), (), |_| {})?;

  let on_exit = registry.clone();
  let listener =
    env.create_function_from_closure::<(), (), _>("ringbusDrainOnExit", move |_| {
      drain_all(&on_exit);
      Ok(())
    })?;
  let process: Object = env.get_global()?.get_named_property("process")?;
  let once: ProcessOnce = process.get_named_property("once")?;
  once.apply(process, FnArgs::from(("exit", listener)))?;

  // Workers that end without an 'exit' event, and anything registered after it fired.
  env.add_env_cleanup_hook(registry, |registry| drain_all(&registry))?;
  Ok(())
}

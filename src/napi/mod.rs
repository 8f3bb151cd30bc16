//! The JS surface: converts values and delegates to the engine. No engine logic here.
//!
//! Raw Node-API calls go through `scope.rs`; every `unsafe` block says why it is sound.
#![deny(
  unsafe_op_in_unsafe_fn,
  clippy::undocumented_unsafe_blocks,
  clippy::missing_safety_doc
)]

#[cfg(feature = "alloc-stats")]
mod alloc_stats;
mod bus;
mod consumer;
mod convert;
mod errors;
mod ingest;
mod logger;
mod options;
mod scope;
mod subscription;
mod teardown;
mod worker;

use napi_derive::module_init;

/// Why `RINGBUS_THREADS` could not be used, reported by the first `EventBus` constructor
/// (module init has no caller to throw to).
static THREADS_ERROR: std::sync::OnceLock<crate::error::BusError> = std::sync::OnceLock::new();

#[module_init]
fn init() {
  // One runtime per process, shared by every bus and napi's async calls.
  let threads = crate::config::runtime_threads(std::env::var("RINGBUS_THREADS").ok().as_deref())
    .unwrap_or_else(|e| {
      let _ = THREADS_ERROR.set(e);
      crate::config::DEFAULT_RUNTIME_THREADS
    });
  let rt = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(threads)
    .thread_name("ringbus")
    .enable_all()
    .build()
    .expect("the ringbus tokio runtime can be built");
  napi::bindgen_prelude::create_custom_tokio_runtime(rt);
  crate::log::init();
  #[cfg(feature = "alloc-stats")]
  alloc_stats::start();
}

/// The `RINGBUS_THREADS` error, if the variable was set to something unusable.
pub(crate) fn threads_error() -> Option<crate::error::BusError> {
  THREADS_ERROR.get().cloned()
}

/// The shared runtime's handle, for spawning engine tasks.
pub(crate) fn runtime() -> tokio::runtime::Handle {
  napi::bindgen_prelude::within_runtime_if_available(tokio::runtime::Handle::current)
}

// Events are allocated on the JS thread and freed on a runtime thread; mimalloc frees
// across threads far more cheaply than glibc's malloc, which showed in ingest profiles.
// Its v2 line (Cargo.toml): under the same soak v3 kept 30-50 MiB of freed pages resident
// after outages and crept up in steady state, while live bytes stayed at 3 MiB.
#[cfg(not(feature = "alloc-stats"))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(feature = "alloc-stats")]
#[global_allocator]
static ALLOC: alloc_stats::Counting = alloc_stats::Counting;

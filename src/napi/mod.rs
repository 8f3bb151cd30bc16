//! The JS surface: converts values and delegates to the engine. No engine logic here.

mod bus;
mod convert;
mod errors;
mod ingest;
mod options;
mod subscription;
mod teardown;

use napi_derive::module_init;

/// Worker threads of the process-wide runtime shared by every bus (and napi's async calls).
const RUNTIME_THREADS: usize = 2;

#[module_init]
fn init() {
  let rt = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(RUNTIME_THREADS)
    .thread_name("ringbus")
    .enable_all()
    .build()
    .expect("the ringbus tokio runtime can be built");
  napi::bindgen_prelude::create_custom_tokio_runtime(rt);
}

/// The shared runtime's handle, for spawning engine tasks.
pub(crate) fn runtime() -> tokio::runtime::Handle {
  napi::bindgen_prelude::within_runtime_if_available(tokio::runtime::Handle::current)
}

// Events are allocated on the JS thread and freed on a runtime thread; glibc's malloc
// spent about 15 % of ingest in that cross-thread free path, mimalloc a fraction of it.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

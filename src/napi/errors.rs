//! Turning engine errors into JS errors with a `code`.

use std::future::Future;

use napi::bindgen_prelude::*;

use crate::error::{BusError, Code};

/// For sync methods: thrown with `err.code` set.
pub fn throw(e: BusError) -> Error<Code> {
  Error::new(e.code, e.message)
}

/// Creates the JS error object for a rejection, with `code` set.
fn rejection(env: &Env, e: BusError) -> Error {
  let js = JsError::from(Error::new(e.code, e.message)).into_unknown(*env);
  Error::from(js)
}

/// Runs `fut` on the shared runtime; the promise resolves through `convert` on the JS
/// thread, or rejects with an error whose `code` is the engine's.
pub fn spawn<'env, T, V, F, C>(env: &'env Env, fut: F, convert: C) -> Result<PromiseRaw<'env, V>>
where
  T: Send + 'static,
  V: ToNapiValue,
  F: Future<Output = std::result::Result<T, BusError>> + Send + 'static,
  C: FnOnce(&'env Env, T) -> std::result::Result<V, BusError> + 'static,
{
  env.spawn_future_with_callback(
    async move { Ok(fut.await) },
    move |env, result| match result.and_then(|v| convert(env, v)) {
      Ok(v) => Ok(v),
      Err(e) => Err(rejection(env, e)),
    },
  )
}

//! Turning engine errors into JS errors with a `code`.

use std::future::Future;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::error::{BusError, Code};

/// The `code` of every error ringbus throws or rejects with: compare `err.code` with these
/// (errors from the addon are not `instanceof Error` inside Jest's sandbox).
#[napi(string_enum)]
pub enum ErrorCode {
  /// A bad option (named in the message), a bad poll request, a nonce file in use.
  #[napi(value = "ERR_INVALID_CONFIG")]
  InvalidConfig,
  /// Not an object, JSON string or Uint8Array; invalid JSON; not serialisable; too large.
  #[napi(value = "ERR_INVALID_EVENT")]
  InvalidEvent,
  /// The shard's ring is full under `backpressure: 'reject'`.
  #[napi(value = "ERR_BACKPRESSURE")]
  Backpressure,
  /// The bus was shut down.
  #[napi(value = "ERR_SHUT_DOWN")]
  ShutDown,
  /// The server is unreachable, refuses the credentials or lacks a needed feature.
  #[napi(value = "ERR_CONNECT")]
  Connect,
  /// A backend request failed; retry.
  #[napi(value = "ERR_ADAPTER")]
  Adapter,
  /// A backend request ran past its time limit.
  #[napi(value = "ERR_TIMEOUT")]
  Timeout,
  /// An unknown filter operator, a wrong operand type, a filter nested too deep.
  #[napi(value = "ERR_INVALID_FILTER")]
  InvalidFilter,
  /// A malformed cursor, or one from another backend.
  #[napi(value = "ERR_INVALID_CURSOR")]
  InvalidCursor,
  /// A bug in ringbus or a failed Node-API call, never bad input: please report it.
  #[napi(value = "ERR_INTERNAL")]
  Internal,
}

/// For sync methods: thrown with `err.code` set.
pub fn throw(e: BusError) -> Error<Code> {
  Error::new(e.code, e.message)
}

/// Creates the JS error object for a rejection, with `code` set.
fn rejection(env: &Env, e: BusError) -> Error {
  let js = JsError::from(Error::new(e.code, e.message)).into_unknown(*env);
  Error::from(js)
}

/// A JS value already made (by [`made`]), handed to napi-rs as it is.
pub struct Made(napi::sys::napi_value);

impl ToNapiValue for Made {
  unsafe fn to_napi_value(_: napi::sys::napi_env, v: Self) -> Result<napi::sys::napi_value> {
    Ok(v.0)
  }
}

/// Converts `v` to JS now, so that a failure (a throwing setter a user put on
/// `Object.prototype`, say) becomes `ERR_INTERNAL` instead of napi-rs's uncoded
/// `GenericFailure`.
pub fn made<V: ToNapiValue>(env: &Env, v: V) -> std::result::Result<Made, BusError> {
  // SAFETY: on the JS thread, within the call or callback of `env`.
  unsafe { V::to_napi_value(env.raw(), v) }
    .map(Made)
    .map_err(|e| {
      BusError::new(
        Code::Internal,
        format!("the result could not be made into JS values ({}); if a setter or Proxy was put on Object.prototype, remove it", e.reason),
      )
    })
}

/// A promise already resolved with `v`, or a coded throw when `v` cannot be made.
pub fn resolved<'env, V: ToNapiValue>(
  env: &'env Env,
  v: V,
) -> std::result::Result<PromiseRaw<'env, V>, Error<Code>> {
  let value = made(env, v).map_err(throw)?;
  let p =
    PromiseRaw::resolve(env, value).map_err(|e| throw(BusError::new(Code::Internal, e.reason)))?;
  Ok(PromiseRaw::new(env.raw(), p.raw()))
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
  let p =
    env.spawn_future_with_callback(
      async move { Ok(fut.await) },
      move |env, result| match result
        .and_then(|v| convert(env, v))
        .and_then(|v| made(env, v))
      {
        Ok(v) => Ok(v),
        Err(e) => Err(rejection(env, e)),
      },
    )?;
  Ok(PromiseRaw::new(env.raw(), p.raw()))
}

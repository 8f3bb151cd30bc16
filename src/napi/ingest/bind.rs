//! The plain Node-API functions bound to a bus, and the JS `ingest` around them.

use std::ffi::{c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use napi::sys;

use super::{Call, Ingestor};
use crate::bus::Bus;
use crate::error::{BusError, Code};
use crate::napi::scope::{internal, JsValue, Scope};

/// A Node-API callback.
type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// Runs one call with two arguments against the function's bus; never unwinds into Node.
///
/// # Safety
/// `env` and `info` must be those of a running call of a function made by [`bound`].
unsafe fn dispatch(
  env: sys::napi_env,
  info: sys::napi_callback_info,
  call: Call,
  name: &str,
) -> sys::napi_value {
  let run = |scope: &mut Scope<'_>| {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
      let mut argc = 2usize;
      let mut argv = [ptr::null_mut(); 2];
      let mut data: *mut c_void = ptr::null_mut();
      // SAFETY: `info` belongs to this call (the function's contract); the out-pointers
      // are valid and `argv` has room for `argc` values (Node fills missing ones with
      // undefined).
      let status = unsafe {
        sys::napi_get_cb_info(
          scope.env(),
          info,
          &mut argc,
          argv.as_mut_ptr(),
          ptr::null_mut(),
          &mut data,
        )
      };
      scope.check(status, "arguments")?;
      // SAFETY: `data` is the Box<Ingestor> this function was created with; only the
      // function's finalizer frees it, and that cannot run while the function is called.
      let ing = unsafe { &*(data as *const Ingestor) };
      // SAFETY: both are arguments of this call.
      let (a, b) = unsafe { (scope.adopt(argv[0]), scope.adopt(argv[1])) };
      call(ing, scope, a, b)
    }));
    let result = outcome.unwrap_or_else(|_| {
      Err(BusError::new(
        Code::Internal,
        format!("internal error in {name}; the event was not accepted. Please report this as a ringbus bug"),
      ))
    });
    match result.and_then(|n| scope.uint32(n)) {
      Ok(v) => v.raw(),
      Err(e) => scope.throw(&e),
    }
  };
  // SAFETY: `env` is this running call's (the function's contract).
  unsafe { Scope::with(env, run) }
}

unsafe extern "C" fn ingest_cb(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: Node calls this for a call of the function `bound` made with it.
  unsafe { dispatch(env, info, Ingestor::ingest, "ingest") }
}

unsafe extern "C" fn ingest_stringified_cb(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: Node calls this for a call of the function `bound` made with it.
  unsafe { dispatch(env, info, Ingestor::ingest_stringified, "ingest") }
}

unsafe extern "C" fn ingest_stringified_headers_cb(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: Node calls this for a call of the function `bound` made with it.
  unsafe { dispatch(env, info, Ingestor::ingest_stringified_headers, "ingest") }
}

unsafe extern "C" fn ingest_batch_cb(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  // SAFETY: Node calls this for a call of the function `bound` made with it.
  unsafe { dispatch(env, info, Ingestor::ingest_batch, "ingestBatch") }
}

/// Frees a function's Ingestor when the function is collected.
///
/// # Safety
/// `data` must be a `Box<Ingestor>` leaked by [`bound`] in `env`, finalized once.
unsafe extern "C" fn finalize(env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
  // SAFETY: the function's contract.
  let ing = unsafe { Box::from_raw(data as *mut Ingestor) };
  let delete = |scope: &mut Scope<'_>| {
    // SAFETY: the reference was created in `env` by `Ingestor::new`; deleted once, here.
    unsafe { scope.delete_reference(ing.stringify) }
  };
  // SAFETY: Node runs finalizers on the JS thread with the function's environment.
  unsafe { Scope::with(env, delete) };
}

/// A plain function named `name` bound to its own Ingestor for `bus`.
fn bound<'s>(
  scope: &mut Scope<'s>,
  bus: &Bus,
  name: &'static CStr,
  cb: Callback,
) -> Result<(JsValue<'s>, *const Ingestor), BusError> {
  let ing = Box::into_raw(Ingestor::new(scope, bus.clone())?);
  let mut f = ptr::null_mut();
  // SAFETY: live env; a NUL-terminated name with its length; `ing` stays valid until the
  // finalizer registered below frees it.
  let created = unsafe {
    sys::napi_create_function(
      scope.env(),
      name.as_ptr(),
      name.to_bytes().len() as isize,
      Some(cb),
      ing.cast(),
      &mut f,
    )
  };
  // SAFETY: live env; `f` was just created (checked first); `finalize` frees `ing` once.
  let finalized = created == sys::Status::napi_ok
    && unsafe {
      sys::napi_add_finalizer(
        scope.env(),
        f,
        ing.cast(),
        Some(finalize),
        ptr::null_mut(),
        ptr::null_mut(),
      )
    } == sys::Status::napi_ok;
  if !finalized {
    // SAFETY: `ing` was leaked above and no finalizer owns it.
    unsafe { finalize(scope.env(), ing.cast(), ptr::null_mut()) };
    return Err(internal(
      &format!("creating {}", name.to_string_lossy()),
      created,
    ));
  }
  // SAFETY: `f` was created in this call's handle scope.
  Ok((unsafe { scope.adopt(f) }, ing))
}

/// `ingest` itself is this JS function, closed over three bound native ones. Objects are
/// serialised here, in JS: calling `JSON.stringify` from native code costs more per event
/// than the serialisation itself (BENCHMARKS.md, "ingest(object)" and the class-method
/// rows). Whether options carry headers is also asked here, where a missing property
/// costs next to nothing: only calls with headers pay for reading them natively.
/// Everything else, every object `JSON.stringify` refuses and every options object that
/// throws goes to the native `ingest`, which reports it with a code.
const INGEST_JS: &str = include_str!("../js/ingest.js");

/// Compiles [`INGEST_JS`] and calls it with the three native functions.
fn ingest_js<'s>(
  scope: &mut Scope<'s>,
  stringified: JsValue<'s>,
  with_headers: JsValue<'s>,
  native: JsValue<'s>,
) -> Result<JsValue<'s>, String> {
  let factory = scope.script(INGEST_JS)?;
  scope.call(factory, [stringified, with_headers, native])
}

/// Defines `ingest` and `ingestBatch` on `this`, bound to `bus`, and returns the Ingestor
/// of the native `ingest` for the current call (the function is held by the call's handle
/// scope, so its finalizer cannot run before the call ends) and whether the properties
/// were defined. When they cannot be (a frozen object, say), later calls stay on the
/// napi-rs methods, which work the same way, only slower.
pub fn install<'s>(
  scope: &mut Scope<'s>,
  this: JsValue<'s>,
  bus: &Bus,
) -> Result<(*const Ingestor, bool), BusError> {
  let (native, ing) = bound(scope, bus, c"ingest", ingest_cb)?;
  let (stringified, _) = bound(scope, bus, c"ingestStringified", ingest_stringified_cb)?;
  let (with_headers, _) = bound(
    scope,
    bus,
    c"ingestStringifiedHeaders",
    ingest_stringified_headers_cb,
  )?;
  let (batch, _) = bound(scope, bus, c"ingestBatch", ingest_batch_cb)?;
  // Without the wrapper (it cannot fail in a working engine), `ingest` is the native one.
  let ingest = ingest_js(scope, stringified, with_headers, native).unwrap_or(native);
  // Not enumerable, so the object still looks the same to inspection and spreading. When
  // this fails the call goes on through the class methods.
  let bound = scope.define_hidden(this, &[(c"ingest", ingest), (c"ingestBatch", batch)]);
  Ok((ing, bound))
}

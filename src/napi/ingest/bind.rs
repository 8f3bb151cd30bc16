//! The plain Node-API functions bound to a bus, and the JS `ingest` around them.

use std::ffi::c_void;
use std::ptr;

use napi::sys;

use super::values::{check, clear_exception};
use super::{Call, Ingestor};
use crate::bus::Bus;
use crate::error::BusError;

/// Throws `e` as a JS error with `code` set; always returns null (the callback's result).
unsafe fn throw(env: sys::napi_env, e: &BusError) -> sys::napi_value {
  let mut code = ptr::null_mut();
  let mut msg = ptr::null_mut();
  let mut err = ptr::null_mut();
  let code_str = e.code.as_str();
  if sys::napi_create_string_utf8(
    env,
    code_str.as_ptr().cast(),
    code_str.len() as isize,
    &mut code,
  ) == sys::Status::napi_ok
    && sys::napi_create_string_utf8(
      env,
      e.message.as_ptr().cast(),
      e.message.len() as isize,
      &mut msg,
    ) == sys::Status::napi_ok
    && sys::napi_create_error(env, code, msg, &mut err) == sys::Status::napi_ok
  {
    sys::napi_throw(env, err);
  }
  ptr::null_mut()
}

/// Runs one call with two arguments against the function's bus; never unwinds into Node.
unsafe fn dispatch(
  env: sys::napi_env,
  info: sys::napi_callback_info,
  call: Call,
  name: &str,
) -> sys::napi_value {
  let outcome = std::panic::catch_unwind(|| {
    let mut argc = 2usize;
    let mut argv = [ptr::null_mut(); 2];
    let mut data: *mut c_void = ptr::null_mut();
    check(
      sys::napi_get_cb_info(
        env,
        info,
        &mut argc,
        argv.as_mut_ptr(),
        ptr::null_mut(),
        &mut data,
      ),
      "arguments",
    )?;
    // Missing arguments read as undefined, like in JS.
    for a in argv.iter_mut().skip(argc) {
      check(sys::napi_get_undefined(env, a), "arguments")?;
    }
    // SAFETY: `data` is the Box<Ingestor> this function was created with; it is freed only
    // by the function's finalizer, which cannot run while the function is being called.
    let ing = &*(data as *const Ingestor);
    call(ing, env, argv[0], argv[1])
  });
  let result = match outcome {
    Ok(r) => r,
    Err(_) => Err(BusError::invalid_event(format!(
      "internal error in {name}; the event was not accepted. Please report this as a ringbus bug"
    ))),
  };
  match result {
    Ok(n) => {
      let mut out = ptr::null_mut();
      if sys::napi_create_uint32(env, n, &mut out) != sys::Status::napi_ok {
        return ptr::null_mut();
      }
      out
    }
    Err(e) => throw(env, &e),
  }
}

unsafe extern "C" fn ingest_cb(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  dispatch(env, info, Ingestor::ingest, "ingest")
}

unsafe extern "C" fn ingest_stringified_cb(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  dispatch(env, info, Ingestor::ingest_stringified, "ingest")
}

unsafe extern "C" fn ingest_batch_cb(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  dispatch(env, info, Ingestor::ingest_batch, "ingestBatch")
}

unsafe extern "C" fn finalize(env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
  // SAFETY: `data` is the Box<Ingestor> leaked in `bound`, finalized once.
  let ing = Box::from_raw(data as *mut Ingestor);
  sys::napi_delete_reference(env, ing.stringify);
}

/// A plain function named `name` bound to its own Ingestor for `bus`.
unsafe fn bound(
  env: sys::napi_env,
  bus: &Bus,
  name: &std::ffi::CStr,
  cb: unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value,
) -> Result<(sys::napi_value, *const Ingestor), BusError> {
  let ing = Box::into_raw(Ingestor::new(env, bus.clone())?);
  let mut f = ptr::null_mut();
  let created = sys::napi_create_function(
    env,
    name.as_ptr(),
    name.to_bytes().len() as isize,
    Some(cb),
    ing.cast(),
    &mut f,
  );
  if created != sys::Status::napi_ok
    || sys::napi_add_finalizer(
      env,
      f,
      ing.cast(),
      Some(finalize),
      ptr::null_mut(),
      ptr::null_mut(),
    ) != sys::Status::napi_ok
  {
    finalize(env, ing.cast(), ptr::null_mut());
    return Err(BusError::invalid_event(format!(
      "could not create {}",
      name.to_string_lossy()
    )));
  }
  Ok((f, ing))
}

/// `ingest` itself is this JS function, closed over two bound native ones. Objects are
/// serialised here, in JS: calling `JSON.stringify` from native code costs about 150 ns
/// more per event than the serialisation itself. Everything else, and every object
/// `JSON.stringify` refuses, goes to the native `ingest`, which reports it with a code.
const INGEST_JS: &str = r#"(function (stringified, native) {
  const stringify = JSON.stringify
  const isView = ArrayBuffer.isView
  return function ingest(event, options) {
    if (typeof event === 'object' && event !== null && !isView(event)) {
      let json
      try {
        json = stringify(event)
      } catch {
        return native(event, options)
      }
      if (typeof json === 'string') return stringified(json, options)
    }
    return native(event, options)
  }
})"#;

/// Compiles [`INGEST_JS`] and calls it with the two native functions.
unsafe fn ingest_js(
  env: sys::napi_env,
  stringified: sys::napi_value,
  native: sys::napi_value,
) -> Result<sys::napi_value, BusError> {
  let fail = |what: &str| BusError::invalid_event(format!("could not set up ingest: {what}"));
  let mut source = ptr::null_mut();
  let mut factory = ptr::null_mut();
  let mut recv = ptr::null_mut();
  let mut f = ptr::null_mut();
  if sys::napi_create_string_utf8(
    env,
    INGEST_JS.as_ptr().cast(),
    INGEST_JS.len() as isize,
    &mut source,
  ) != sys::Status::napi_ok
    || sys::napi_run_script(env, source, &mut factory) != sys::Status::napi_ok
    || sys::napi_get_undefined(env, &mut recv) != sys::Status::napi_ok
  {
    return Err(fail("compiling the wrapper"));
  }
  let args = [stringified, native];
  if sys::napi_call_function(env, recv, factory, 2, args.as_ptr(), &mut f) != sys::Status::napi_ok {
    return Err(fail("creating the wrapper"));
  }
  Ok(f)
}

/// Defines `ingest` and `ingestBatch` on `this`, bound to `bus`, and returns the Ingestor
/// of the native `ingest` for the current call: the function is held by the call's handle
/// scope, so its finalizer cannot run before the call ends. When the properties cannot be
/// defined (a frozen object, say), later calls stay on the napi-rs methods, which work the
/// same way, only slower.
pub unsafe fn install(
  env: sys::napi_env,
  this: sys::napi_value,
  bus: &Bus,
) -> Result<*const Ingestor, BusError> {
  let (native, ing) = bound(env, bus, c"ingest", ingest_cb)?;
  let (stringified, _) = bound(env, bus, c"ingestStringified", ingest_stringified_cb)?;
  let (batch, _) = bound(env, bus, c"ingestBatch", ingest_batch_cb)?;
  let ingest = match ingest_js(env, stringified, native) {
    Ok(f) => f,
    Err(_) => {
      clear_exception(env);
      native
    }
  };
  let prop = |name: &'static std::ffi::CStr, value| sys::napi_property_descriptor {
    utf8name: name.as_ptr(),
    name: ptr::null_mut(),
    method: None,
    getter: None,
    setter: None,
    value,
    // Writable and configurable like a class method; not enumerable, so the object still
    // looks the same to inspection and spreading.
    attributes: sys::PropertyAttributes::writable | sys::PropertyAttributes::configurable,
    data: ptr::null_mut(),
  };
  let props = [prop(c"ingest", ingest), prop(c"ingestBatch", batch)];
  if sys::napi_define_properties(env, this, props.len(), props.as_ptr()) != sys::Status::napi_ok {
    // The call goes on without them, so an exception from the definition must not stay.
    clear_exception(env);
  }
  Ok(ing)
}

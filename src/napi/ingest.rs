//! The ingest hot path as plain Node-API functions.
//!
//! A napi-rs `&self` method costs about 270 ns per call on the bench machine (borrow
//! tracking, type-tag check, unwrap), while a plain Node-API function that finds its bus in
//! its callback data costs about 20 ns. So the first `ingest`/`ingestBatch` call on a bus
//! goes through the napi-rs methods (which also give the typings) and defines `ingest` and
//! `ingestBatch` as own, non-enumerable properties of that JS object: `ingestBatch` a plain
//! function bound to the bus, `ingest` a small JS function ([`INGEST_JS`]) that serialises
//! objects itself and calls bound native functions. Later calls go straight there. Every
//! path runs the same conversion below.

use std::cell::RefCell;
use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

use bytes::Bytes;
use napi::sys;

use crate::bus::Bus;
use crate::error::BusError;
use crate::event::{Incoming, PayloadKind};

/// Longest partition key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 4096;

/// Scratch capacity kept between calls; a larger one is freed after use.
const MAX_KEPT_SCRATCH: usize = 1 << 20;

type Status = std::result::Result<(), BusError>;

/// What a bound `ingest`/`ingestBatch` function holds: the bus and `JSON.stringify`.
pub struct Ingestor {
  bus: Bus,
  stringify: sys::napi_ref,
}

thread_local! {
  /// Scratch for UTF-8 text copied out of JS strings, reused so a copy costs one exact-size
  /// allocation (the payload) instead of two.
  static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn check(status: sys::napi_status, what: &str) -> Status {
  if status == sys::Status::napi_ok {
    Ok(())
  } else {
    Err(BusError::invalid_event(format!(
      "{what} could not be read (Node-API status {status})"
    )))
  }
}

unsafe fn type_of(env: sys::napi_env, v: sys::napi_value) -> sys::napi_valuetype {
  let mut t = sys::ValueType::napi_undefined;
  if sys::napi_typeof(env, v, &mut t) != sys::Status::napi_ok {
    return sys::ValueType::napi_undefined;
  }
  t
}

fn type_name(t: sys::napi_valuetype) -> &'static str {
  match t {
    sys::ValueType::napi_undefined => "undefined",
    sys::ValueType::napi_null => "null",
    sys::ValueType::napi_boolean => "a boolean",
    sys::ValueType::napi_number => "a number",
    sys::ValueType::napi_bigint => "a bigint",
    sys::ValueType::napi_symbol => "a symbol",
    sys::ValueType::napi_function => "a function",
    sys::ValueType::napi_string => "a string",
    _ => "an object",
  }
}

/// The UTF-8 bytes of a JS string, in an allocation of exactly their size. `limit` sees
/// the string's UTF-16 length first (its UTF-8 size is at least that), so a string far too
/// large is refused before anything is copied.
unsafe fn string_bytes(
  env: sys::napi_env,
  v: sys::napi_value,
  what: &str,
  limit: impl FnOnce(usize) -> Status,
) -> Result<Bytes, BusError> {
  // The UTF-16 length is O(1); UTF-8 needs at most 3 bytes per UTF-16 unit, so one copy
  // into a large enough scratch replaces the usual measure-then-copy pair of O(n) calls.
  let mut units = 0usize;
  check(
    sys::napi_get_value_string_utf16(env, v, ptr::null_mut(), 0, &mut units),
    what,
  )?;
  limit(units)?;
  SCRATCH.with(|scratch| {
    let mut buf = scratch.borrow_mut();
    let cap = units * 3 + 1;
    if buf.capacity() < cap {
      buf.reserve(cap);
    }
    let mut written = 0usize;
    check(
      sys::napi_get_value_string_utf8(env, v, buf.as_mut_ptr().cast(), cap, &mut written),
      what,
    )?;
    // SAFETY: Node wrote `written` bytes (≤ cap - 1) into the buffer's capacity.
    let text = Bytes::copy_from_slice(std::slice::from_raw_parts(buf.as_ptr(), written));
    if buf.capacity() > MAX_KEPT_SCRATCH {
      // One huge string must not pin its size for the life of the thread.
      *buf = Vec::new();
    }
    Ok(text)
  })
}

/// Bytes of a Uint8Array (or Buffer) value, or None when `value` is not one. The slice
/// borrows the array's memory for the current call only.
unsafe fn uint8_slice<'a>(env: sys::napi_env, value: sys::napi_value) -> Option<&'a [u8]> {
  let mut is_typed = false;
  if sys::napi_is_typedarray(env, value, &mut is_typed) != sys::Status::napi_ok || !is_typed {
    return None;
  }
  let mut kind = 0;
  let mut len = 0usize;
  let mut data = ptr::null_mut();
  let mut buffer = ptr::null_mut();
  let mut offset = 0usize;
  if sys::napi_get_typedarray_info(
    env,
    value,
    &mut kind,
    &mut len,
    &mut data,
    &mut buffer,
    &mut offset,
  ) != sys::Status::napi_ok
    || kind != sys::TypedarrayType::uint8_array
  {
    return None;
  }
  if len == 0 || data.is_null() {
    return Some(&[]);
  }
  Some(std::slice::from_raw_parts(data as *const u8, len))
}

/// The message of the pending JS exception, which is cleared.
unsafe fn take_exception(env: sys::napi_env) -> String {
  let mut exc = ptr::null_mut();
  if sys::napi_get_and_clear_last_exception(env, &mut exc) != sys::Status::napi_ok || exc.is_null()
  {
    return "unknown error".into();
  }
  let mut msg = ptr::null_mut();
  // Reading a property of a non-object would throw again.
  let has_message = type_of(env, exc) == sys::ValueType::napi_object
    && sys::napi_get_named_property(env, exc, c"message".as_ptr(), &mut msg)
      == sys::Status::napi_ok
    && type_of(env, msg) == sys::ValueType::napi_string;
  if !has_message && sys::napi_coerce_to_string(env, exc, &mut msg) != sys::Status::napi_ok {
    return "unknown error".into();
  }
  let s = msg;
  string_bytes(env, s, "exception", |_| Ok(()))
    .map(|b| String::from_utf8_lossy(&b).into_owned())
    .unwrap_or_else(|_| "unknown error".into())
}

impl Ingestor {
  /// Keeps a reference to `JSON.stringify` for this bus's object events.
  unsafe fn new(env: sys::napi_env, bus: Bus) -> Result<Box<Ingestor>, BusError> {
    let mut global = ptr::null_mut();
    let mut json = ptr::null_mut();
    let mut stringify = ptr::null_mut();
    let mut reference = ptr::null_mut();
    check(sys::napi_get_global(env, &mut global), "globalThis")?;
    check(
      sys::napi_get_named_property(env, global, c"JSON".as_ptr(), &mut json),
      "JSON",
    )?;
    check(
      sys::napi_get_named_property(env, json, c"stringify".as_ptr(), &mut stringify),
      "JSON.stringify",
    )?;
    check(
      sys::napi_create_reference(env, stringify, 1, &mut reference),
      "JSON.stringify",
    )?;
    Ok(Box::new(Ingestor {
      bus,
      stringify: reference,
    }))
  }

  /// Serialises an object with `JSON.stringify`.
  unsafe fn stringify(
    &self,
    env: sys::napi_env,
    value: sys::napi_value,
  ) -> Result<Bytes, BusError> {
    let mut f = ptr::null_mut();
    let mut recv = ptr::null_mut();
    let mut out = ptr::null_mut();
    check(
      sys::napi_get_reference_value(env, self.stringify, &mut f),
      "JSON.stringify",
    )?;
    check(sys::napi_get_undefined(env, &mut recv), "undefined")?;
    if sys::napi_call_function(env, recv, f, 1, &value, &mut out) != sys::Status::napi_ok {
      let reason = take_exception(env);
      return Err(BusError::invalid_event(format!(
        "event cannot be serialised as JSON ({reason}); remove cycles and BigInt values, or pass a Buffer"
      )));
    }
    if type_of(env, out) != sys::ValueType::napi_string {
      return Err(BusError::invalid_event(
        "event serialises to nothing (its toJSON returned undefined); pass an object, JSON text or a Buffer",
      ));
    }
    string_bytes(env, out, "JSON.stringify result", |n| {
      self.bus.check_event_size(n, true)
    })
  }

  /// Converts one JS event to an engine event.
  unsafe fn incoming(
    &self,
    env: sys::napi_env,
    value: sys::napi_value,
    key: Option<Arc<str>>,
  ) -> Result<Incoming, BusError> {
    let (kind, payload) = match type_of(env, value) {
      sys::ValueType::napi_string => {
        let text = string_bytes(env, value, "event", |n| self.bus.check_event_size(n, true))?;
        serde_json::from_slice::<serde::de::IgnoredAny>(&text).map_err(|e| {
          BusError::invalid_event(format!(
            "string is not valid JSON ({e}); pass an object, valid JSON text or a Buffer"
          ))
        })?;
        (PayloadKind::Json, text)
      }
      sys::ValueType::napi_object => match uint8_slice(env, value) {
        Some(bytes) => {
          self.bus.check_event_size(bytes.len(), false)?;
          (PayloadKind::Bytes, Bytes::copy_from_slice(bytes))
        }
        None => (PayloadKind::Json, self.stringify(env, value)?),
      },
      other => {
        return Err(BusError::invalid_event(format!(
          "event must be an object, a JSON string or a Buffer/Uint8Array, got {}",
          type_name(other)
        )))
      }
    };
    Ok(Incoming { kind, key, payload })
  }

  /// `ingest(event, options?)`: the shard id.
  pub unsafe fn ingest(
    &self,
    env: sys::napi_env,
    event: sys::napi_value,
    options: sys::napi_value,
  ) -> Result<u32, BusError> {
    let key = options_key(env, options)?;
    let inc = self.incoming(env, event, key)?;
    self.bus.ingest(inc)
  }

  /// An object event already serialised by `JSON.stringify` in the JS wrapper: valid JSON
  /// by construction, so not validated again.
  unsafe fn ingest_stringified(
    &self,
    env: sys::napi_env,
    json: sys::napi_value,
    options: sys::napi_value,
  ) -> Result<u32, BusError> {
    let key = options_key(env, options)?;
    let payload = string_bytes(env, json, "event", |n| self.bus.check_event_size(n, true))?;
    self.bus.ingest(Incoming {
      kind: PayloadKind::Json,
      key,
      payload,
    })
  }

  /// `ingestBatch(events, options?)`: how many were accepted.
  pub unsafe fn ingest_batch(
    &self,
    env: sys::napi_env,
    events: sys::napi_value,
    options: sys::napi_value,
  ) -> Result<u32, BusError> {
    let n = array_len(env, events, "events")?;
    let (shared, keys) = match object_or_none(env, options, "options")? {
      Some(o) => (
        key_prop(env, o, c"key", "options.key")?,
        keys_prop(env, o, n)?,
      ),
      None => (None, None),
    };
    let mut batch = Vec::with_capacity(n as usize);
    for i in 0..n {
      let mut ev = ptr::null_mut();
      check(sys::napi_get_element(env, events, i, &mut ev), "events")?;
      let key = match &keys {
        Some(keys) => keys[i as usize].clone(),
        None => shared.clone(),
      };
      let inc = self
        .incoming(env, ev, key)
        .map_err(|e| BusError::new(e.code, format!("events[{i}]: {}", e.message)))?;
      batch.push(inc);
    }
    self.bus.ingest_batch(batch).map(|n| n as u32)
  }
}

/// `value` as an object, None for undefined or null, an error for anything else.
unsafe fn object_or_none(
  env: sys::napi_env,
  value: sys::napi_value,
  what: &str,
) -> Result<Option<sys::napi_value>, BusError> {
  if value.is_null() {
    return Ok(None);
  }
  match type_of(env, value) {
    sys::ValueType::napi_undefined | sys::ValueType::napi_null => Ok(None),
    sys::ValueType::napi_object => Ok(Some(value)),
    other => Err(BusError::invalid_event(format!(
      "{what} must be an object, got {}",
      type_name(other)
    ))),
  }
}

unsafe fn key_from(
  env: sys::napi_env,
  v: sys::napi_value,
  what: &str,
) -> Result<Option<Arc<str>>, BusError> {
  match type_of(env, v) {
    sys::ValueType::napi_undefined | sys::ValueType::napi_null => Ok(None),
    sys::ValueType::napi_string => {
      let bytes = string_bytes(env, v, what, |n| key_size(n, true))?;
      check_key(&bytes).map(Some)
    }
    other => Err(BusError::invalid_event(format!(
      "{what} must be a string, got {}",
      type_name(other)
    ))),
  }
}

/// `options.key` of a single `ingest`.
unsafe fn options_key(
  env: sys::napi_env,
  options: sys::napi_value,
) -> Result<Option<Arc<str>>, BusError> {
  match object_or_none(env, options, "options")? {
    Some(o) => key_prop(env, o, c"key", "options.key"),
    None => Ok(None),
  }
}

unsafe fn key_prop(
  env: sys::napi_env,
  options: sys::napi_value,
  name: &std::ffi::CStr,
  what: &str,
) -> Result<Option<Arc<str>>, BusError> {
  let mut v = ptr::null_mut();
  check(
    sys::napi_get_named_property(env, options, name.as_ptr(), &mut v),
    what,
  )?;
  key_from(env, v, what)
}

/// `options.keys`: one key per event, when given.
unsafe fn keys_prop(
  env: sys::napi_env,
  options: sys::napi_value,
  events: u32,
) -> Result<Option<Vec<Option<Arc<str>>>>, BusError> {
  let mut v = ptr::null_mut();
  check(
    sys::napi_get_named_property(env, options, c"keys".as_ptr(), &mut v),
    "options.keys",
  )?;
  if matches!(
    type_of(env, v),
    sys::ValueType::napi_undefined | sys::ValueType::napi_null
  ) {
    return Ok(None);
  }
  let n = array_len(env, v, "options.keys")?;
  if n != events {
    return Err(BusError::invalid_event(format!(
      "options.keys has {n} keys for {events} events; give one key per event"
    )));
  }
  let mut keys = Vec::with_capacity(n as usize);
  for i in 0..n {
    let mut k = ptr::null_mut();
    check(sys::napi_get_element(env, v, i, &mut k), "options.keys")?;
    keys.push(key_from(env, k, &format!("options.keys[{i}]"))?);
  }
  Ok(Some(keys))
}

unsafe fn array_len(env: sys::napi_env, v: sys::napi_value, what: &str) -> Result<u32, BusError> {
  let mut is_array = false;
  if v.is_null() || sys::napi_is_array(env, v, &mut is_array) != sys::Status::napi_ok || !is_array {
    return Err(BusError::invalid_event(format!("{what} must be an array")));
  }
  let mut n = 0u32;
  check(sys::napi_get_array_length(env, v, &mut n), what)?;
  Ok(n)
}

/// Refuses a key of `len` bytes (at least `len`, when `at_least`) over the limit.
fn key_size(len: usize, at_least: bool) -> Status {
  if len > MAX_KEY_BYTES {
    let at_least = if at_least { "at least " } else { "" };
    return Err(BusError::invalid_event(format!(
      "key is {at_least}{len} bytes, over the {MAX_KEY_BYTES}-byte limit; use a shorter partition key"
    )));
  }
  Ok(())
}

/// A validated partition key.
pub fn check_key(key: &[u8]) -> Result<Arc<str>, BusError> {
  key_size(key.len(), false)?;
  // Node hands out valid UTF-8 (lone surrogates become U+FFFD).
  Ok(Arc::from(String::from_utf8_lossy(key).as_ref()))
}

// ---- the plain Node-API functions ----

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

/// One of the ingest entry points, on its Ingestor with its two arguments.
pub type Call =
  unsafe fn(&Ingestor, sys::napi_env, sys::napi_value, sys::napi_value) -> Result<u32, BusError>;

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
/// of the native `ingest` (alive as long as `this` holds it) for the current call. None
/// when they cannot be defined (a frozen object, say): calls then stay on the napi-rs
/// methods, which work the same way, only slower.
pub unsafe fn install(
  env: sys::napi_env,
  this: sys::napi_value,
  bus: &Bus,
) -> Option<*const Ingestor> {
  let (native, ing) = bound(env, bus, c"ingest", ingest_cb).ok()?;
  let (stringified, _) = bound(env, bus, c"ingestStringified", ingest_stringified_cb).ok()?;
  let (batch, _) = bound(env, bus, c"ingestBatch", ingest_batch_cb).ok()?;
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
    return None;
  }
  Some(ing)
}

unsafe fn clear_exception(env: sys::napi_env) {
  let mut pending = false;
  if sys::napi_is_exception_pending(env, &mut pending) == sys::Status::napi_ok && pending {
    let _ = take_exception(env);
  }
}

/// One call through the napi-rs method: installs the bound functions and runs `call`.
/// When installing is not possible, the call runs on a temporary Ingestor.
pub unsafe fn first_call(
  env: sys::napi_env,
  this: sys::napi_value,
  bus: &Bus,
  call: Call,
  a: sys::napi_value,
  b: sys::napi_value,
) -> Result<u32, BusError> {
  match install(env, this, bus) {
    Some(ing) => call(&*ing, env, a, b),
    None => {
      let ing = Ingestor::new(env, bus.clone())?;
      let r = call(&ing, env, a, b);
      sys::napi_delete_reference(env, ing.stringify);
      r
    }
  }
}

/// The two calls, for the napi-rs methods.
pub const INGEST: Call = Ingestor::ingest;
pub const INGEST_BATCH: Call = Ingestor::ingest_batch;

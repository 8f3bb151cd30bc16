//! Reading JS values through Node-API: strings, byte arrays, options, exceptions.

use std::cell::RefCell;
use std::ptr;
use std::sync::Arc;

use bytes::Bytes;
use napi::sys;

use crate::error::BusError;

/// Longest partition key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 4096;

/// Scratch capacity kept between calls; a larger one is freed after use.
const MAX_KEPT_SCRATCH: usize = 1 << 20;

pub(super) type Status = std::result::Result<(), BusError>;

thread_local! {
  /// Scratch for UTF-8 text copied out of JS strings, reused so a copy costs one exact-size
  /// allocation (the payload) instead of two.
  static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

pub(super) fn check(status: sys::napi_status, what: &str) -> Status {
  if status == sys::Status::napi_ok {
    Ok(())
  } else {
    Err(BusError::invalid_event(format!(
      "{what} could not be read (Node-API status {status})"
    )))
  }
}

pub(super) unsafe fn type_of(env: sys::napi_env, v: sys::napi_value) -> sys::napi_valuetype {
  let mut t = sys::ValueType::napi_undefined;
  if sys::napi_typeof(env, v, &mut t) != sys::Status::napi_ok {
    return sys::ValueType::napi_undefined;
  }
  t
}

pub(super) fn type_name(t: sys::napi_valuetype) -> &'static str {
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
pub(super) unsafe fn string_bytes(
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
pub(super) unsafe fn uint8_slice<'a>(
  env: sys::napi_env,
  value: sys::napi_value,
) -> Option<&'a [u8]> {
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
pub(super) unsafe fn take_exception(env: sys::napi_env) -> String {
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

/// `value` as an object, None for undefined or null, an error for anything else.
pub(super) unsafe fn object_or_none(
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

pub(super) unsafe fn key_from(
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
pub(super) unsafe fn options_key(
  env: sys::napi_env,
  options: sys::napi_value,
) -> Result<Option<Arc<str>>, BusError> {
  match object_or_none(env, options, "options")? {
    Some(o) => key_prop(env, o, c"key", "options.key"),
    None => Ok(None),
  }
}

pub(super) unsafe fn key_prop(
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
pub(super) unsafe fn keys_prop(
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

pub(super) unsafe fn array_len(
  env: sys::napi_env,
  v: sys::napi_value,
  what: &str,
) -> Result<u32, BusError> {
  let mut is_array = false;
  if v.is_null() || sys::napi_is_array(env, v, &mut is_array) != sys::Status::napi_ok || !is_array {
    return Err(BusError::invalid_event(format!("{what} must be an array")));
  }
  let mut n = 0u32;
  check(sys::napi_get_array_length(env, v, &mut n), what)?;
  Ok(n)
}

/// Refuses a key of `len` bytes (at least `len`, when `at_least`) over the limit.
pub(super) fn key_size(len: usize, at_least: bool) -> Status {
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

pub(super) unsafe fn clear_exception(env: sys::napi_env) {
  let mut pending = false;
  if sys::napi_is_exception_pending(env, &mut pending) == sys::Status::napi_ok && pending {
    let _ = take_exception(env);
  }
}

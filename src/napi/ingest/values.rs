//! Reading `ingest`'s arguments: partition keys and option objects.

use std::sync::Arc;

use napi::sys;

use crate::error::BusError;
use crate::event::{check_key_size, Headers, MAX_HEADERS, MAX_HEADER_BYTES};
use crate::napi::scope::{JsValue, Scope};

pub(super) use crate::napi::scope::type_name;

fn is_nullish<'s>(scope: &Scope<'s>, v: JsValue<'s>) -> bool {
  matches!(
    scope.type_of(v),
    sys::ValueType::napi_undefined | sys::ValueType::napi_null
  )
}

/// `value` as an object, None for undefined or null, an error for anything else.
pub(super) fn object_or_none<'s>(
  scope: &Scope<'s>,
  value: JsValue<'s>,
  what: &str,
) -> Result<Option<JsValue<'s>>, BusError> {
  match scope.type_of(value) {
    sys::ValueType::napi_undefined | sys::ValueType::napi_null => Ok(None),
    sys::ValueType::napi_object => Ok(Some(value)),
    other => Err(BusError::invalid_event(format!(
      "{what} must be an object, got {}",
      type_name(other)
    ))),
  }
}

/// A partition key: a string (checked against the engine's limit before it is copied),
/// or None for undefined/null.
fn key_from<'s>(
  scope: &Scope<'s>,
  v: JsValue<'s>,
  what: &str,
) -> Result<Option<Arc<str>>, BusError> {
  match scope.type_of(v) {
    sys::ValueType::napi_undefined | sys::ValueType::napi_null => Ok(None),
    sys::ValueType::napi_string => {
      let bytes = scope.string_bytes(v, what, |n| check_key_size(n, true))?;
      // Node hands out valid UTF-8 (lone surrogates become U+FFFD).
      Ok(Some(Arc::from(String::from_utf8_lossy(&bytes).as_ref())))
    }
    other => Err(BusError::invalid_event(format!(
      "{what} must be a string, got {}",
      type_name(other)
    ))),
  }
}

/// `options.key` of a single `ingest`.
pub(super) fn options_key<'s>(
  scope: &mut Scope<'s>,
  options: JsValue<'s>,
) -> Result<Option<Arc<str>>, BusError> {
  match object_or_none(scope, options, "options")? {
    Some(o) => key_prop(scope, o, c"key", "options.key"),
    None => Ok(None),
  }
}

pub(super) fn key_prop<'s>(
  scope: &mut Scope<'s>,
  options: JsValue<'s>,
  name: &std::ffi::CStr,
  what: &str,
) -> Result<Option<Arc<str>>, BusError> {
  let v = scope.named(options, name, what)?;
  key_from(scope, v, what)
}

/// `options.keys`: one key per event, when given.
pub(super) fn keys_prop<'s>(
  scope: &mut Scope<'s>,
  options: JsValue<'s>,
  events: u32,
) -> Result<Option<Vec<Option<Arc<str>>>>, BusError> {
  let v = scope.named(options, c"keys", "options.keys")?;
  if is_nullish(scope, v) {
    return Ok(None);
  }
  let n = scope.array_len(v, "options.keys")?;
  if n != events {
    return Err(BusError::invalid_event(format!(
      "options.keys has {n} keys for {events} events; give one key per event"
    )));
  }
  let mut keys = Vec::with_capacity(n as usize);
  for i in 0..n {
    let k = scope.element(v, i, "options.keys")?;
    keys.push(key_from(scope, k, &format!("options.keys[{i}]"))?);
  }
  Ok(Some(keys))
}

/// `options.headers`: an object of string values, or None for undefined/null. Checked
/// against the engine's limits before the event is accepted.
pub(super) fn headers_prop<'s>(
  scope: &mut Scope<'s>,
  options: JsValue<'s>,
) -> Result<Option<Headers>, BusError> {
  let v = scope.named(options, c"headers", "options.headers")?;
  let Some(obj) = object_or_none(scope, v, "options.headers")? else {
    return Ok(None);
  };
  if !scope.is_plain_object(obj) {
    // A Map (or an array) has no own string properties: it would be stored as no headers.
    return Err(BusError::invalid_event(
      "options.headers must be a plain object of strings (e.g. { traceparent }); for a Map pass Object.fromEntries(map)",
    ));
  }
  let names = scope.own_keys(obj, "options.headers")?;
  let n = scope.array_len(names, "options.headers")?;
  if n as usize > MAX_HEADERS {
    return Err(BusError::invalid_event(format!(
      "options.headers has {n} entries, over the {MAX_HEADERS}-header limit; carry less context per event"
    )));
  }
  let mut out = Vec::with_capacity(n as usize);
  for i in 0..n {
    let name = scope.element(names, i, "options.headers")?;
    let name = scope.string_bytes(name, "options.headers", |_| Ok(()))?;
    let name = String::from_utf8_lossy(&name).into_owned();
    let what = format!("options.headers.{name}");
    let key = scope.string(name.as_bytes())?;
    let value = scope.property(obj, key, &what)?;
    if scope.type_of(value) != sys::ValueType::napi_string {
      return Err(BusError::invalid_event(format!(
        "{what} must be a string, got {}",
        type_name(scope.type_of(value))
      )));
    }
    let value = scope.string_bytes(value, &what, |units| {
      if units > MAX_HEADER_BYTES {
        return Err(BusError::invalid_event(format!(
          "{what} is at least {units} bytes, over the {MAX_HEADER_BYTES}-byte limit of all headers"
        )));
      }
      Ok(())
    })?;
    out.push((
      name.into_boxed_str(),
      String::from_utf8_lossy(&value)
        .into_owned()
        .into_boxed_str(),
    ));
  }
  Ok(Some(out.into()))
}

/// `options.headers` of a single `ingest`.
pub(super) fn options_headers<'s>(
  scope: &mut Scope<'s>,
  options: JsValue<'s>,
) -> Result<Option<Headers>, BusError> {
  match scope.type_of(options) {
    sys::ValueType::napi_object => headers_prop(scope, options),
    _ => Ok(None),
  }
}

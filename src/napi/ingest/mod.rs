//! The ingest hot path as plain Node-API functions.
//!
//! A napi-rs `&self` method costs about 270 ns per call on the bench machine (borrow
//! tracking, type-tag check, unwrap), while a plain Node-API function that finds its bus in
//! its callback data costs about 20 ns. So the first `ingest`/`ingestBatch` call on a bus
//! goes through the napi-rs methods (which also give the typings) and defines `ingest` and
//! `ingestBatch` as own, non-enumerable properties of that JS object: `ingestBatch` a plain
//! function bound to the bus, `ingest` a small JS function (`bind::INGEST_JS`) that
//! serialises objects itself and calls bound native functions. Later calls go straight
//! there. Every path runs the same conversion, in [`Ingestor`].

mod bind;
mod values;

use std::ptr;
use std::sync::Arc;

use bytes::Bytes;
use napi::sys;

use crate::bus::Bus;
use crate::error::BusError;
use crate::event::{Incoming, PayloadKind};
use bind::install;
use values::{
  array_len, check, key_prop, keys_prop, object_or_none, options_key, string_bytes, take_exception,
  type_name, type_of, uint8_slice,
};

/// What a bound `ingest`/`ingestBatch` function holds: the bus and `JSON.stringify`.
pub struct Ingestor {
  bus: Bus,
  stringify: sys::napi_ref,
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

/// One of the ingest entry points, on its Ingestor with its two arguments.
pub type Call =
  unsafe fn(&Ingestor, sys::napi_env, sys::napi_value, sys::napi_value) -> Result<u32, BusError>;

/// One call through the napi-rs method: installs the bound functions and runs `call`.
pub unsafe fn first_call(
  env: sys::napi_env,
  this: sys::napi_value,
  bus: &Bus,
  call: Call,
  a: sys::napi_value,
  b: sys::napi_value,
) -> Result<u32, BusError> {
  let ing = install(env, this, bus)?;
  call(&*ing, env, a, b)
}

/// The two calls, for the napi-rs methods.
pub const INGEST: Call = Ingestor::ingest;
pub const INGEST_BATCH: Call = Ingestor::ingest_batch;

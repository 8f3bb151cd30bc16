//! The ingest hot path as plain Node-API functions.
//!
//! A napi-rs `&self` method call does borrow tracking, a type-tag check and an unwrap; a
//! plain Node-API function that finds its bus in its callback data does none of that
//! (BENCHMARKS.md compares the two: "through the napi-rs class method"). So the first `ingest`/`ingestBatch` call on a bus
//! goes through the napi-rs methods (which also give the typings) and defines `ingest` and
//! `ingestBatch` as own, non-enumerable properties of that JS object: `ingestBatch` a plain
//! function bound to the bus, `ingest` a small JS function (`bind::INGEST_JS`) that
//! serialises objects itself and calls bound native functions. Later calls go straight
//! there. Every path runs the same conversion, in [`Ingestor`].

mod bind;
mod values;

use std::sync::Arc;

use bytes::Bytes;
use napi::sys;

use crate::bus::Bus;
use crate::error::BusError;
use crate::event::Incoming;
use crate::napi::scope::{JsValue, Scope};
use bind::install;
use values::{
  headers_prop, key_prop, keys_prop, object_or_none, options_headers, options_key, type_name,
};

/// What a bound `ingest`/`ingestBatch` function holds: the bus and `JSON.stringify`.
pub struct Ingestor {
  bus: Bus,
  /// A reference to `JSON.stringify`, created in the function's environment and deleted by
  /// its finalizer.
  stringify: sys::napi_ref,
}

impl Ingestor {
  /// Keeps a reference to `JSON.stringify` for this bus's object events.
  fn new(scope: &mut Scope<'_>, bus: Bus) -> Result<Box<Ingestor>, BusError> {
    let global = scope.global()?;
    let json = scope.named(global, c"JSON", "JSON")?;
    let stringify = scope.named(json, c"stringify", "JSON.stringify")?;
    Ok(Box::new(Ingestor {
      bus,
      stringify: scope.create_reference(stringify)?,
    }))
  }

  /// Serialises an object with `JSON.stringify`.
  fn stringify<'s>(&self, scope: &mut Scope<'s>, value: JsValue<'s>) -> Result<Bytes, BusError> {
    // SAFETY: `self.stringify` was created in this environment by `new` and is deleted
    // only by the finalizer, which cannot run while a call holds this Ingestor.
    let f = unsafe { scope.reference_value(self.stringify)? };
    let out = scope.call(f, [value]).map_err(|reason| {
      BusError::invalid_event(format!(
        "event cannot be serialised as JSON ({reason}); remove cycles and BigInt values, or pass a Buffer"
      ))
    })?;
    if scope.type_of(out) != sys::ValueType::napi_string {
      return Err(BusError::invalid_event(
        "event serialises to nothing (its toJSON returned undefined); pass an object, JSON text or a Buffer",
      ));
    }
    scope.string_bytes(out, "JSON.stringify result", |n| {
      self.bus.check_event_size(n, true)
    })
  }

  /// Converts one JS event to an engine event.
  fn incoming<'s>(
    &self,
    scope: &mut Scope<'s>,
    value: JsValue<'s>,
    key: Option<Arc<str>>,
  ) -> Result<Incoming, BusError> {
    match scope.type_of(value) {
      sys::ValueType::napi_string => {
        let text = scope.string_bytes(value, "event", |n| self.bus.check_event_size(n, true))?;
        Incoming::json(text, key)
      }
      sys::ValueType::napi_object => {
        if let Some(bytes) = scope.uint8_slice(value) {
          self.bus.check_event_size(bytes.len(), false)?;
          return Incoming::bytes(Bytes::copy_from_slice(bytes), key);
        }
        Incoming::json_trusted(self.stringify(scope, value)?, key)
      }
      other => Err(BusError::invalid_event(format!(
        "event must be an object, a JSON string or a Buffer/Uint8Array, got {}",
        type_name(other)
      ))),
    }
  }

  /// `ingest(event, options?)`: the shard id.
  pub fn ingest<'s>(
    &self,
    scope: &mut Scope<'s>,
    event: JsValue<'s>,
    options: JsValue<'s>,
  ) -> Result<u32, BusError> {
    let key = options_key(scope, options)?;
    let headers = options_headers(scope, options)?;
    let inc = self.incoming(scope, event, key)?.with_headers(headers)?;
    self.bus.ingest(inc)
  }

  /// An object event already serialised by `JSON.stringify` in the JS wrapper: valid JSON
  /// by construction, so not validated again. The wrapper found no `options.headers`.
  fn ingest_stringified<'s>(
    &self,
    scope: &mut Scope<'s>,
    json: JsValue<'s>,
    options: JsValue<'s>,
  ) -> Result<u32, BusError> {
    self.stringified(scope, json, options, false)
  }

  /// As [`Ingestor::ingest_stringified`], for options with headers.
  fn ingest_stringified_headers<'s>(
    &self,
    scope: &mut Scope<'s>,
    json: JsValue<'s>,
    options: JsValue<'s>,
  ) -> Result<u32, BusError> {
    self.stringified(scope, json, options, true)
  }

  fn stringified<'s>(
    &self,
    scope: &mut Scope<'s>,
    json: JsValue<'s>,
    options: JsValue<'s>,
    with_headers: bool,
  ) -> Result<u32, BusError> {
    let key = options_key(scope, options)?;
    let headers = match with_headers {
      true => options_headers(scope, options)?,
      false => None,
    };
    let payload = scope.string_bytes(json, "event", |n| self.bus.check_event_size(n, true))?;
    let inc = Incoming::json_trusted(payload, key)?.with_headers(headers)?;
    self.bus.ingest(inc)
  }

  /// `ingestBatch(events, options?)`: how many were accepted.
  pub fn ingest_batch<'s>(
    &self,
    scope: &mut Scope<'s>,
    events: JsValue<'s>,
    options: JsValue<'s>,
  ) -> Result<u32, BusError> {
    let n = scope.array_len(events, "events")?;
    let (shared, keys, headers) = match object_or_none(scope, options, "options")? {
      Some(o) => (
        key_prop(scope, o, c"key", "options.key")?,
        keys_prop(scope, o, n)?,
        headers_prop(scope, o)?,
      ),
      None => (None, None, None),
    };
    let mut batch = Vec::with_capacity(n as usize);
    for i in 0..n {
      let ev = scope.element(events, i, "events")?;
      let key = match &keys {
        Some(keys) => keys[i as usize].clone(),
        None => shared.clone(),
      };
      let inc = self
        .incoming(scope, ev, key)
        .and_then(|inc| inc.with_headers(headers.clone()))
        .map_err(|e| BusError::new(e.code, format!("events[{i}]: {}", e.message)))?;
      batch.push(inc);
    }
    self.bus.ingest_batch(batch).map(|n| n as u32)
  }
}

/// One of the ingest entry points, on its Ingestor with its two arguments.
pub type Call =
  for<'s> fn(&Ingestor, &mut Scope<'s>, JsValue<'s>, JsValue<'s>) -> Result<u32, BusError>;

/// Installs the bound functions on `this` without a call (for telemetry.js, which wraps
/// them); false when they could not be defined.
pub fn bind<'s>(scope: &mut Scope<'s>, this: JsValue<'s>, bus: &Bus) -> Result<bool, BusError> {
  install(scope, this, bus).map(|(_, bound)| bound)
}

/// One call through the napi-rs method: installs the bound functions and runs `call`.
/// Also says whether the functions could be defined on `this`.
pub fn first_call<'s>(
  scope: &mut Scope<'s>,
  this: JsValue<'s>,
  bus: &Bus,
  call: Call,
  a: JsValue<'s>,
  b: JsValue<'s>,
) -> (Result<u32, BusError>, bool) {
  let (ing, bound) = match install(scope, this, bus) {
    Ok(installed) => installed,
    Err(e) => return (Err(e), false),
  };
  // SAFETY: `install` returned the Ingestor of the native `ingest` function it just
  // created; this call's handle scope holds that function, so its finalizer (which frees
  // the Ingestor) cannot run before the call ends.
  let ing = unsafe { &*ing };
  (call(ing, scope, a, b), bound)
}

/// One call on a bus whose object cannot hold the bound functions: an Ingestor for this
/// call only, instead of binding functions (and compiling the wrapper) again every call.
pub fn unbound_call<'s>(
  scope: &mut Scope<'s>,
  bus: &Bus,
  call: Call,
  a: JsValue<'s>,
  b: JsValue<'s>,
) -> Result<u32, BusError> {
  let ing = Ingestor::new(scope, bus.clone())?;
  let result = call(&ing, scope, a, b);
  // SAFETY: the reference was created in this environment by `Ingestor::new` and nothing
  // else holds it.
  unsafe { scope.delete_reference(ing.stringify) };
  result
}

/// The two calls, for the napi-rs methods.
pub const INGEST: Call = Ingestor::ingest;
pub const INGEST_BATCH: Call = Ingestor::ingest_batch;

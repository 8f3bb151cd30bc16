//! Conversions between JS values and engine types: events read back (made by the
//! constructor in `js/event.js`) here, counters in `stats.rs`.

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use crate::adapter::group_store::Letter;
use crate::bus::{FlushReport, ShardStats, Stats};
use crate::error::BusError;
use crate::event::{Headers, PayloadKind, StoredEvent};
use crate::group::member::{Delivery, MemberStats};
use crate::group::worker::{Taken, WorkerStats as EngineWorkerStats};
use crate::napi::scope::{JsValue, Scope};
use crate::shard::CounterSnapshot;

mod groups;
mod packed;
mod stats;

pub use self::groups::*;
pub use self::stats::*;

// The objects `poll` and `subscribe` return are built by `EventList`/`EventValue`; this
// struct only declares their typings.
/// An event read back.
///
/// @typeParam T - The event's type, as `EventBus<T>` declares it; `json()` returns it.
#[napi(object, object_to_js = false, object_from_js = false)]
#[allow(dead_code)]
pub struct BusEvent {
  /// The backend's id of the stored record.
  pub id: String,
  pub shard_id: u32,
  /// Per-shard sequence number assigned at ingest.
  pub seq: f64,
  /// Milliseconds since the UNIX epoch, assigned at ingest.
  pub timestamp: f64,
  /// Partition key, when one was given.
  pub key: Option<String>,
  /// The payload as text (the JSON for JSON events; lossy UTF-8 for bytes).
  pub raw: String,
  /// The exact payload, for events ingested as a Buffer or Uint8Array.
  pub bytes: Option<Buffer>,
  /// Producer nonce, generation, shard and sequence: the id used for deduplication.
  pub message_id: String,
  /// Headers given at ingest (`ingest(event, { headers })`), when there were any.
  pub headers: Option<std::collections::HashMap<String, String>>,
  /// The payload parsed with `JSON.parse`, on the first call; later calls return the same
  /// value. Not enumerable (spreading and `JSON.stringify` skip it); `raw` stays. Throws
  /// `ERR_INVALID_EVENT` for a payload that is not JSON (bytes are stored byte-exact).
  #[napi(ts_type = "() => T")]
  pub json: (),
}

/// An event delivered to a consumer group member.
///
/// @typeParam T - The event's type, as `EventBus<T>` declares it; `json()` returns it.
#[napi(object, object_to_js = false, object_from_js = false)]
#[allow(dead_code)]
pub struct GroupEvent {
  pub id: String,
  pub shard_id: u32,
  pub seq: f64,
  pub timestamp: f64,
  pub key: Option<String>,
  pub raw: String,
  pub bytes: Option<Buffer>,
  pub message_id: String,
  /// Headers given at ingest (`ingest(event, { headers })`), when there were any.
  pub headers: Option<std::collections::HashMap<String, String>>,
  /// 1 on the first delivery; counts on across members and restarts.
  pub deliveries: u32,
  /// The payload parsed with `JSON.parse`, on the first call; later calls return the same
  /// value. Not enumerable (spreading and `JSON.stringify` skip it); `raw` stays. Throws
  /// `ERR_INVALID_EVENT` for a payload that is not JSON (bytes are stored byte-exact).
  #[napi(ts_type = "() => T")]
  pub json: (),
}

/// An event a group gave up on (`bus.deadLetters()`).
///
/// @typeParam T - The event's type, as `EventBus<T>` declares it; `json()` returns it.
#[napi(object, object_to_js = false, object_from_js = false)]
#[allow(dead_code)]
pub struct DeadLetter {
  pub id: String,
  pub shard_id: u32,
  pub seq: f64,
  pub timestamp: f64,
  pub key: Option<String>,
  pub raw: String,
  pub bytes: Option<Buffer>,
  pub message_id: String,
  /// Headers given at ingest (`ingest(event, { headers })`), when there were any.
  pub headers: Option<std::collections::HashMap<String, String>>,
  /// Deliveries made before it was given up.
  pub deliveries: u32,
  /// Why: the handler's last error, or the ack deadline or nacks that used the deliveries up.
  pub reason: String,
  /// Milliseconds since the UNIX epoch when it was dead-lettered.
  pub dead_lettered_at: f64,
  /// The letter's id: pass the letter (or this id) to `bus.redeliver()`.
  pub letter_id: String,
  /// The payload parsed with `JSON.parse`, on the first call; later calls return the same
  /// value. Not enumerable (spreading and `JSON.stringify` skip it); `raw` stays. Throws
  /// `ERR_INVALID_EVENT` for a payload that is not JSON (bytes are stored byte-exact).
  #[napi(ts_type = "() => T")]
  pub json: (),
}

/// Read-back events are made by this constructor (`napi_new_instance`): JS assigns their
/// properties through inline caches, far cheaper than defining each one through Node-API,
/// and `json()` lives once on the prototype. Properties are assigned in one order and
/// optional ones only when present, so events of a kind share a shape. `json()` parses
/// `raw` once and keeps the value on the event under a symbol.
const EVENT_JS: &str = include_str!("../js/event.js");

/// The event constructor ([`EVENT_JS`]) and `undefined`, looked up once per page.
struct EventMaker<'s> {
  ctor: JsValue<'s>,
  undefined: JsValue<'s>,
}

impl<'s> EventMaker<'s> {
  fn new(scope: &mut Scope<'s>) -> std::result::Result<Self, BusError> {
    let ctor = scope
      .script(EVENT_JS)
      .map_err(|reason| BusError::new(crate::error::Code::Internal, reason))?;
    Ok(EventMaker {
      ctor,
      undefined: scope.undefined()?,
    })
  }
}

/// What a read-back event carries beyond the stored record.
#[derive(Clone, Copy)]
pub enum Extra<'a> {
  None,
  Deliveries(u32),
  Letter(&'a Letter),
}

/// The parameters of the `BusEvent` constructor in `js/event.js`, by position: one
/// positional call is the cheapest way to build an event, and these names keep the two
/// sides readable. An argument left `undefined` is a property the event does not get.
mod arg {
  pub const ID: usize = 0;
  pub const SHARD_ID: usize = 1;
  pub const SEQ: usize = 2;
  pub const TIMESTAMP: usize = 3;
  pub const KEY: usize = 4;
  pub const RAW: usize = 5;
  pub const BYTES: usize = 6;
  pub const MESSAGE_ID: usize = 7;
  pub const DELIVERIES: usize = 8;
  pub const REASON: usize = 9;
  pub const DEAD_LETTERED_AT: usize = 10;
  pub const LETTER_ID: usize = 11;
  pub const HEADERS: usize = 12;
  pub const COUNT: usize = 13;
}

/// One event, made by the [`EVENT_JS`] constructor. Absent `key`, `bytes` and extras are
/// left out, not set to undefined.
fn event_object<'s>(
  scope: &mut Scope<'s>,
  maker: &EventMaker<'s>,
  ev: &StoredEvent,
  extra: Extra<'_>,
) -> std::result::Result<JsValue<'s>, BusError> {
  let mut args = [maker.undefined; arg::COUNT];
  args[arg::ID] = scope.string(ev.id.as_bytes())?;
  args[arg::SHARD_ID] = scope.number(ev.shard as f64)?;
  args[arg::SEQ] = scope.number(ev.seq as f64)?;
  args[arg::TIMESTAMP] = scope.number(ev.timestamp_ms as f64)?;
  if let Some(k) = &ev.key {
    args[arg::KEY] = scope.string(k.as_bytes())?;
  }
  // V8 replaces invalid UTF-8 in `raw`, as its typings say.
  args[arg::RAW] = scope.string(&ev.payload)?;
  if ev.kind == PayloadKind::Bytes {
    args[arg::BYTES] = scope.buffer_copy(&ev.payload)?;
  }
  args[arg::MESSAGE_ID] = scope.string(ev.message_id.as_bytes())?;
  match extra {
    Extra::None => {}
    Extra::Deliveries(d) => args[arg::DELIVERIES] = scope.number(d as f64)?,
    Extra::Letter(l) => {
      args[arg::DELIVERIES] = scope.number(l.deliveries as f64)?;
      args[arg::REASON] = scope.string(l.reason.as_bytes())?;
      args[arg::DEAD_LETTERED_AT] = scope.number(l.time_ms as f64)?;
      args[arg::LETTER_ID] = scope.string(l.id.as_bytes())?;
    }
  }
  if let Some(h) = &ev.headers {
    args[arg::HEADERS] = headers_object(scope, h)?;
  }
  scope.construct(maker.ctor, &args)
}

/// An event's headers as a plain object of strings.
fn headers_object<'s>(
  scope: &Scope<'s>,
  h: &Headers,
) -> std::result::Result<JsValue<'s>, BusError> {
  let mut props = Vec::with_capacity(h.len());
  // Ingest allows no more; a record written elsewhere is cut to the same.
  for (name, value) in h.iter().take(crate::event::MAX_HEADERS) {
    props.push((
      scope.string(name.as_bytes())?,
      scope.string(value.as_bytes())?,
    ));
  }
  scope.object_with::<{ crate::event::MAX_HEADERS }>(&props)
}

/// Runs `f` in the scope of the conversion napi-rs is doing; engine errors become napi's.
///
/// # Safety
/// `env` must be the environment of the running call (as in `ToNapiValue`).
unsafe fn converting(
  env: sys::napi_env,
  f: impl for<'s> FnOnce(&mut Scope<'s>) -> std::result::Result<JsValue<'s>, BusError>,
) -> Result<sys::napi_value> {
  // SAFETY: the function's contract.
  unsafe { Scope::with(env, |scope| f(scope).map(JsValue::raw)) }
    .map_err(|e| Error::from_reason(e.message))
}

/// `items` as a JS array of plain event objects; `parts` gives each one's record and extras.
fn page<'s, T>(
  scope: &mut Scope<'s>,
  items: &[T],
  parts: impl for<'a> Fn(&'a T) -> (&'a StoredEvent, Extra<'a>),
) -> std::result::Result<JsValue<'s>, BusError> {
  let maker = EventMaker::new(scope)?;
  let arr = scope.array(items.len())?;
  for (i, item) in items.iter().enumerate() {
    let (ev, extra) = parts(item);
    let obj = event_object(scope, &maker, ev, extra)?;
    scope.set_element(arr, i as u32, obj)?;
  }
  Ok(arr)
}

/// A page of events, converted to an array of plain objects.
pub struct EventList(pub Vec<StoredEvent>);

impl TypeName for EventList {
  fn type_name() -> &'static str {
    "Array<BusEvent>"
  }
  fn value_type() -> ValueType {
    ValueType::Object
  }
}

impl ToNapiValue for EventList {
  unsafe fn to_napi_value(env: sys::napi_env, list: Self) -> Result<sys::napi_value> {
    // SAFETY: napi-rs converts return values on the JS thread, in the call of `env`.
    unsafe { converting(env, |scope| page(scope, &list.0, |ev| (ev, Extra::None))) }
  }
}

/// One event (a subscription step's value).
pub struct EventValue(pub StoredEvent);

impl TypeName for EventValue {
  fn type_name() -> &'static str {
    "BusEvent"
  }
  fn value_type() -> ValueType {
    ValueType::Object
  }
}

impl ToNapiValue for EventValue {
  unsafe fn to_napi_value(env: sys::napi_env, ev: Self) -> Result<sys::napi_value> {
    // SAFETY: napi-rs converts return values on the JS thread, in the call of `env`.
    unsafe {
      converting(env, |scope| {
        let maker = EventMaker::new(scope)?;
        event_object(scope, &maker, &ev.0, Extra::None)
      })
    }
  }
}

/// A page of events.
///
/// @typeParam T - The events' type, as `EventBus<T>` declares it.
#[napi(object, object_from_js = false)]
pub struct PollResult {
  #[napi(ts_type = "Array<BusEvent<T>>")]
  pub events: EventList,
  /// Pass to the next `poll` to continue after this page.
  pub cursor: String,
  /// More events were stored when this page was read (a filtered page can be short or
  /// empty and still have more).
  pub has_more: bool,
}

/// A worker's turn of events: the array of deliveries, with the token of its first as
/// `first` (the others follow, one apart). When the worker is given and the events cannot
/// be made (a throwing setter a user put on `Object.prototype`), their handlers count as
/// failed and an empty list marked `skipped` goes back instead: retried with backoff like
/// any failure, never lost, never a rejection the driver cannot place.
pub struct TakenList(pub Taken, pub Option<crate::group::worker::Worker>);

impl TypeName for TakenList {
  fn type_name() -> &'static str {
    "Array<GroupEvent>"
  }
  fn value_type() -> ValueType {
    ValueType::Object
  }
}

impl ToNapiValue for TakenList {
  unsafe fn to_napi_value(env: sys::napi_env, taken: Self) -> Result<sys::napi_value> {
    // SAFETY: napi-rs converts return values on the JS thread, in the call of `env`.
    unsafe {
      converting(env, |scope| {
        let made = packed::deliveries(scope, &taken.0.deliveries).and_then(|list| {
          let (name, first) = (scope.string(b"first")?, scope.uint32(taken.0.first)?);
          scope.set_property(list, name, first)?;
          Ok(list)
        });
        let (err, worker) = match (made, &taken.1) {
          (Ok(list), _) => return Ok(list),
          (Err(e), Some(w)) => (e, w),
          (Err(e), None) => return Err(e),
        };
        let reason = format!(
          "the event could not be made into a JS object: {}",
          err.message
        );
        for i in 0..taken.0.deliveries.len() {
          worker.settle(
            taken.0.first.wrapping_add(i as u32),
            Some(reason.clone()),
            Some("ERR_INVALID_EVENT"),
          );
        }
        let list = scope.array(0)?;
        let (name, yes) = (scope.string(b"skipped")?, scope.uint32(1)?);
        scope.set_property(list, name, yes)?;
        Ok(list)
      })
    }
  }
}

/// One group delivery (a consumer iteration step's value).
pub struct DeliveryValue(pub Delivery);

impl TypeName for DeliveryValue {
  fn type_name() -> &'static str {
    "GroupEvent"
  }
  fn value_type() -> ValueType {
    ValueType::Object
  }
}

impl ToNapiValue for DeliveryValue {
  unsafe fn to_napi_value(env: sys::napi_env, d: Self) -> Result<sys::napi_value> {
    // SAFETY: napi-rs converts return values on the JS thread, in the call of `env`.
    unsafe {
      converting(env, |scope| {
        let maker = EventMaker::new(scope)?;
        event_object(scope, &maker, &d.0.event, Extra::Deliveries(d.0.deliveries))
      })
    }
  }
}

/// Dead letters as an array of plain objects.
pub struct LetterList(pub Vec<Letter>);

impl TypeName for LetterList {
  fn type_name() -> &'static str {
    "Array<DeadLetter>"
  }
  fn value_type() -> ValueType {
    ValueType::Object
  }
}

impl ToNapiValue for LetterList {
  unsafe fn to_napi_value(env: sys::napi_env, list: Self) -> Result<sys::napi_value> {
    // SAFETY: napi-rs converts return values on the JS thread, in the call of `env`.
    unsafe {
      converting(env, |scope| {
        page(scope, &list.0, |l| (&l.event, Extra::Letter(l)))
      })
    }
  }
}

/// A page of dead letters.
///
/// @typeParam T - The events' type, as `EventBus<T>` declares it.
#[napi(object, object_from_js = false)]
pub struct DeadLetterPage {
  #[napi(ts_type = "Array<DeadLetter<T>>")]
  pub events: LetterList,
  /// Pass to the next `deadLetters` call to continue after this page.
  pub cursor: Option<String>,
  pub has_more: bool,
}

//! Conversions between JS values and engine types.

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use crate::bus::{FlushReport, ShardStats, Stats};
use crate::event::{PayloadKind, StoredEvent};
use crate::shard::CounterSnapshot;

// The objects `poll` and `subscribe` return are built by `EventList`/`EventValue`; this
// struct only declares their typings.
/// An event read back.
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
}

const EVENT_KEYS: [&str; 8] = [
  "id",
  "shardId",
  "seq",
  "timestamp",
  "key",
  "raw",
  "bytes",
  "messageId",
];

/// An event's property names as JS strings, made once per conversion: naming properties
/// with C strings makes V8 look each name up again for every event.
struct EventKeys([sys::napi_value; 8]);

impl EventKeys {
  unsafe fn new(env: sys::napi_env) -> Result<Self> {
    let mut keys = [std::ptr::null_mut(); 8];
    for (slot, name) in keys.iter_mut().zip(EVENT_KEYS) {
      *slot = unsafe { utf8(env, name.as_bytes())? };
    }
    Ok(EventKeys(keys))
  }
}

/// A JS string from UTF-8 bytes; V8 replaces invalid sequences, as `raw` documents.
unsafe fn utf8(env: sys::napi_env, bytes: &[u8]) -> Result<sys::napi_value> {
  let mut out = std::ptr::null_mut();
  check_status!(unsafe {
    sys::napi_create_string_utf8(env, bytes.as_ptr().cast(), bytes.len() as isize, &mut out)
  })?;
  Ok(out)
}

unsafe fn number(env: sys::napi_env, v: f64) -> Result<sys::napi_value> {
  let mut out = std::ptr::null_mut();
  check_status!(unsafe { sys::napi_create_double(env, v, &mut out) })?;
  Ok(out)
}

/// One event as a plain object, all properties defined in one call.
unsafe fn event_object(
  env: sys::napi_env,
  keys: &EventKeys,
  ev: &StoredEvent,
) -> Result<sys::napi_value> {
  let mut values: [sys::napi_value; 8] = [std::ptr::null_mut(); 8];
  unsafe {
    values[0] = utf8(env, ev.id.as_bytes())?;
    values[1] = number(env, ev.shard as f64)?;
    values[2] = number(env, ev.seq as f64)?;
    values[3] = number(env, ev.timestamp_ms as f64)?;
    if let Some(k) = &ev.key {
      values[4] = utf8(env, k.as_bytes())?;
    }
    values[5] = utf8(env, &ev.payload)?;
    if ev.kind == PayloadKind::Bytes {
      let mut data = std::ptr::null_mut();
      check_status!(sys::napi_create_buffer_copy(
        env,
        ev.payload.len(),
        ev.payload.as_ptr().cast(),
        &mut data,
        &mut values[6],
      ))?;
    }
    values[7] = utf8(env, ev.message_id.as_bytes())?;
  }
  let mut props: [sys::napi_property_descriptor; 8] = unsafe { std::mem::zeroed() };
  let mut n = 0;
  for (i, value) in values.iter().enumerate() {
    // Absent key/bytes are left out, not set to undefined.
    if value.is_null() {
      continue;
    }
    props[n].name = keys.0[i];
    props[n].value = *value;
    props[n].attributes = sys::PropertyAttributes::writable
      | sys::PropertyAttributes::enumerable
      | sys::PropertyAttributes::configurable;
    n += 1;
  }
  let mut obj = std::ptr::null_mut();
  check_status!(unsafe { sys::napi_create_object(env, &mut obj) })?;
  check_status!(unsafe { sys::napi_define_properties(env, obj, n, props.as_ptr()) })?;
  Ok(obj)
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
    let keys = unsafe { EventKeys::new(env)? };
    let mut arr = std::ptr::null_mut();
    check_status!(unsafe { sys::napi_create_array_with_length(env, list.0.len(), &mut arr) })?;
    for (i, ev) in list.0.iter().enumerate() {
      let obj = unsafe { event_object(env, &keys, ev)? };
      check_status!(unsafe { sys::napi_set_element(env, arr, i as u32, obj) })?;
    }
    Ok(arr)
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
    unsafe { event_object(env, &EventKeys::new(env)?, &ev.0) }
  }
}

/// Counters as plain numbers (never BigInt). `ingested == stored + dropped + pending`.
#[napi(object)]
pub struct BusStats {
  /// `'running'`, `'shuttingDown'` or `'closed'`.
  pub state: String,
  pub shards: u32,
  /// Events accepted by `ingest`/`ingestBatch`.
  pub ingested: f64,
  /// Events the adapter acknowledged.
  pub stored: f64,
  /// Accepted events that will never be stored (sum of the `dropped*` reasons).
  pub dropped: f64,
  pub dropped_oldest: f64,
  pub dropped_newest: f64,
  /// Refused by the adapter as non-retryable, or retries exhausted.
  pub dropped_adapter: f64,
  /// Still undelivered when the shutdown bound expired.
  pub dropped_shutdown: f64,
  /// Accepted events not yet stored or dropped (queued + in flight).
  pub pending: f64,
  /// Events waiting in rings.
  pub queued: f64,
  /// Events in adapter writes right now.
  pub in_flight: f64,
  /// Events refused with `ERR_BACKPRESSURE` (never accepted, so not in `ingested`).
  pub rejected: f64,
  /// Stored records skipped on read because they could not be decoded (each is also
  /// logged once, with its position).
  pub corrupt_skipped: f64,
  /// Event writes sent again after a failed or timed-out attempt; the adapter stores each
  /// event once however often it is sent.
  pub retried: f64,
}

fn counters_into(c: &CounterSnapshot) -> [f64; 9] {
  [
    c.ingested as f64,
    c.stored as f64,
    c.dropped() as f64,
    c.dropped_oldest as f64,
    c.dropped_newest as f64,
    c.dropped_adapter as f64,
    c.dropped_shutdown as f64,
    c.pending() as f64,
    c.rejected as f64,
  ]
}

pub fn bus_stats(s: &Stats) -> BusStats {
  let [ingested, stored, dropped, dropped_oldest, dropped_newest, dropped_adapter, dropped_shutdown, pending, rejected] =
    counters_into(&s.counters);
  BusStats {
    state: s.state.to_string(),
    shards: s.shards,
    ingested,
    stored,
    dropped,
    dropped_oldest,
    dropped_newest,
    dropped_adapter,
    dropped_shutdown,
    pending,
    queued: s.queued as f64,
    in_flight: s.in_flight as f64,
    rejected,
    corrupt_skipped: s.corrupt_skipped as f64,
    retried: s.counters.retried as f64,
  }
}

/// One shard's state and counters.
#[napi(object)]
pub struct ShardStat {
  pub id: u32,
  /// `'provisioning'` (starting, takes no events yet), `'active'`, `'draining'` (being
  /// removed, delivering what it holds), or `'stopped'` after shutdown.
  pub state: String,
  pub capacity: f64,
  /// Queued events / capacity.
  pub fill_ratio: f64,
  /// Events ingested per second since the previous `shardStats()` call (or the start).
  pub event_rate: f64,
  pub queued: f64,
  pub queued_bytes: f64,
  pub in_flight: f64,
  pub pending: f64,
  pub ingested: f64,
  pub stored: f64,
  pub dropped: f64,
  pub rejected: f64,
  /// Event writes sent again after a failed or timed-out attempt.
  pub retried: f64,
  /// The last adapter error seen by this shard's dispatcher.
  pub last_error: Option<String>,
}

pub fn shard_stat(s: ShardStats) -> ShardStat {
  ShardStat {
    id: s.id,
    state: s.state.to_string(),
    capacity: s.capacity as f64,
    fill_ratio: s.queued as f64 / s.capacity.max(1) as f64,
    event_rate: s.event_rate,
    queued: s.queued as f64,
    queued_bytes: s.queued_bytes as f64,
    in_flight: s.in_flight as f64,
    pending: s.counters.pending() as f64,
    ingested: s.counters.ingested as f64,
    stored: s.counters.stored as f64,
    dropped: s.counters.dropped() as f64,
    rejected: s.counters.rejected as f64,
    retried: s.counters.retried as f64,
    last_error: s.last_error,
  }
}

/// What a flush covered.
#[napi(object)]
pub struct FlushResult {
  /// Events that were queued or in flight when `flush()` was called.
  pub pending: f64,
  /// Of those, how many the adapter stored.
  pub stored: f64,
  /// Of those, how many were dropped instead (see `stats()` for the reasons).
  pub dropped: f64,
}

pub fn flush_result(r: FlushReport) -> FlushResult {
  FlushResult {
    pending: r.pending as f64,
    stored: r.stored as f64,
    dropped: r.dropped as f64,
  }
}

/// A page of events.
#[napi(object, object_from_js = false)]
pub struct PollResult {
  #[napi(ts_type = "Array<BusEvent>")]
  pub events: EventList,
  /// Pass to the next `poll` to continue after this page.
  pub cursor: String,
  /// More events were stored when this page was read (a filtered page can be short or
  /// empty and still have more).
  pub has_more: bool,
}

/// The global `JSON.stringify` as a callable function.
pub type Stringify<'env> = Function<'env, Unknown<'static>, Unknown<'static>>;

/// Serialises a value with `JSON.stringify`. Ok(None) when it serialises to nothing;
/// Err with the JS exception's message when it throws (cycles, BigInt).
pub fn stringify(
  env: &Env,
  f: &Stringify<'_>,
  value: Unknown<'_>,
) -> std::result::Result<Option<String>, String> {
  // SAFETY: the value lives in the current handle scope for the whole call.
  let arg: Unknown<'static> = unsafe { Unknown::from_raw_unchecked(env.raw(), value.raw()) };
  let out = f.call(arg).map_err(|e| e.reason.clone())?;
  match out.get_type() {
    // SAFETY: the type was just checked.
    Ok(ValueType::String) => unsafe { String::from_napi_value(env.raw(), out.raw()) }
      .map(Some)
      .map_err(|e| e.reason.clone()),
    _ => Ok(None),
  }
}

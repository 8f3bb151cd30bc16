//! Options of `poll()` and `subscribe()`.

use super::*;

/// A page request for `poll()`.
#[napi(object)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PollRequest {
  /// Most events in the page (1–10000). Default: 100.
  pub limit: Option<u32>,
  /// Where the previous page ended; omit to start at the oldest stored event.
  pub cursor: Option<String>,
  /// Instead of a cursor: `'earliest'` (the default), `'latest'` (the end: an empty page
  /// whose cursor follows what is stored later) or `{ time }`, the first events stored at
  /// or after a `Date` (or ms since the epoch), by the store's clock.
  #[napi(ts_type = "'earliest' | 'latest' | { time: Date | number }")]
  pub from: Option<serde_json::Value>,
  /// Mongo-like filter on JSON events, e.g. `{ type: 'order', total: { $gt: 100 } }`.
  #[napi(ts_type = "Record<string, unknown>")]
  pub filter: Option<serde_json::Value>,
  /// `'shard'` (default): each shard gets a fair share of the page (on JetStream: the
  /// stream's own order). `'timestamp'`: merged across shards by timestamp. Both keep
  /// each producer's keys in ingest order, also across its scaling.
  #[napi(ts_type = "'shard' | 'timestamp'")]
  pub ordering: Option<String>,
  /// Only these shard ids (order across shards then holds within them only). Default: every
  /// shard the store holds events for.
  pub shards: Option<Vec<u32>>,
}

/// Options of `subscribe()`.
#[napi(object)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscribeOptions {
  /// Mongo-like filter on JSON events (see `poll`).
  #[napi(ts_type = "Record<string, unknown>")]
  pub filter: Option<serde_json::Value>,
  /// `'earliest'` (default), `'latest'` (events stored after iteration starts), a cursor
  /// from `poll()`, or `{ time }`: from the first event stored at or after a `Date` (or ms
  /// since the epoch), by the store's clock.
  #[napi(ts_type = "'earliest' | 'latest' | string | { time: Date | number }")]
  pub from: Option<serde_json::Value>,
}

//! Options of `bus.consumer()`, `bus.process()` and `bus.deadLetters()`.

use super::*;

/// Options of `bus.consumer()`: a member of a consumer group.
#[napi(object)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsumerOptions {
  /// Required. The group's name: 1-64 of `A-Z a-z 0-9 _ -`. Members of one group share
  /// its events; each group gets every event.
  pub group: String,
  /// This member's name, unique among live members (same charset). Default: random.
  pub member: Option<String>,
  /// Only matching events are delivered; the others count as acked. Default: all.
  #[napi(ts_type = "Record<string, unknown>")]
  pub filter: Option<serde_json::Value>,
  /// Where a NEW group starts: `'earliest'` (default, every stored event), `'latest'`
  /// (events stored after it is created) or `{ time }` (events stored at or after a `Date`
  /// or ms since the epoch, by the store's clock). An existing group continues where it was.
  #[napi(ts_type = "'earliest' | 'latest' | { time: Date | number }")]
  pub from: Option<serde_json::Value>,
  /// A delivered event not acked within this is delivered again (100 ms to 1 day).
  /// Default: 30000.
  pub ack_wait_ms: Option<u32>,
  /// After this many deliveries an event becomes a dead letter (1 to 1000000). Default: 5.
  pub max_deliveries: Option<u32>,
  /// Events this member holds unacked at most (1 to 100000). Default: 1000.
  pub max_in_flight: Option<u32>,
  /// How long this member's hold on its shards lasts without renewal (renewed every
  /// third of it): a crashed member's shards move within about this (1000 to 600000).
  /// Default: 10000.
  pub lease_ms: Option<u32>,
}

impl ConsumerOptions {
  pub fn into_group(self) -> Result<GroupOptions> {
    let mut g = GroupOptions::new(&self.group);
    if let Some(m) = self.member {
      g.member = m;
    }
    g.filter = self.filter.as_ref().map(Filter::parse).transpose()?;
    g.from = crate::group::parse_from(self.from.as_ref())?;
    g.ack_wait = ms_or(self.ack_wait_ms, g.ack_wait);
    g.max_deliveries = self.max_deliveries.unwrap_or(g.max_deliveries);
    g.max_in_flight = self.max_in_flight.map_or(g.max_in_flight, |n| n as usize);
    g.lease = ms_or(self.lease_ms, g.lease);
    g.validate()?;
    Ok(g)
  }
}

/// Options of `bus.process()` beside those of a consumer (all but `group`).
#[napi(object)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerOptions {
  /// Handlers running at once, across keys (1 to 10000); one at a time per key.
  /// Default: 16.
  pub concurrency: Option<u32>,
  /// Wait before a failed event's first retry; doubles with each further retry, up to
  /// 30 s (0 to 3600000). Default: 100.
  pub backoff_ms: Option<u32>,
}

/// Splits `process()` options into the worker's and the member's (`group` given apart).
pub fn process_options(
  json: Option<&str>,
  group: &str,
) -> Result<(GroupOptions, EngineWorkerOptions)> {
  let mut map = match json {
    Some(j) => match serde_json::from_str::<serde_json::Value>(j) {
      Ok(serde_json::Value::Object(m)) => m,
      _ => return Err(BusError::config("process options must be an object")),
    },
    None => serde_json::Map::new(),
  };
  if map.contains_key("group") {
    return Err(BusError::config(
      "process options.group: give the group as process()'s first argument",
    ));
  }
  let mut own = serde_json::Map::new();
  for k in ["concurrency", "backoffMs"] {
    if let Some(v) = map.remove(k) {
      own.insert(k.to_string(), v);
    }
  }
  map.insert("group".into(), serde_json::Value::String(group.to_string()));
  let text = serde_json::Value::Object(map).to_string();
  let member: ConsumerOptions = parse_json(&text, "process options", Code::InvalidConfig)?;
  let own_text = serde_json::Value::Object(own).to_string();
  let own: WorkerOptions = parse_json(&own_text, "process options", Code::InvalidConfig)?;
  let d = EngineWorkerOptions::default();
  let worker = EngineWorkerOptions {
    concurrency: own.concurrency.map_or(d.concurrency, |n| n as usize),
    backoff: ms_or(own.backoff_ms, d.backoff),
  };
  worker.validate()?;
  Ok((member.into_group()?, worker))
}

/// Options of `bus.deadLetters()`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLettersOptions {
  /// Most letters in the page (1–10000). Default: 100.
  pub limit: Option<u32>,
  /// Where the previous page ended.
  pub cursor: Option<String>,
  /// Only letters whose event matches this filter (the filter language of `poll`); the
  /// page's cursor goes on from the last letter examined. Default: every letter.
  #[napi(ts_type = "Record<string, unknown>")]
  pub filter: Option<serde_json::Value>,
}

/// Options of `bus.resetGroup()`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetGroupOptions {
  /// Where every shard of the group goes: `'earliest'`, `'latest'`, `{ time }` (a `Date`
  /// or ms since the epoch: the first event stored then) or a cursor from `poll()`.
  /// Required.
  #[napi(ts_type = "'earliest' | 'latest' | { time: Date | number } | string")]
  pub to: Option<serde_json::Value>,
  /// Only say what would move; change nothing. Default: false.
  pub dry_run: Option<bool>,
}

/// Which dead letters `bus.purgeDeadLetters()` removes. With neither `letterIds` nor
/// `filter`, every one; with both, those that pass each.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurgeDeadLettersOptions {
  /// Letters by `letterId` (unknown ids are ignored).
  pub letter_ids: Option<Vec<String>>,
  /// Letters whose event matches this filter (the filter language of `poll`).
  #[napi(ts_type = "Record<string, unknown>")]
  pub filter: Option<serde_json::Value>,
  /// Only count them; remove nothing. Default: false.
  pub dry_run: Option<bool>,
}

/// The bulk form of `bus.redeliver()`: dead letters chosen by a filter, oldest first.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedeliverOptions {
  /// Letters whose event matches this filter (the filter language of `poll`). Default:
  /// every letter.
  #[napi(ts_type = "Record<string, unknown>")]
  pub filter: Option<serde_json::Value>,
  /// Most letters moved. Default: no limit.
  pub limit: Option<u32>,
  /// Only count them; move nothing. Default: false.
  pub dry_run: Option<bool>,
}

//! `bus.metrics()` and the two hidden calls `telemetry.js` makes: one to start recording
//! written batches, one to take them (with the counters the meter instruments report).

use std::sync::atomic::Ordering;

use super::*;
use crate::napi::options::MetricsOptions;

#[napi]
impl EventBus {
  /// The bus's metrics in the Prometheus text format (default) or OpenMetrics, ready to
  /// serve from a scrape endpoint with the content type `metricsContentType(format)` gives.
  /// Conventional names (`messaging_client_sent_messages_total`,
  /// `messaging_client_consumed_messages_total`,
  /// `messaging_client_operation_duration_seconds`, `messaging_process_duration_seconds`)
  /// and ringbus's own (`ringbus_*`: rings, drops, retries, latencies, group counters and
  /// lag). Counters never go down while the bus runs. Lag is read from the store (see
  /// `MetricsOptions.groups`); a group whose lag cannot be read is left out, the rest is
  /// always there. Rejects with `ERR_INVALID_CONFIG` for bad options only.
  #[napi(
    ts_args_type = "options?: MetricsOptions | undefined | null",
    ts_return_type = "Promise<string>"
  )]
  pub fn metrics<'env>(
    &self,
    env: &'env Env,
    options: Option<Unknown<'env>>,
  ) -> Result<PromiseRaw<'env, String>> {
    let bus = self.bus.clone();
    let parsed = read_options::<MetricsOptions>(env, options, "metrics options")
      .and_then(|o| Ok((o.format()?, o.lag_of()?)));
    spawn(
      env,
      async move {
        let (format, lag_of) = parsed?;
        Ok(bus.metrics(format, &lag_of).await)
      },
      |_, text| Ok(text),
    )
  }

  /// Defines the fast `ingest` and `ingestBatch` on this object now, so that telemetry.js
  /// can wrap them for trace propagation. False when the object cannot hold them.
  #[napi(skip_typescript, js_name = "_bindIngest")]
  pub fn bind_ingest(&self, env: Env, this: This) -> Result<bool, Code> {
    self.bind_now(&env, this)
  }

  /// Starts keeping written batches for `send` spans (telemetry.js).
  #[napi(skip_typescript, js_name = "_telemetryStart")]
  pub fn telemetry_start(&self) {
    self.bus.telemetry().batches.enable();
  }

  /// Batches written since the last call, and the counters behind the meter instruments,
  /// as JSON (telemetry.js).
  #[napi(skip_typescript, js_name = "_telemetryTake")]
  pub fn telemetry_take(&self) -> String {
    let t = self.bus.telemetry();
    let batches: Vec<serde_json::Value> = t
      .batches
      .take()
      .into_iter()
      .map(|b| {
        serde_json::json!({
          "shard": b.shard,
          "events": b.events,
          "startedMs": b.started_ms,
          "durationMs": b.duration.as_secs_f64() * 1000.0,
          "attempts": b.attempts,
          "error": b.error,
          "links": b.links,
        })
      })
      .collect();
    let groups: Vec<serde_json::Value> = t
      .groups()
      .into_iter()
      .map(
        |(g, m)| serde_json::json!({ "group": g, "consumed": m.consumed.load(Ordering::Relaxed) }),
      )
      .collect();
    serde_json::json!({
      "destination": self.bus.destination_name(),
      "batches": batches,
      "polled": t.polled.load(Ordering::Relaxed),
      "groups": groups,
    })
    .to_string()
  }
}

/// The `Content-Type` of `bus.metrics({ format })`: `'prometheus'` (default) or
/// `'openmetrics'`. Throws `ERR_INVALID_CONFIG` for another format.
#[napi]
// Called from JS only: napi-rs registers it outside test builds.
#[cfg_attr(test, allow(dead_code))]
pub fn metrics_content_type(
  #[napi(ts_arg_type = "'prometheus' | 'openmetrics'")] format: Option<String>,
) -> Result<String, Code> {
  crate::napi::options::parse_format(format.as_deref())
    .map(|f| f.content_type().to_string())
    .map_err(throw)
}

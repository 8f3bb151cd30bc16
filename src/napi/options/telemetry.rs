//! Options of metrics and OpenTelemetry. The providers are JS objects the package entry
//! (`main.js`, `telemetry.js`) uses; here they are only checked for shape and named in
//! the typings.

use napi_derive::napi;
use serde::Deserialize;

use crate::bus::LagOf;
use crate::error::{BusError, Code, Result};
use crate::telemetry::text::Format;

/// OpenTelemetry for this bus, through the service's own `@opentelemetry/api` (an optional
/// peer dependency: without it, or without a provider, nothing is traced or measured and
/// nothing is logged). Names follow the messaging semantic conventions v1.44, which are
/// still at Development stability.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// Parsed only to check its keys and types: telemetry.js reads the object itself.
#[allow(dead_code)]
pub struct TelemetryOptions {
  /// Where spans go: `send <stream>` per batch written, `process <stream>` per `process()`
  /// handler, `receive <stream>` per `poll` and consumer read. Default: the global tracer
  /// provider registered when the bus is created (none registered: no spans).
  #[napi(ts_type = "{ getTracer(name: string, version?: string, options?: object): unknown }")]
  pub tracer_provider: Option<serde_json::Value>,
  /// Where the four conventional instruments go (`messaging.client.sent.messages`,
  /// `messaging.client.consumed.messages`, `messaging.client.operation.duration`,
  /// `messaging.process.duration`). Default: the global meter provider registered when the
  /// bus is created (none registered: no instruments).
  #[napi(ts_type = "{ getMeter(name: string, version?: string, options?: object): unknown }")]
  pub meter_provider: Option<serde_json::Value>,
  /// `ingest` and `ingestBatch` write the active context's `traceparent` and `tracestate`
  /// into the event's headers, unless the call gives a `traceparent` itself. Default: false.
  pub propagate: Option<bool>,
  /// `process` spans become children of the event's creation context, besides linking to
  /// it. Default: false (a link only, as the conventions advise for consumers).
  pub process_parent: Option<bool>,
  /// `settle <stream>` spans for `consumer.ack` and `consumer.nack`. Default: false.
  pub settle_spans: Option<bool>,
}

/// Checks `options.telemetry`: `false`, `true` (the defaults) or [`TelemetryOptions`].
pub fn check(value: &serde_json::Value) -> Result<()> {
  match value {
    serde_json::Value::Bool(_) | serde_json::Value::Null => Ok(()),
    serde_json::Value::Object(_) => {
      let _: TelemetryOptions =
        super::parse_json(&value.to_string(), "options.telemetry", Code::InvalidConfig)?;
      Ok(())
    }
    _ => Err(BusError::config(
      "options.telemetry must be an object ({ tracerProvider, meterProvider, propagate }) or false",
    )),
  }
}

/// Options of `bus.metrics()`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsOptions {
  /// `'prometheus'`: the Prometheus text format 0.0.4, served as
  /// `text/plain; version=0.0.4; charset=utf-8`. `'openmetrics'`: OpenMetrics 1.0, served
  /// as `application/openmetrics-text; version=1.0.0; charset=utf-8` (`metricsContentType`
  /// gives both). Default: `'prometheus'`.
  #[napi(ts_type = "'prometheus' | 'openmetrics'")]
  pub format: Option<String>,
  /// Whose lag (`ringbus_group_lag_events`, `ringbus_group_lag_age_seconds`) is read from
  /// the store: `'joined'`, the groups this bus has run a consumer or worker of; `'all'`,
  /// every group in the store; `'none'`; or these group names. Each group costs a few store
  /// reads per scrape, bounded by `adapterTimeoutMs`. Default: `'joined'`.
  #[napi(ts_type = "'joined' | 'all' | 'none' | string[]")]
  pub groups: Option<serde_json::Value>,
}

impl MetricsOptions {
  pub fn format(&self) -> Result<Format> {
    parse_format(self.format.as_deref())
  }

  pub fn lag_of(&self) -> Result<LagOf> {
    let bad = || {
      BusError::config(
        "metrics options.groups must be 'joined', 'all', 'none' or an array of group names",
      )
    };
    Ok(match &self.groups {
      None => LagOf::Joined,
      Some(serde_json::Value::String(s)) => match s.as_str() {
        "joined" => LagOf::Joined,
        "all" => LagOf::All,
        "none" => LagOf::None,
        _ => return Err(bad()),
      },
      Some(serde_json::Value::Array(names)) => {
        let mut out = Vec::with_capacity(names.len());
        for n in names {
          let name = n.as_str().ok_or_else(bad)?;
          crate::group::check_name("metrics options.groups", name)?;
          out.push(name.to_string());
        }
        LagOf::Named(out)
      }
      Some(_) => return Err(bad()),
    })
  }
}

pub fn parse_format(format: Option<&str>) -> Result<Format> {
  match format {
    None | Some("prometheus") => Ok(Format::Prometheus),
    Some("openmetrics") => Ok(Format::OpenMetrics),
    Some(other) => Err(BusError::config(format!(
      "metrics format must be 'prometheus' or 'openmetrics', not {other:?}"
    ))),
  }
}

//! The backends and their settings: `BACKENDS` lists them, `AdapterConfig` holds one's
//! settings, parsed from the `adapter` option by the backend itself, and `build_local` /
//! `connect` make the adapter. Adding a backend: ARCHITECTURE.md.

use super::*;
use crate::config::{check_range, BusConfig};

/// One backend: its `type` in the options, and what it can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
  pub name: &'static str,
  /// Connects to a server (so the bus needs `EventBus.create`).
  pub network: bool,
  /// Keeps events to read back (so it has cursors and consumer groups).
  pub keeps_events: bool,
}

/// Every backend, in the order messages list them. A new backend adds its line here, a
/// variant to [`AdapterConfig`] and its arms below.
pub const BACKENDS: &[Backend] = &[
  Backend {
    name: "memory",
    network: false,
    keeps_events: true,
  },
  Backend {
    name: "noop",
    network: false,
    keeps_events: false,
  },
  Backend {
    name: "jetstream",
    network: true,
    keeps_events: true,
  },
  Backend {
    name: "redis",
    network: true,
    keeps_events: true,
  },
];

/// The backends that keep events, for messages: "memory, jetstream or redis".
pub fn backends_keeping_events() -> String {
  let names: Vec<&str> = BACKENDS
    .iter()
    .filter(|b| b.keeps_events)
    .map(|b| b.name)
    .collect();
  match names.split_last() {
    Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
    _ => names.join(""),
  }
}

/// The `adapter` option as given: `type` names the backend, the rest is that backend's
/// (each backend's options parse themselves; their JS typings are in `napi/options`).
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum AdapterOptions {
  Memory(memory::MemoryOptions),
  Noop(NoopOptions),
  Jetstream(jetstream::JetStreamOptions),
  Redis(redis::RedisOptions),
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoopOptions {}

/// Which backend stores the events, with its own settings. Each backend's folder owns its
/// configuration; this enum and the two functions below are the only places that list them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterConfig {
  /// Embedded store with retention bounded by events and payload bytes (all shards together).
  Memory { max_events: usize, max_bytes: usize },
  /// Accepts and discards every event.
  Noop,
  /// NATS JetStream: one stream, one subject per shard.
  JetStream(Box<jetstream::JetStreamConfig>),
  /// Redis Streams: one stream per shard.
  Redis(Box<redis::RedisConfig>),
}

impl Default for AdapterConfig {
  fn default() -> Self {
    AdapterConfig::Memory {
      max_events: memory::DEFAULT_MAX_EVENTS,
      max_bytes: memory::DEFAULT_MAX_BYTES,
    }
  }
}

impl AdapterConfig {
  /// Parses the `adapter` option (an object with `type`); errors name the key under
  /// `what` (e.g. `options.adapter.replicas`).
  pub fn from_options(value: serde_json::Value, what: &str) -> Result<AdapterConfig, BusError> {
    let options: AdapterOptions = crate::config::parse_at(value, what, Code::InvalidConfig)?;
    Ok(match options {
      AdapterOptions::Memory(m) => m.into_config(),
      AdapterOptions::Noop(NoopOptions {}) => AdapterConfig::Noop,
      AdapterOptions::Jetstream(js) => AdapterConfig::JetStream(Box::new(js.into_config()?)),
      AdapterOptions::Redis(r) => AdapterConfig::Redis(Box::new(r.into_config()?)),
    })
  }

  /// The backend these settings are for.
  pub fn backend(&self) -> &'static Backend {
    let name = match self {
      AdapterConfig::Memory { .. } => "memory",
      AdapterConfig::Noop => "noop",
      AdapterConfig::JetStream(_) => "jetstream",
      AdapterConfig::Redis(_) => "redis",
    };
    BACKENDS
      .iter()
      .find(|b| b.name == name)
      .expect("every AdapterConfig variant is in BACKENDS")
  }

  /// Whether the adapter connects to a server (and so needs `EventBus.create`).
  pub fn is_network(&self) -> bool {
    self.backend().network
  }

  /// Checks the adapter's settings, and those that depend on how `bus` retries writes.
  pub fn validate(&self, bus: &BusConfig) -> Result<(), BusError> {
    match self {
      AdapterConfig::Memory {
        max_events,
        max_bytes,
      } => {
        check_range("adapter.maxEvents", *max_events as u64, 1, 1 << 32)?;
        check_range("adapter.maxBytes", *max_bytes as u64, 1024, 1 << 40)
      }
      AdapterConfig::Noop => Ok(()),
      AdapterConfig::JetStream(js) => js.validate(),
      AdapterConfig::Redis(r) => {
        r.validate()?;
        let span = crate::retry::max_span(bus.adapter_timeout, bus.retries);
        let stated = format!(
          "(adapterTimeoutMs + {}) x (retries + 1)",
          crate::retry::MAX_BACKOFF.as_millis()
        );
        r.check_retry_span(span, &stated)
      }
    }
  }
}

/// Builds an in-process adapter; network adapters must be connected with [`connect`].
pub fn build_local(config: &AdapterConfig) -> Result<std::sync::Arc<dyn Adapter>, BusError> {
  match config {
    AdapterConfig::Memory {
      max_events,
      max_bytes,
    } => Ok(std::sync::Arc::new(memory::MemoryAdapter::new(
      *max_events,
      *max_bytes,
    ))),
    AdapterConfig::Noop => Ok(std::sync::Arc::new(noop::NoopAdapter)),
    AdapterConfig::JetStream(_) | AdapterConfig::Redis(_) => Err(BusError::config(
      "this adapter connects to a server: use `await EventBus.create(options)` instead of `new EventBus(options)`",
    )),
  }
}

/// Connects (and prepares) the configured adapter.
pub async fn connect(config: &AdapterConfig) -> Result<std::sync::Arc<dyn Adapter>, BusError> {
  match config {
    AdapterConfig::JetStream(js) => Ok(std::sync::Arc::new(
      jetstream::JetStreamAdapter::connect((**js).clone()).await?,
    )),
    AdapterConfig::Redis(r) => Ok(std::sync::Arc::new(
      redis::RedisAdapter::connect((**r).clone()).await?,
    )),
    other => build_local(other),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn each_backend_parses_its_own_options() {
    use serde_json::json;
    let parse = |v| AdapterConfig::from_options(v, "options.adapter");
    assert_eq!(
      parse(json!({ "type": "memory" })).unwrap(),
      AdapterConfig::default()
    );
    assert_eq!(
      parse(json!({ "type": "noop" })).unwrap(),
      AdapterConfig::Noop
    );
    let AdapterConfig::Redis(r) = parse(json!({
      "type": "redis", "url": "redis://h:1", "keyPrefix": "p", "maxLen": 5, "pipelineSize": 9,
      "tls": { "caFile": "/ca.pem" }
    }))
    .unwrap() else {
      panic!("not redis")
    };
    assert_eq!(
      (r.key_prefix.as_str(), r.max_len, r.pipeline_size),
      ("p", Some(5), 9)
    );
    assert_eq!(r.tls.unwrap().ca_file.unwrap().to_str(), Some("/ca.pem"));
    let AdapterConfig::JetStream(js) = parse(json!({
      "type": "jetstream", "servers": ["nats://a", "nats://b"], "stream": "s",
      "storage": "memory", "maxAgeMs": 60000, "token": "t"
    }))
    .unwrap() else {
      panic!("not jetstream")
    };
    assert_eq!(js.servers, ["nats://a", "nats://b"]);
    assert_eq!(js.storage, jetstream::StorageKind::Memory);
    assert_eq!(js.max_age, Some(Duration::from_secs(60)));
    assert_eq!(js.auth, jetstream::NatsAuth::Token("t".into()));
    for (bad, says) in [
      (
        json!({ "type": "kafka" }),
        "options.adapter.type: unknown variant `kafka`",
      ),
      (
        json!({ "type": "memory", "capacity": 5 }),
        "options.adapter: unknown field `capacity`",
      ),
      (
        json!({ "type": "redis", "url": "redis://h", "maxLen": 1.5 }),
        "adapter.maxLen must be a whole number",
      ),
      (json!({ "type": "redis" }), "give either url"),
      (
        json!({ "type": "jetstream", "servers": 5, "stream": "s" }),
        "adapter.servers must be a URL string",
      ),
      (
        json!({ "type": "jetstream", "servers": "x", "stream": "s", "token": "t", "nkey": "n" }),
        "one authentication method",
      ),
    ] {
      let e = parse(bad.clone()).unwrap_err();
      assert_eq!(e.code, Code::InvalidConfig, "{bad}");
      assert!(e.message.contains(says), "{bad}: {}", e.message);
    }
  }

  #[test]
  fn every_config_names_a_listed_backend() {
    let configs = [
      AdapterConfig::default(),
      AdapterConfig::Noop,
      AdapterConfig::JetStream(Box::new(jetstream::JetStreamConfig::new(vec![], "s"))),
      AdapterConfig::Redis(Box::new(redis::RedisConfig::new(redis::RedisTarget::Url(
        "redis://h".into(),
      )))),
    ];
    let names: Vec<&str> = configs.iter().map(|c| c.backend().name).collect();
    assert_eq!(names, BACKENDS.iter().map(|b| b.name).collect::<Vec<_>>());
    assert_eq!(backends_keeping_events(), "memory, jetstream or redis");
    assert!(configs[2].is_network() && !configs[0].is_network());
  }
}

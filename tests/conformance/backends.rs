//! The stores under test, each on a name of its own, removed after the test.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ringbus::adapter::group_store::GroupStore;
use ringbus::adapter::jetstream::JetStreamConfig;
use ringbus::adapter::redis::{RedisConfig, RedisTarget};
use ringbus::adapter::{Adapter, AdapterConfig};

pub struct Store {
  pub adapter: Arc<dyn Adapter>,
  /// Whether other buses see what this one wrote (`stored_shards`); memory is private.
  pub shared: bool,
  cleanup: Cleanup,
}

enum Cleanup {
  None,
  JetStream { url: String, stream: String },
  Redis { url: String, prefix: String },
}

impl Store {
  pub fn groups(&self) -> &dyn GroupStore {
    self
      .adapter
      .groups()
      .expect("every store under test keeps groups")
  }

  /// Closes the adapter and deletes what the test left on the server.
  pub async fn remove(self) {
    let _ = self.adapter.close().await;
    match self.cleanup {
      Cleanup::None => {}
      Cleanup::JetStream { url, stream } => {
        let client = async_nats::connect(url).await.expect("NATS for cleanup");
        let js = async_nats::jetstream::new(client);
        let _ = js.delete_stream(&stream).await;
        let _ = js.delete_stream(format!("KV_rbg_{stream}")).await;
      }
      Cleanup::Redis { url, prefix } => {
        let client = redis::Client::open(url).expect("Redis URL");
        let mut conn = client
          .get_multiplexed_async_connection()
          .await
          .expect("Redis for cleanup");
        let keys: Vec<String> = redis::cmd("KEYS")
          .arg(format!("*{prefix}*"))
          .query_async(&mut conn)
          .await
          .unwrap_or_default();
        if !keys.is_empty() {
          let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
        }
      }
    }
  }
}

/// A name no other test (or earlier run) uses.
fn unique(prefix: &str) -> String {
  let nanos = SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .unwrap()
    .as_nanos();
  format!(
    "{prefix}_{}_{:x}",
    std::process::id(),
    nanos & 0xffff_ffff_ffff
  )
}

pub async fn memory() -> Store {
  let adapter = ringbus::adapter::connect(&AdapterConfig::default())
    .await
    .unwrap();
  Store {
    adapter,
    shared: false,
    cleanup: Cleanup::None,
  }
}

pub async fn jetstream() -> Store {
  let url = std::env::var("RINGBUS_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
  let stream = unique("conf");
  let config = JetStreamConfig::new(vec![url.clone()], stream.clone());
  let adapter = ringbus::adapter::connect(&AdapterConfig::JetStream(Box::new(config)))
    .await
    .unwrap_or_else(|e| panic!("NATS JetStream at {url} is required: {}", e.message));
  Store {
    adapter,
    shared: true,
    cleanup: Cleanup::JetStream { url, stream },
  }
}

pub async fn redis() -> Store {
  let url = std::env::var("RINGBUS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
  let prefix = unique("conf");
  let mut config = RedisConfig::new(RedisTarget::Url(url.clone()));
  config.key_prefix = prefix.clone();
  let adapter = ringbus::adapter::connect(&AdapterConfig::Redis(Box::new(config)))
    .await
    .unwrap_or_else(|e| panic!("Redis at {url} is required: {}", e.message));
  Store {
    adapter,
    shared: true,
    cleanup: Cleanup::Redis { url, prefix },
  }
}

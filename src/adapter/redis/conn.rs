//! Connections to one Redis server or a Redis Cluster, behind one type.
//!
//! The adapter keeps separate connections for writes, for reads and for blocking waits:
//! a write pipeline never delays a page read, and an `XREAD BLOCK` never stalls either.

use std::time::Duration;

use redis::aio::{
  ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use super::config::{RedisConfig, RedisTarget};
use crate::error::BusError;

/// The longest a blocking read may wait; its connection's response limit is above it.
pub const MAX_BLOCK: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub enum Conn {
  /// Reconnects by itself after the server restarts or the connection drops.
  Managed(ConnectionManager),
  /// A plain connection for blocking reads; dropped (not repaired) when it fails.
  Direct(MultiplexedConnection),
  /// Follows the cluster's slot map and reconnects to nodes by itself.
  Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
  fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
    match self {
      Conn::Managed(c) => c.req_packed_command(cmd),
      Conn::Direct(c) => c.req_packed_command(cmd),
      Conn::Cluster(c) => c.req_packed_command(cmd),
    }
  }

  fn req_packed_commands<'a>(
    &'a mut self,
    pipeline: &'a Pipeline,
    offset: usize,
    count: usize,
  ) -> RedisFuture<'a, Vec<Value>> {
    match self {
      Conn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
      Conn::Direct(c) => c.req_packed_commands(pipeline, offset, count),
      Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
    }
  }

  fn get_db(&self) -> i64 {
    match self {
      Conn::Managed(c) => c.get_db(),
      Conn::Direct(c) => c.get_db(),
      Conn::Cluster(c) => c.get_db(),
    }
  }
}

/// What new connections are made from.
// One per adapter: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Endpoint {
  Single(redis::Client),
  Cluster {
    /// For writes and reads: responses bounded by the command timeout.
    data: ClusterClient,
    /// For blocking reads: responses may take up to [`MAX_BLOCK`] and more.
    blocking: ClusterClient,
  },
}

fn tls_certificates(config: &RedisConfig) -> Result<Option<redis::TlsCertificates>, BusError> {
  let Some(tls) = &config.tls else {
    return Ok(None);
  };
  let read = |what: &str, path: &std::path::Path| {
    std::fs::read(path).map_err(|e| {
      BusError::config(format!(
        "adapter.tls.{what} {} cannot be read ({e}); check the path",
        path.display()
      ))
    })
  };
  let client_tls = match (&tls.cert_file, &tls.key_file) {
    (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
      client_cert: read("certFile", cert)?,
      client_key: read("keyFile", key)?,
    }),
    (None, None) => None,
    _ => {
      return Err(BusError::config(
        "adapter.tls needs both certFile and keyFile for a client certificate",
      ))
    }
  };
  let root_cert = match &tls.ca_file {
    Some(ca) => Some(read("caFile", ca)?),
    None => None,
  };
  Ok(Some(redis::TlsCertificates {
    client_tls,
    root_cert,
  }))
}

impl Endpoint {
  /// Builds the clients; nothing connects yet. Errors here are configuration errors.
  pub fn new(config: &RedisConfig, scrub: impl Fn(String) -> String) -> Result<Self, BusError> {
    let bad_url = |e: redis::RedisError| {
      BusError::config(scrub(format!(
        "adapter: the Redis URL cannot be used ({e}); use redis://[user:password@]host:port[/db] or rediss://…"
      )))
    };
    let certs = tls_certificates(config)?;
    match &config.target {
      RedisTarget::Url(url) => {
        let mut info = url.as_str().into_connection_info().map_err(bad_url)?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &config.username {
          settings = settings.set_username(user);
        }
        if let Some(password) = &config.password {
          settings = settings.set_password(&password.0);
        }
        info = info.set_redis_settings(settings);
        let client = match certs {
          Some(certs) => redis::Client::build_with_tls(info, certs),
          None => redis::Client::open(info),
        }
        .map_err(bad_url)?;
        Ok(Endpoint::Single(client))
      }
      RedisTarget::Cluster(nodes) => {
        let build = |response: Duration| {
          let mut b = ClusterClientBuilder::new(nodes.iter().map(|n| n.as_str()))
            .connection_timeout(config.connect_timeout)
            .response_timeout(response)
            .retries(3)
            .max_retry_wait(1000);
          if let Some(user) = &config.username {
            b = b.username(user);
          }
          if let Some(password) = &config.password {
            b = b.password(&password.0);
          }
          if let Some(certs) = certs.clone() {
            b = b.certs(certs);
          }
          b.build().map_err(bad_url)
        };
        Ok(Endpoint::Cluster {
          data: build(config.command_timeout)?,
          blocking: build(MAX_BLOCK + config.command_timeout)?,
        })
      }
    }
  }

  /// A connection for writes or reads, repaired automatically after failures.
  pub async fn data(&self, config: &RedisConfig) -> redis::RedisResult<Conn> {
    match self {
      Endpoint::Single(client) => {
        let settings = ConnectionManagerConfig::new()
          .set_connection_timeout(Some(config.connect_timeout))
          .set_response_timeout(Some(config.command_timeout))
          .set_number_of_retries(3)
          .set_min_delay(Duration::from_millis(50))
          .set_max_delay(Duration::from_secs(1));
        Ok(Conn::Managed(
          ConnectionManager::new_with_config(client.clone(), settings).await?,
        ))
      }
      Endpoint::Cluster { data, .. } => Ok(Conn::Cluster(data.get_async_connection().await?)),
    }
  }

  /// A dedicated connection for blocking reads (no response limit of its own).
  pub async fn blocking(&self, config: &RedisConfig) -> redis::RedisResult<Conn> {
    match self {
      Endpoint::Single(client) => {
        let settings = AsyncConnectionConfig::new()
          .set_connection_timeout(Some(config.connect_timeout))
          .set_response_timeout(None);
        Ok(Conn::Direct(
          client
            .get_multiplexed_async_connection_with_config(&settings)
            .await?,
        ))
      }
      Endpoint::Cluster { blocking, .. } => {
        Ok(Conn::Cluster(blocking.get_async_connection().await?))
      }
    }
  }

  /// The client for pub/sub connections (group signals); None on a cluster, where
  /// members fall back to their renewal timer.
  pub fn pubsub_client(&self) -> Option<redis::Client> {
    match self {
      Endpoint::Single(client) => Some(client.clone()),
      Endpoint::Cluster { .. } => None,
    }
  }

  pub fn is_cluster(&self) -> bool {
    matches!(self, Endpoint::Cluster { .. })
  }
}

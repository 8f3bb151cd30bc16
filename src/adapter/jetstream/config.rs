//! The JetStream adapter's configuration, its defaults and validation.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::adapter::tls::{TlsConfig, TlsOptions};
use crate::config::{check_ms, check_range, ms_or, whole_number};
use crate::error::{BusError, Result};
use crate::secrets::url_secrets;

/// Credentials for NATS. Never printed: `Debug` hides the secrets.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum NatsAuth {
  #[default]
  None,
  UserPassword {
    user: String,
    password: String,
  },
  Token(String),
  CredsFile(PathBuf),
  NkeySeed(String),
}

impl std::fmt::Debug for NatsAuth {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match self {
      NatsAuth::None => f.write_str("None"),
      NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword({user}, ***)"),
      NatsAuth::Token(_) => f.write_str("Token(***)"),
      NatsAuth::CredsFile(p) => write!(f, "CredsFile({})", p.display()),
      NatsAuth::NkeySeed(_) => f.write_str("NkeySeed(***)"),
    }
  }
}

/// The credentials as given: each authentication method's fields, any of them absent.
#[derive(Default)]
pub struct NatsCredentials {
  pub user: Option<String>,
  pub password: Option<String>,
  pub token: Option<String>,
  pub creds_file: Option<PathBuf>,
  pub nkey: Option<String>,
}

impl NatsAuth {
  /// The one authentication method `given` names; more than one is a configuration error.
  pub fn from_credentials(given: NatsCredentials) -> Result<NatsAuth> {
    let NatsCredentials {
      user,
      password,
      token,
      creds_file,
      nkey,
    } = given;
    let methods = [
      password.is_some() || user.is_some(),
      token.is_some(),
      creds_file.is_some(),
      nkey.is_some(),
    ];
    if methods.iter().filter(|m| **m).count() > 1 {
      return Err(BusError::config(
        "adapter: give one authentication method: user/password, token, credsFile or nkey",
      ));
    }
    Ok(match (user, password, token, creds_file, nkey) {
      (Some(user), Some(password), ..) => NatsAuth::UserPassword { user, password },
      (Some(_), None, ..) | (None, Some(_), ..) => {
        return Err(BusError::config(
          "adapter.user and adapter.password go together",
        ))
      }
      (_, _, Some(t), ..) => NatsAuth::Token(t),
      (_, _, _, Some(f), _) => NatsAuth::CredsFile(f),
      (_, _, _, _, Some(seed)) => NatsAuth::NkeySeed(seed),
      _ => NatsAuth::None,
    })
  }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
  File,
  Memory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamConfig {
  pub servers: Vec<String>,
  pub stream: String,
  pub auth: NatsAuth,
  pub tls: Option<TlsConfig>,
  pub replicas: usize,
  pub storage: StorageKind,
  pub max_age: Option<Duration>,
  pub max_bytes: Option<i64>,
  pub max_messages: Option<i64>,
  pub duplicate_window: Duration,
  pub connect_timeout: Duration,
  pub request_timeout: Duration,
  pub max_in_flight: usize,
  /// Create the stream when missing and check its settings; false: use the stream as it
  /// is (an operator's tool attaching to a stream made elsewhere).
  pub create: bool,
}

/// The `adapter` option of `type: 'jetstream'` as given. Its typings and documented
/// defaults are in `napi/options/adapter.rs`; `__test__/adapter-options.test.ts` checks
/// that both name the same keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JetStreamOptions {
  servers: serde_json::Value,
  stream: String,
  user: Option<String>,
  password: Option<String>,
  token: Option<String>,
  creds_file: Option<String>,
  nkey: Option<String>,
  tls: Option<TlsOptions>,
  replicas: Option<u32>,
  storage: Option<StorageKind>,
  max_age_ms: Option<f64>,
  max_bytes: Option<f64>,
  max_messages: Option<f64>,
  duplicate_window_ms: Option<u32>,
  connect_timeout_ms: Option<u32>,
  request_timeout_ms: Option<u32>,
  max_in_flight: Option<u32>,
  create: Option<bool>,
}

impl JetStreamOptions {
  /// The configuration these options give, defaults filled in (validated later, with the
  /// bus's settings).
  pub fn into_config(self) -> Result<JetStreamConfig> {
    let bad_servers =
      || BusError::config("adapter.servers must be a URL string or an array of URL strings");
    let servers = match self.servers {
      serde_json::Value::String(s) => vec![s],
      serde_json::Value::Array(items) => items
        .into_iter()
        .map(|v| match v {
          serde_json::Value::String(s) => Ok(s),
          _ => Err(bad_servers()),
        })
        .collect::<Result<Vec<_>>>()?,
      _ => return Err(bad_servers()),
    };
    let mut c = JetStreamConfig::new(servers, self.stream);
    c.auth = NatsAuth::from_credentials(NatsCredentials {
      user: self.user,
      password: self.password,
      token: self.token,
      creds_file: self.creds_file.map(Into::into),
      nkey: self.nkey,
    })?;
    c.tls = self.tls.map(Into::into);
    if let Some(r) = self.replicas {
      c.replicas = r as usize;
    }
    if let Some(storage) = self.storage {
      c.storage = storage;
    }
    c.max_age =
      whole_number("adapter.maxAgeMs", self.max_age_ms)?.map(|v| Duration::from_millis(v as u64));
    c.max_bytes = whole_number("adapter.maxBytes", self.max_bytes)?;
    c.max_messages = whole_number("adapter.maxMessages", self.max_messages)?;
    c.duplicate_window = ms_or(self.duplicate_window_ms, c.duplicate_window);
    c.connect_timeout = ms_or(self.connect_timeout_ms, c.connect_timeout);
    c.request_timeout = ms_or(self.request_timeout_ms, c.request_timeout);
    if let Some(n) = self.max_in_flight {
      c.max_in_flight = n as usize;
    }
    c.create = self.create.unwrap_or(true);
    Ok(c)
  }
}

impl JetStreamConfig {
  pub fn new(servers: Vec<String>, stream: impl Into<String>) -> Self {
    JetStreamConfig {
      servers,
      stream: stream.into(),
      auth: NatsAuth::None,
      tls: None,
      replicas: 1,
      storage: StorageKind::File,
      max_age: None,
      max_bytes: None,
      max_messages: None,
      duplicate_window: Duration::from_secs(120),
      connect_timeout: Duration::from_secs(5),
      request_timeout: Duration::from_secs(5),
      max_in_flight: 1024,
      create: true,
    }
  }

  pub fn validate(&self) -> Result<()> {
    if self.servers.is_empty() {
      return Err(BusError::config(
        "adapter.servers must name at least one server, e.g. 'nats://127.0.0.1:4222'",
      ));
    }
    for s in &self.servers {
      if s.trim().is_empty() {
        return Err(BusError::config(
          "adapter.servers contains an empty address",
        ));
      }
    }
    let valid_name = !self.stream.is_empty()
      && self.stream.len() <= 64
      && self
        .stream
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_name {
      return Err(BusError::config(format!(
        "adapter.stream {:?} is not a valid stream name: use 1-64 letters, digits, '-' or '_'",
        self.stream
      )));
    }
    check_range("adapter.replicas", self.replicas as u64, 1, 5)?;
    check_range("adapter.maxInFlight", self.max_in_flight as u64, 1, 65_536)?;
    check_ms("adapter.connectTimeoutMs", self.connect_timeout, 1, 600_000)?;
    check_ms("adapter.requestTimeoutMs", self.request_timeout, 1, 600_000)?;
    check_ms(
      "adapter.duplicateWindowMs",
      self.duplicate_window,
      100,
      7 * 24 * 3_600_000,
    )?;
    if let Some(age) = self.max_age {
      if age < self.duplicate_window {
        return Err(BusError::config(
          "adapter.maxAgeMs must be at least adapter.duplicateWindowMs (NATS requires it)",
        ));
      }
    }
    if let NatsAuth::UserPassword { user, .. } = &self.auth {
      if user.is_empty() {
        return Err(BusError::config(
          "adapter.user must not be empty when adapter.password is set",
        ));
      }
    }
    Ok(())
  }

  /// Every secret these options carry, to keep out of messages.
  pub fn secrets(&self) -> Vec<String> {
    let mut out = Vec::new();
    match &self.auth {
      NatsAuth::UserPassword { password, .. } => out.push(password.clone()),
      NatsAuth::Token(t) => out.push(t.clone()),
      NatsAuth::NkeySeed(s) => out.push(s.clone()),
      NatsAuth::None | NatsAuth::CredsFile(_) => {}
    }
    for url in &self.servers {
      out.extend(url_secrets(url));
    }
    out.retain(|s| !s.is_empty());
    out
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::secrets::scrub;

  #[test]
  fn config_secrets_are_scrubbed() {
    let mut c = JetStreamConfig::new(vec!["nats://bob:s3cret@h:1".into()], "x");
    c.auth = NatsAuth::Token("tok-123".into());
    let s = c.secrets();
    assert_eq!(
      scrub(&s, "auth failed for tok-123 and s3cret".into()),
      "auth failed for *** and ***"
    );
  }

  #[test]
  fn one_authentication_method() {
    let two = NatsCredentials {
      token: Some("t".into()),
      nkey: Some("SU".into()),
      ..Default::default()
    };
    let err = NatsAuth::from_credentials(two).unwrap_err();
    assert!(
      err.message.contains("one authentication method"),
      "{}",
      err.message
    );
    let half = NatsCredentials {
      user: Some("bob".into()),
      ..Default::default()
    };
    assert!(NatsAuth::from_credentials(half)
      .unwrap_err()
      .message
      .contains("go together"));
    let pair = NatsCredentials {
      user: Some("bob".into()),
      password: Some("pw".into()),
      ..Default::default()
    };
    assert!(matches!(
      NatsAuth::from_credentials(pair).unwrap(),
      NatsAuth::UserPassword { .. }
    ));
    assert_eq!(
      NatsAuth::from_credentials(NatsCredentials::default()).unwrap(),
      NatsAuth::None
    );
  }
}

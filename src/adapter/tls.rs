//! TLS settings shared by the network adapters.

use std::path::PathBuf;

use serde::Deserialize;

/// TLS for a network adapter. Present means required; without files the system's roots
/// verify the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
  pub ca_file: Option<PathBuf>,
  pub cert_file: Option<PathBuf>,
  pub key_file: Option<PathBuf>,
}

/// The `tls` option as given (typed for JS in `napi/options`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsOptions {
  ca_file: Option<String>,
  cert_file: Option<String>,
  key_file: Option<String>,
}

impl From<TlsOptions> for TlsConfig {
  fn from(t: TlsOptions) -> Self {
    TlsConfig {
      ca_file: t.ca_file.map(Into::into),
      cert_file: t.cert_file.map(Into::into),
      key_file: t.key_file.map(Into::into),
    }
  }
}

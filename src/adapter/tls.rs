//! TLS settings shared by the network adapters.

use std::path::PathBuf;

/// TLS for a network adapter. Present means required; without files the system's roots
/// verify the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
  pub ca_file: Option<PathBuf>,
  pub cert_file: Option<PathBuf>,
  pub key_file: Option<PathBuf>,
}

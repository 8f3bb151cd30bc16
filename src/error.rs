//! Error codes shared by the engine and the JS surface (the README's error table).

use std::fmt;

/// Stable error codes. They reach JavaScript as `err.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
  InvalidConfig,
  InvalidEvent,
  Backpressure,
  ShutDown,
  Connect,
  Adapter,
  Timeout,
  InvalidFilter,
  InvalidCursor,
  /// A bug or a failed runtime call (a Node-API call, a caught panic), never bad input.
  Internal,
}

impl Code {
  pub const fn as_str(self) -> &'static str {
    match self {
      Code::InvalidConfig => "ERR_INVALID_CONFIG",
      Code::InvalidEvent => "ERR_INVALID_EVENT",
      Code::Backpressure => "ERR_BACKPRESSURE",
      Code::ShutDown => "ERR_SHUT_DOWN",
      Code::Connect => "ERR_CONNECT",
      Code::Adapter => "ERR_ADAPTER",
      Code::Timeout => "ERR_TIMEOUT",
      Code::InvalidFilter => "ERR_INVALID_FILTER",
      Code::InvalidCursor => "ERR_INVALID_CURSOR",
      Code::Internal => "ERR_INTERNAL",
    }
  }
}

impl AsRef<str> for Code {
  fn as_ref(&self) -> &str {
    self.as_str()
  }
}

impl fmt::Display for Code {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(self.as_str())
  }
}

/// An error with a stable code and a message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusError {
  pub code: Code,
  pub message: String,
}

impl BusError {
  pub fn new(code: Code, message: impl Into<String>) -> Self {
    BusError {
      code,
      message: message.into(),
    }
  }

  pub fn config(message: impl Into<String>) -> Self {
    Self::new(Code::InvalidConfig, message)
  }

  pub fn invalid_event(message: impl Into<String>) -> Self {
    Self::new(Code::InvalidEvent, message)
  }

  pub fn shut_down() -> Self {
    Self::new(
      Code::ShutDown,
      "the bus has been shut down; create a new EventBus to continue",
    )
  }
}

impl fmt::Display for BusError {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{}: {}", self.code, self.message)
  }
}

impl std::error::Error for BusError {}

pub type Result<T> = std::result::Result<T, BusError>;

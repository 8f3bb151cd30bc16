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

/// serde's "invalid type: string \"…\", expected …" quotes the value it got; a password
/// or token given in the wrong place would be echoed, so the value goes and its kind stays.
pub fn without_echoed_value(msg: &str) -> String {
  let Some(rest) = msg
    .strip_prefix("invalid type: ")
    .or_else(|| msg.strip_prefix("invalid value: "))
  else {
    return msg.to_string();
  };
  let Some(expected) = rest.find(", expected") else {
    return msg.to_string();
  };
  let got = &rest[..expected];
  let kind = got.find(['`', '"']).map_or(got, |i| got[..i].trim_end());
  format!(
    "{}{kind}{}",
    &msg[..msg.len() - rest.len()],
    &rest[expected..]
  )
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn echoed_values_are_removed() {
    assert_eq!(
      without_echoed_value("invalid type: integer `12345678`, expected a string"),
      "invalid type: integer, expected a string"
    );
    assert_eq!(
      without_echoed_value("invalid type: string \"hunter2\", expected u32"),
      "invalid type: string, expected u32"
    );
    assert_eq!(
      without_echoed_value("invalid value: integer `-1`, expected u32"),
      "invalid value: integer, expected u32"
    );
    // Key names are not values: they stay.
    let unknown = "unknown field `capacity`, expected one of `type`, `maxEvents`";
    assert_eq!(without_echoed_value(unknown), unknown);
  }
}

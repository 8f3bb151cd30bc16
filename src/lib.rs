//! ringbus: an event bus for Node.js services, as a napi-rs addon over a Rust engine.
//!
//! The engine (everything but `napi`) has no napi types, so `cargo test` runs it without Node.

pub mod adapter;
pub mod bus;
pub mod clock;
pub mod config;
pub mod consume;
pub mod dispatch;
pub mod error;
pub mod event;
pub mod group;
pub mod identity;
pub mod log;
pub mod random;
pub mod retry;
pub mod routing;
pub mod scaling;
pub mod secrets;
pub mod shard;
pub mod signal;
pub mod telemetry;
pub mod topology;

#[cfg(feature = "addon")]
mod napi;

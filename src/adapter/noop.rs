//! Accepts and discards every event: for measuring the bus itself.

use std::time::Duration;

use async_trait::async_trait;

use super::{Adapter, AdapterError, Positions, ReadPage, WriteBatch, WriteResult};

#[derive(Debug, Default)]
pub struct NoopAdapter;

#[async_trait]
impl Adapter for NoopAdapter {
  fn kind(&self) -> &'static str {
    "noop"
  }

  fn cursor_scope(&self) -> String {
    "noop".into()
  }

  async fn write(&self, _batch: WriteBatch<'_>) -> Result<WriteResult, AdapterError> {
    Ok(WriteResult::AllStored)
  }

  async fn read(&self, _: u32, _: Option<&str>, _: usize) -> Result<ReadPage, AdapterError> {
    Ok(ReadPage::default())
  }

  async fn end_positions(&self, _: &[u32]) -> Result<Positions, AdapterError> {
    Ok(Positions::new())
  }

  async fn positions_at(&self, _: &[u32], _: u64) -> Result<Positions, AdapterError> {
    Ok(Positions::new())
  }

  async fn wait_for_data(&self, _: &[u32], _: &Positions, max_wait: Duration) {
    // Nothing is ever readable: sleep out the wait (subscribers also wake on shutdown).
    tokio::time::sleep(max_wait).await;
  }

  async fn flush(&self) -> Result<(), AdapterError> {
    Ok(())
  }

  async fn close(&self) -> Result<(), AdapterError> {
    Ok(())
  }

  async fn is_healthy(&self) -> bool {
    true
  }
}

//! Reading events back: cursors, filters, the poll merger and subscriptions.

pub mod barrier;
pub mod cursor;
pub mod filter;
pub mod lane;
pub mod poll;
pub mod start;
pub mod subscribe;
pub mod sweep;
pub mod sweep_cache;

use crate::adapter::Adapter;

/// The shards this process writes, as the read side sees them: readers need their ids and
/// nothing else of the write side (which implements this in `topology`).
pub trait ShardSource: Send + Sync {
  /// Every shard id this process has made, removed ones included.
  fn all_ids(&self) -> Vec<u32>;
}

/// The shards a read covers: this bus's own (removed ones included) and every shard the
/// store reports holding events, whoever wrote them (other processes with other shard
/// counts, or this stream before a restart). When the store cannot say, its own.
pub async fn read_shards(adapter: &dyn Adapter, own: Vec<u32>) -> Vec<u32> {
  let mut all = own;
  if let Ok(stored) = adapter.stored_shards().await {
    all.extend(stored);
  }
  all.sort_unstable();
  all.dedup();
  all
}

#[cfg(test)]
mod tests {
  use super::cursor::Cursor;
  use super::poll::PageOrder;
  use super::subscribe::StartAt;
  use crate::error::Code;

  #[test]
  fn options_parse_to_their_defaults_and_name_bad_values() {
    assert_eq!(PageOrder::parse(None).unwrap(), PageOrder::Shard);
    assert_eq!(
      PageOrder::parse(Some("timestamp")).unwrap(),
      PageOrder::Timestamp
    );
    let e = PageOrder::parse(Some("time")).unwrap_err();
    assert_eq!(e.code, Code::InvalidConfig);
    assert!(
      e.message.contains("'shard' or 'timestamp', got \"time\""),
      "{}",
      e.message
    );
    assert!(matches!(
      StartAt::parse_text(None, "memory"),
      Ok(StartAt::Earliest)
    ));
    assert!(matches!(
      StartAt::parse_text(Some("latest"), "memory"),
      Ok(StartAt::Latest)
    ));
    let c = Cursor::default().encode("memory");
    assert!(matches!(
      StartAt::parse_text(Some(&c), "memory"),
      Ok(StartAt::Cursor(_))
    ));
    let other = StartAt::parse_text(Some(&c), "redis:x").err().unwrap();
    assert_eq!(other.code, Code::InvalidCursor);
  }
}

//! The bus's counters: totals and per shard.

use super::*;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
  pub counters: CounterSnapshot,
  pub queued: u64,
  pub in_flight: u64,
  pub shards: u32,
  pub state: &'static str,
  /// Records the adapter skipped on read because they could not be decoded.
  pub corrupt_skipped: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardStats {
  pub id: u32,
  pub state: &'static str,
  pub capacity: u64,
  pub queued: u64,
  pub queued_bytes: u64,
  pub in_flight: u64,
  /// Events ingested per second since the previous `shard_stats` call.
  pub event_rate: f64,
  pub counters: CounterSnapshot,
  pub last_error: Option<String>,
}

impl Bus {
  pub fn stats(&self) -> Stats {
    let mut s = Stats {
      shards: self.num_shards(),
      state: self.state_name(),
      corrupt_skipped: self.core.adapter.corrupt_skipped(),
      ..Stats::default()
    };
    for shard in self.core.shards.all_shards() {
      s.counters.add(&shard.counters());
      let o = shard.occupancy();
      s.queued += o.queued as u64;
      s.in_flight += o.in_flight as u64;
    }
    s
  }

  pub fn shard_stats(&self) -> Vec<ShardStats> {
    let running = self.is_running();
    self
      .core
      .shards
      .listed()
      .into_iter()
      .map(|(shard, state, event_rate)| {
        let counters = shard.counters();
        let o = shard.occupancy();
        ShardStats {
          id: shard.id,
          state: if running { state.name() } else { "stopped" },
          capacity: shard.capacity() as u64,
          queued: o.queued as u64,
          queued_bytes: o.queued_bytes as u64,
          in_flight: o.in_flight as u64,
          event_rate,
          counters,
          last_error: o.last_error,
        }
      })
      .collect()
  }

  pub(super) fn state_name(&self) -> &'static str {
    match self.core.state.load(Ordering::SeqCst) {
      RUNNING => "running",
      SHUTTING_DOWN => "shuttingDown",
      _ => "closed",
    }
  }
}

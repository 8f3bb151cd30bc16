//! Counters as JS objects: the bus's, each shard's, a flush's, a consumer's and a
//! worker's.

use super::*;

/// Counters as plain numbers (never BigInt). `ingested == stored + dropped + pending`.
#[napi(object)]
pub struct BusStats {
  /// `'running'`, `'shuttingDown'` or `'closed'`.
  pub state: String,
  pub shards: u32,
  /// Events accepted by `ingest`/`ingestBatch`.
  pub ingested: f64,
  /// Events the adapter acknowledged.
  pub stored: f64,
  /// Accepted events that will never be stored (sum of the `dropped*` reasons).
  pub dropped: f64,
  pub dropped_oldest: f64,
  pub dropped_newest: f64,
  /// Refused by the adapter as non-retryable, or retries exhausted.
  pub dropped_adapter: f64,
  /// Still undelivered when the shutdown bound expired.
  pub dropped_shutdown: f64,
  /// Accepted events not yet stored or dropped (queued + in flight).
  pub pending: f64,
  /// Events waiting in rings.
  pub queued: f64,
  /// Events in adapter writes right now.
  pub in_flight: f64,
  /// Events refused with `ERR_BACKPRESSURE` (never accepted, so not in `ingested`).
  pub rejected: f64,
  /// Stored records skipped on read because they could not be decoded (each is also
  /// logged once, with its position).
  pub corrupt_skipped: f64,
  /// Event writes sent again after a failed or timed-out attempt; the adapter stores each
  /// event once however often it is sent.
  pub retried: f64,
}

fn counters_into(c: &CounterSnapshot) -> [f64; 9] {
  [
    c.ingested as f64,
    c.stored as f64,
    c.dropped() as f64,
    c.dropped_oldest as f64,
    c.dropped_newest as f64,
    c.dropped_adapter as f64,
    c.dropped_shutdown as f64,
    c.pending() as f64,
    c.rejected as f64,
  ]
}

pub fn bus_stats(s: &Stats) -> BusStats {
  let [ingested, stored, dropped, dropped_oldest, dropped_newest, dropped_adapter, dropped_shutdown, pending, rejected] =
    counters_into(&s.counters);
  BusStats {
    state: s.state.to_string(),
    shards: s.shards,
    ingested,
    stored,
    dropped,
    dropped_oldest,
    dropped_newest,
    dropped_adapter,
    dropped_shutdown,
    pending,
    queued: s.queued as f64,
    in_flight: s.in_flight as f64,
    rejected,
    corrupt_skipped: s.corrupt_skipped as f64,
    retried: s.counters.retried as f64,
  }
}

/// One shard's state and counters.
#[napi(object)]
pub struct ShardStat {
  pub id: u32,
  /// `'provisioning'` (starting, takes no events yet), `'active'`, `'draining'` (being
  /// removed, delivering what it holds), or `'stopped'` after shutdown.
  pub state: String,
  pub capacity: f64,
  /// Queued events / capacity.
  pub fill_ratio: f64,
  /// Events ingested per second since the previous `shardStats()` call (or the start).
  pub event_rate: f64,
  pub queued: f64,
  pub queued_bytes: f64,
  pub in_flight: f64,
  pub pending: f64,
  pub ingested: f64,
  pub stored: f64,
  pub dropped: f64,
  pub rejected: f64,
  /// Event writes sent again after a failed or timed-out attempt.
  pub retried: f64,
  /// The last adapter error seen by this shard's dispatcher.
  pub last_error: Option<String>,
}

pub fn shard_stat(s: ShardStats) -> ShardStat {
  ShardStat {
    id: s.id,
    state: s.state.to_string(),
    capacity: s.capacity as f64,
    fill_ratio: s.queued as f64 / s.capacity.max(1) as f64,
    event_rate: s.event_rate,
    queued: s.queued as f64,
    queued_bytes: s.queued_bytes as f64,
    in_flight: s.in_flight as f64,
    pending: s.counters.pending() as f64,
    ingested: s.counters.ingested as f64,
    stored: s.counters.stored as f64,
    dropped: s.counters.dropped() as f64,
    rejected: s.counters.rejected as f64,
    retried: s.counters.retried as f64,
    last_error: s.last_error,
  }
}

/// What a flush covered.
#[napi(object)]
pub struct FlushResult {
  /// Events that were queued or in flight when `flush()` was called.
  pub pending: f64,
  /// Of those, how many the adapter stored.
  pub stored: f64,
  /// Of those, how many were dropped instead (see `stats()` for the reasons).
  pub dropped: f64,
}

pub fn flush_result(r: FlushReport) -> FlushResult {
  FlushResult {
    pending: r.pending as f64,
    stored: r.stored as f64,
    dropped: r.dropped as f64,
  }
}

/// A consumer's counters, as plain numbers.
#[napi(object)]
pub struct ConsumerStats {
  /// Deliveries made (redeliveries included).
  pub delivered: f64,
  pub acked: f64,
  pub nacked: f64,
  /// Deliveries after the first of an event (after an ack deadline, a nack, a failed
  /// handler or a hand-over).
  pub redelivered: f64,
  pub dead_lettered: f64,
  /// Delivered and not yet acked.
  pub in_flight: f64,
  /// Events on this member's shards not yet acked: held (read, delivered or waiting) plus
  /// stored and not yet read. Memory and JetStream count the unread part with each read;
  /// Redis (7 or later) recounts it at each lease renewal (`leaseMs / 3`) and counts off
  /// the pages read between.
  pub lag: f64,
  /// The shard ids this member owns now.
  pub shards: Vec<u32>,
}

pub fn consumer_stats(s: &MemberStats) -> ConsumerStats {
  ConsumerStats {
    delivered: s.delivered as f64,
    acked: s.acked as f64,
    nacked: s.nacked as f64,
    redelivered: s.redelivered as f64,
    dead_lettered: s.dead_lettered as f64,
    in_flight: s.in_flight as f64,
    lag: s.lag as f64,
    shards: s.shards.clone(),
  }
}

/// A `process()` worker's counters, with its member's.
#[napi(object)]
pub struct WorkerStats {
  /// Handlers running now.
  pub running: f64,
  /// Taken from the group and waiting for their key or a free slot.
  pub queued: f64,
  /// Failed, waiting for their retry.
  pub retrying: f64,
  /// Handlers that resolved (each acked).
  pub handled: f64,
  /// Handler calls that threw or rejected.
  pub failed: f64,
  pub consumer: ConsumerStats,
}

pub fn worker_stats(s: &EngineWorkerStats) -> WorkerStats {
  WorkerStats {
    running: s.running as f64,
    queued: s.queued as f64,
    retrying: s.retrying as f64,
    handled: s.handled as f64,
    failed: s.failed as f64,
    consumer: consumer_stats(&s.member),
  }
}

/// What the store holds (`bus.info()`).
#[napi(object)]
pub struct BusInfo {
  /// Every shard the store reports and this bus's own, sorted by id.
  pub shards: Vec<StoredShard>,
  /// The producers that wrote to the store, where it records them (Redis: those that began
  /// writing to a shard within 7 days); absent on JetStream and memory.
  pub producers: Option<Vec<StoredProducer>>,
}

/// A producer the store recorded.
#[napi(object)]
pub struct StoredProducer {
  /// Its nonce, in hex: every message id it writes starts `<nonce>-<epoch>-`.
  pub nonce: String,
  pub epoch: f64,
  /// When it last began writing to a shard, ms since the epoch (the store's clock).
  pub seen_at: f64,
}

/// One shard in the store.
#[napi(object)]
pub struct StoredShard {
  pub id: u32,
  /// Events held now, after retention.
  pub count: f64,
  /// Bytes the store uses for them, where it can tell (memory: payloads and keys; Redis:
  /// `MEMORY USAGE`; JetStream: not per shard).
  pub bytes: Option<f64>,
  /// When the oldest held event was stored, in ms since the epoch (the store's clock).
  pub first_at: Option<f64>,
  /// When the newest held event was stored, in ms since the epoch (the store's clock).
  pub last_at: Option<f64>,
}

pub fn bus_info(info: crate::bus::StoreInfo) -> BusInfo {
  BusInfo {
    producers: info.producers.map(|list| {
      list
        .into_iter()
        .map(|p| StoredProducer {
          nonce: p.nonce,
          epoch: p.epoch as f64,
          seen_at: p.seen_ms as f64,
        })
        .collect()
    }),
    shards: info
      .shards
      .into_iter()
      .map(|s| StoredShard {
        id: s.id,
        count: s.count as f64,
        bytes: s.bytes.map(|b| b as f64),
        first_at: s.first_at.map(|t| t as f64),
        last_at: s.last_at.map(|t| t as f64),
      })
      .collect(),
  }
}

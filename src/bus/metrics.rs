//! `metrics()`: the bus's counters, gauges and histograms in a text exposition format. Names
//! follow the OpenTelemetry messaging conventions (`messaging_*`) where one exists, the
//! rest start `ringbus_` (DESIGN.md §9). No label holds a key or a message id: labels are
//! the stream, group, shard, operation and error type, all bounded.

use super::*;
use crate::group::inspect::{GroupView, ShardView};
use crate::telemetry::text::{Exposition, Format, Kind, Labels};
use crate::telemetry::{ByError, Count, GroupMeters};

/// Which groups' lag `metrics()` reads from the store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LagOf {
  /// The groups this bus has run a consumer or worker of (the default).
  #[default]
  Joined,
  /// Every group the store holds.
  All,
  /// These groups.
  Named(Vec<String>),
  /// None: no store reads.
  None,
}

/// Per-group counters: name, help, reading.
type GroupCounter = (&'static str, &'static str, fn(&GroupMeters) -> u64);
const GROUP_COUNTERS: [GroupCounter; 6] = [
  (
    "ringbus_group_acked_events",
    "Group events acknowledged (by ack or a resolved handler).",
    |m| m.counts.load(Count::Acked),
  ),
  (
    "ringbus_group_nacked_events",
    "Group events given back with nack.",
    |m| m.counts.load(Count::Nacked),
  ),
  (
    "ringbus_group_redelivered_events",
    "Deliveries of group events after the first.",
    |m| m.counts.load(Count::Redelivered),
  ),
  (
    "ringbus_group_dead_lettered_events",
    "Group events moved to the dead letters.",
    |m| m.counts.load(Count::DeadLettered),
  ),
  (
    "ringbus_group_leases_taken",
    "Shard leases taken: joins, hand-overs and takeovers.",
    |m| m.leases_taken.load(Ordering::Relaxed),
  ),
  (
    "ringbus_group_leases_lost",
    "Shard leases lost to another member or not renewed within leaseMs.",
    |m| m.leases_lost.load(Ordering::Relaxed),
  ),
];

/// Per group and shard, from the store: name, unit, help, reading.
type LagGauge = (
  &'static str,
  Option<&'static str>,
  &'static str,
  fn(&ShardView) -> f64,
);
const LAG_GAUGES: [LagGauge; 2] = [
  (
    "ringbus_group_lag_events",
    None,
    "Events stored on a shard and not yet acked by the group (read from the store).",
    |s| s.lag as f64,
  ),
  (
    "ringbus_group_lag_age_seconds",
    Some("seconds"),
    "How long ago the oldest event not yet acked by the group was ingested (0 without lag).",
    |s| s.lag_age_ms.unwrap_or(0) as f64 / 1000.0,
  ),
];

const SYSTEM: (&str, &str) = ("messaging_system", "ringbus");
const DEST: &str = "messaging_destination_name";
const GROUP: &str = "messaging_consumer_group_name";
const PARTITION: &str = "messaging_destination_partition_id";
const OP_NAME: &str = "messaging_operation_name";
const OP_TYPE: &str = "messaging_operation_type";
const ERROR: &str = "error_type";

impl Bus {
  /// The stream (JetStream), key prefix (Redis) or `memory`: `messaging.destination.name`.
  pub fn destination_name(&self) -> String {
    let scope = self.core.adapter.cursor_scope();
    match scope.split_once(':') {
      Some(("memory", _)) | None => scope.split(':').next().unwrap_or("memory").to_string(),
      Some((_, name)) => name.to_string(),
    }
  }

  /// The exposition. Lag is read from the store (bounded by `adapterTimeoutMs`); a group
  /// whose lag cannot be read is left out of the lag gauges, the rest is always there.
  pub async fn metrics(&self, format: Format, lag_of: &LagOf) -> String {
    let lag = self.lag_views(lag_of).await;
    self.exposition(format, &lag)
  }

  async fn lag_views(&self, lag_of: &LagOf) -> Vec<GroupView> {
    let names: Vec<String> = match lag_of {
      LagOf::None => return Vec::new(),
      LagOf::Joined => self
        .core
        .telemetry
        .groups()
        .into_iter()
        .map(|(g, _)| g)
        .collect(),
      LagOf::Named(names) => names.clone(),
      LagOf::All => {
        let all = self.group_views();
        return match tokio::time::timeout(self.core.config.adapter_timeout, all).await {
          Ok(Ok(views)) => views,
          _ => Vec::new(),
        };
      }
    };
    let mut out = Vec::new();
    for g in names {
      let view = tokio::time::timeout(self.core.config.adapter_timeout, self.group_view(&g));
      if let Ok(Ok(v)) = view.await {
        out.push(v);
      }
    }
    out
  }

  fn exposition(&self, format: Format, lag: &[GroupView]) -> String {
    let dest = self.destination_name();
    let base: [(&str, &str); 2] = [SYSTEM, (DEST, dest.as_str())];
    let stats = self.stats();
    let c = &stats.counters;
    let t = &self.core.telemetry;
    let groups = t.groups();
    let mut x = Exposition::new(format);

    // The conventions' four instruments.
    x.family(
      "messaging_client_sent_messages",
      Kind::Counter,
      None,
      "Events the bus sent to the store: stored, or given up with error_type (refused, retries exhausted, shutdown).",
    );
    let send: [(&str, &str); 4] = [base[0], base[1], (OP_NAME, "send"), (OP_TYPE, "send")];
    x.counter(&send, c.stored);
    for (code, n) in [
      ("ERR_ADAPTER", c.dropped_adapter),
      ("ERR_SHUT_DOWN", c.dropped_shutdown),
    ] {
      x.counter(&with(&send, (ERROR, code)), n);
    }

    x.family(
      "messaging_client_consumed_messages",
      Kind::Counter,
      None,
      "Events handed to the application: by poll and subscribe, and per consumer group.",
    );
    let receive: [(&str, &str); 4] = [base[0], base[1], (OP_NAME, "receive"), (OP_TYPE, "receive")];
    x.counter(&receive, t.polled.load(Ordering::Relaxed));
    for (g, m) in &groups {
      x.counter(
        &with(&receive, (GROUP, g)),
        m.consumed.load(Ordering::Relaxed),
      );
    }

    x.family(
      "messaging_client_operation_duration_seconds",
      Kind::Histogram,
      Some("seconds"),
      "Store operations: batch writes (send, from the first attempt to the outcome) and page reads (receive).",
    );
    by_error(&mut x, &send, &t.send);
    by_error(&mut x, &receive, &t.receive);
    for (g, m) in &groups {
      by_error(&mut x, &with(&receive, (GROUP, g)), &m.receive);
    }

    x.family(
      "messaging_process_duration_seconds",
      Kind::Histogram,
      Some("seconds"),
      "process() handler time, from hand-over to the handler's settlement.",
    );
    let process: [(&str, &str); 4] = [base[0], base[1], (OP_NAME, "process"), (OP_TYPE, "process")];
    for (g, m) in &groups {
      by_error(&mut x, &with(&process, (GROUP, g)), &m.process);
    }

    self.own_families(&mut x, &base, &stats, lag, &groups);
    x.finish()
  }

  fn own_families(
    &self,
    x: &mut Exposition,
    base: &Labels<'_>,
    stats: &Stats,
    lag: &[GroupView],
    groups: &[(String, Arc<GroupMeters>)],
  ) {
    let c = &stats.counters;
    let t = &self.core.telemetry;
    let counter = |x: &mut Exposition, name: &str, help: &str, v: u64| {
      x.family(name, Kind::Counter, None, help);
      x.counter(base, v);
    };
    counter(
      x,
      "ringbus_ingested_events",
      "Events accepted by ingest and ingestBatch.",
      c.ingested,
    );
    counter(
      x,
      "ringbus_rejected_events",
      "Events refused with ERR_BACKPRESSURE (never accepted).",
      c.rejected,
    );
    counter(
      x,
      "ringbus_write_retries",
      "Event writes sent again after a failed or timed-out attempt.",
      c.retried,
    );
    counter(
      x,
      "ringbus_corrupt_records_skipped",
      "Stored records skipped on read because they could not be decoded.",
      stats.corrupt_skipped,
    );

    x.family(
      "ringbus_dropped_events",
      Kind::Counter,
      None,
      "Accepted events that will never be stored, by reason.",
    );
    for (reason, n) in [
      ("oldest", c.dropped_oldest),
      ("newest", c.dropped_newest),
      ("adapter", c.dropped_adapter),
      ("shutdown", c.dropped_shutdown),
    ] {
      x.counter(&with(base, ("reason", reason)), n);
    }

    x.family(
      "ringbus_shards",
      Kind::Gauge,
      None,
      "Active shards of this bus.",
    );
    x.gauge(base, stats.shards as f64);
    x.family(
      "ringbus_pending_events",
      Kind::Gauge,
      None,
      "Accepted events not yet stored or dropped.",
    );
    x.gauge(base, (stats.queued + stats.in_flight) as f64);

    let shards = self.core.shards.current();
    let ids: Vec<String> = shards.iter().map(|(s, _)| s.id.to_string()).collect();
    let occupancy: Vec<_> = shards.iter().map(|(s, _)| s.occupancy()).collect();
    for (name, help, pick) in [
      (
        "ringbus_ring_events",
        "Events waiting in a shard's ring.",
        0,
      ),
      (
        "ringbus_ring_bytes",
        "Payload, key and header bytes waiting in a shard's ring.",
        1,
      ),
      (
        "ringbus_ring_capacity_events",
        "Events a shard's ring holds before backpressure applies.",
        2,
      ),
    ] {
      x.family(name, Kind::Gauge, None, help);
      for (i, ((shard, _), o)) in shards.iter().zip(&occupancy).enumerate() {
        let v = match pick {
          0 => o.queued,
          1 => o.queued_bytes,
          _ => shard.capacity(),
        };
        x.gauge(&with(base, (PARTITION, &ids[i])), v as f64);
      }
    }

    x.family(
      "ringbus_ingest_to_stored_seconds",
      Kind::Histogram,
      Some("seconds"),
      "From ingest to the store's acknowledgement, per stored event.",
    );
    x.histogram(base, &t.ingest_to_stored.snapshot());
    x.family(
      "ringbus_ingest_to_handled_seconds",
      Kind::Histogram,
      Some("seconds"),
      "From ingest to the end of the process() handler, per handled event.",
    );
    for (g, m) in groups {
      x.histogram(&with(base, (GROUP, g)), &m.ingest_to_handled.snapshot());
    }

    for (name, help, get) in GROUP_COUNTERS {
      x.family(name, Kind::Counter, None, help);
      for (g, m) in groups {
        x.counter(&with(base, (GROUP, g)), get(m));
      }
    }

    for (name, unit, help, get) in LAG_GAUGES {
      x.family(name, Kind::Gauge, unit, help);
      for v in lag {
        for s in &v.shards {
          let id = s.id.to_string();
          x.gauge(
            &[base[0], base[1], (GROUP, &v.group), (PARTITION, &id)],
            get(s),
          );
        }
      }
    }
    x.family(
      "ringbus_group_dead_letters",
      Kind::Gauge,
      None,
      "Dead letters the group holds (read from the store).",
    );
    for v in lag {
      x.gauge(&with(base, (GROUP, &v.group)), v.dead_letters as f64);
    }
    x.family(
      "ringbus_telemetry_batches_lost",
      Kind::Counter,
      None,
      "Written batches whose send span was dropped because none was taken in time.",
    );
    x.counter(base, t.batches.lost());
  }
}

/// `labels` plus one more.
fn with<'a>(labels: &Labels<'a>, extra: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
  let mut out = labels.to_vec();
  out.push(extra);
  out
}

fn by_error(x: &mut Exposition, labels: &Labels<'_>, h: &ByError) {
  for (error, snap) in h.snapshots() {
    match &error {
      None => x.histogram(labels, &snap),
      Some(e) => x.histogram(&with(labels, (ERROR, e)), &snap),
    }
  }
}

//! Engine behaviour end to end, without Node: delivery, retries, flush, shutdown, polling.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::json;

use ringbus::adapter::memory::MemoryAdapter;
use ringbus::adapter::AdapterConfig;
use ringbus::adapter::{
  Adapter, AdapterError, Outcome, Positions, ReadPage, WriteBatch, WriteResult,
};
use ringbus::bus::Bus;
use ringbus::config::{Backpressure, BatchConfig, BusConfig};
use ringbus::consume::cursor::Cursor;
use ringbus::consume::filter::Filter;
use ringbus::consume::poll::{PageOrder, PollRequest};
use ringbus::error::Code;
use ringbus::event::Incoming;

/// Records every attempted message id and can be told to misbehave.
#[derive(Default)]
struct ScriptedAdapter {
  attempts: Mutex<Vec<Vec<String>>>,
  stored: Mutex<Vec<(u32, u64, String)>>,
  /// Fail this many whole writes (retryable) before succeeding.
  fail_writes: AtomicUsize,
  /// On the first write, report every odd-sequence event as Retry.
  partial_once: AtomicUsize,
  /// Events whose sequence is divisible by this are rejected (non-retryable); 0 = never.
  reject_every: u64,
  /// Every write sleeps this long.
  delay: Duration,
  /// Writes never complete.
  hang: bool,
}

#[async_trait]
impl Adapter for ScriptedAdapter {
  fn kind(&self) -> &'static str {
    "scripted"
  }
  fn cursor_scope(&self) -> String {
    "scripted".into()
  }
  async fn write(&self, batch: WriteBatch<'_>) -> Result<WriteResult, AdapterError> {
    let ids: Vec<String> = batch
      .events
      .iter()
      .map(|e| batch.producer.message_id(batch.shard, e.seq).to_string())
      .collect();
    self.attempts.lock().push(ids.clone());
    if self.hang {
      std::future::pending::<()>().await;
    }
    if !self.delay.is_zero() {
      tokio::time::sleep(self.delay).await;
    }
    if self
      .fail_writes
      .fetch_update(AtomicOrdering::SeqCst, AtomicOrdering::SeqCst, |n| {
        n.checked_sub(1)
      })
      .is_ok()
    {
      return Err(AdapterError::retryable("injected outage"));
    }
    let partial = self
      .partial_once
      .fetch_update(AtomicOrdering::SeqCst, AtomicOrdering::SeqCst, |n| {
        n.checked_sub(1)
      })
      .is_ok();
    let mut outcomes = Vec::with_capacity(batch.events.len());
    let mut stored = self.stored.lock();
    for (ev, id) in batch.events.iter().zip(ids) {
      if self.reject_every > 0 && ev.seq % self.reject_every == 0 {
        outcomes.push(Outcome::Reject(AdapterError::fatal("too large")));
      } else if partial && ev.seq % 2 == 1 {
        outcomes.push(Outcome::Retry(AdapterError::retryable("not acknowledged")));
      } else {
        stored.push((batch.shard, ev.seq, id));
        outcomes.push(Outcome::Stored);
      }
    }
    Ok(WriteResult::PerEvent(outcomes))
  }
  async fn read(&self, _: u32, _: Option<&str>, _: usize) -> Result<ReadPage, AdapterError> {
    Ok(ReadPage::default())
  }
  async fn end_positions(&self, _: &[u32]) -> Result<Positions, AdapterError> {
    Ok(Positions::new())
  }
  async fn wait_for_data(&self, _: &[u32], _: &Positions, max_wait: Duration) {
    tokio::time::sleep(max_wait).await
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

fn json_event(i: u64, key: Option<&str>) -> Incoming {
  Incoming::json(
    Bytes::from(format!(
      r#"{{"i":{i},"even":{},"k":"{}"}}"#,
      i.is_multiple_of(2),
      key.unwrap_or("")
    )),
    key.map(Arc::from),
  )
  .unwrap()
}

fn config(shards: u32) -> BusConfig {
  BusConfig {
    shards,
    retries: 3,
    batch: BatchConfig {
      max_events: 256,
      max_bytes: 1 << 20,
      max_delay: Some(Duration::from_millis(1)),
    },
    ..BusConfig::default()
  }
}

/// `cfg` with a linger no test outlasts: a batch is cut only by flush (or when full).
fn held(cfg: BusConfig) -> BusConfig {
  BusConfig {
    batch: BatchConfig {
      max_delay: Some(Duration::from_secs(60)),
      ..cfg.batch
    },
    ..cfg
  }
}

fn rt() -> tokio::runtime::Handle {
  tokio::runtime::Handle::current()
}

fn assert_invariant(bus: &Bus) {
  let c = bus.stats().counters;
  assert_eq!(c.ingested, c.stored + c.dropped() + c.pending());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_batches_keep_their_message_ids() {
  let adapter = Arc::new(ScriptedAdapter {
    fail_writes: AtomicUsize::new(2),
    partial_once: AtomicUsize::new(0),
    ..Default::default()
  });
  let bus = Bus::start_with_adapter(config(1), adapter.clone(), rt()).unwrap();
  for i in 0..100 {
    bus.ingest(json_event(i, None)).unwrap();
  }
  let report = bus.flush().await.unwrap();
  assert_eq!(
    (report.pending, report.stored, report.dropped),
    (100, 100, 0)
  );
  let attempts = adapter.attempts.lock().clone();
  // The first two attempts failed and were resent with identical ids.
  assert!(attempts.len() >= 3);
  assert_eq!(attempts[0], attempts[1]);
  assert_eq!(attempts[1], attempts[2]);
  let stored = adapter.stored.lock().clone();
  let seqs: Vec<u64> = stored.iter().map(|s| s.1).collect();
  assert_eq!(
    seqs,
    (0..100).collect::<Vec<_>>(),
    "gap-free, in order, once each"
  );
  assert_invariant(&bus);
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failure_resends_only_unacknowledged_events() {
  let adapter = Arc::new(ScriptedAdapter {
    partial_once: AtomicUsize::new(1),
    ..Default::default()
  });
  // Only flush cuts the batch: all ten events form the first write, however the threads run.
  let bus = Bus::start_with_adapter(held(config(1)), adapter.clone(), rt()).unwrap();
  for i in 0..10 {
    bus.ingest(json_event(i, None)).unwrap();
  }
  bus.flush().await.unwrap();
  let attempts = adapter.attempts.lock().clone();
  let first: HashSet<String> = attempts[0].iter().cloned().collect();
  // The retry carries exactly the odd sequences, with the ids of the first attempt.
  let retry = &attempts[1];
  assert_eq!(retry.len(), attempts[0].len() / 2);
  assert!(retry.iter().all(|id| first.contains(id)));
  assert!(retry
    .iter()
    .all(|id| id.rsplit('-').next().unwrap().parse::<u64>().unwrap() % 2 == 1));
  let mut ids: Vec<String> = adapter.stored.lock().iter().map(|s| s.2.clone()).collect();
  let n = ids.len();
  ids.sort();
  ids.dedup();
  assert_eq!((n, ids.len()), (10, 10));
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_exhausted_events_are_dropped_with_reason() {
  let adapter = Arc::new(ScriptedAdapter {
    reject_every: 5,
    ..Default::default()
  });
  let bus = Bus::start_with_adapter(config(1), adapter.clone(), rt()).unwrap();
  for i in 0..50 {
    bus.ingest(json_event(i, None)).unwrap();
  }
  let report = bus.flush().await.unwrap();
  assert_eq!((report.stored, report.dropped), (40, 10));
  let stats = bus.shard_stats();
  assert_eq!(stats[0].counters.dropped_adapter, 10);
  assert!(stats[0]
    .last_error
    .as_deref()
    .unwrap()
    .contains("too large"));
  // Non-retryable: each rejected event was attempted once.
  let attempts: usize = adapter.attempts.lock().iter().map(|a| a.len()).sum();
  assert_eq!(attempts, 50);
  bus.shutdown().await;

  let adapter = Arc::new(ScriptedAdapter {
    fail_writes: AtomicUsize::new(usize::MAX),
    ..Default::default()
  });
  // Only flush cuts the batch: the twenty events are one write and its two retries.
  let cfg = held(BusConfig {
    retries: 2,
    ..config(1)
  });
  let bus = Bus::start_with_adapter(cfg, adapter.clone(), rt()).unwrap();
  for i in 0..20 {
    bus.ingest(json_event(i, None)).unwrap();
  }
  let report = bus.flush().await.unwrap();
  assert_eq!((report.stored, report.dropped), (0, 20));
  assert_eq!(adapter.attempts.lock().len(), 3, "one try and two retries");
  let s = bus.shard_stats();
  assert!(s[0]
    .last_error
    .as_deref()
    .unwrap()
    .contains("gave up after 2 retries"));
  assert_invariant(&bus);
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_waits_for_a_slow_adapter() {
  let adapter = Arc::new(ScriptedAdapter {
    delay: Duration::from_millis(30),
    ..Default::default()
  });
  let bus = Bus::start_with_adapter(config(2), adapter.clone(), rt()).unwrap();
  for i in 0..2000 {
    bus
      .ingest(json_event(i, Some(&format!("k{}", i % 7))))
      .unwrap();
  }
  let report = bus.flush().await.unwrap();
  assert_eq!(report.pending, 2000);
  // Every covered event is stored by the time flush resolves.
  assert_eq!(adapter.stored.lock().len(), 2000);
  assert_eq!(bus.stats().counters.pending(), 0);
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_with_a_dead_backend() {
  let adapter = Arc::new(ScriptedAdapter {
    hang: true,
    ..Default::default()
  });
  let cfg = BusConfig {
    shutdown_timeout: Duration::from_millis(300),
    adapter_timeout: Duration::from_secs(60),
    ..config(2)
  };
  let bus = Bus::start_with_adapter(cfg, adapter, rt()).unwrap();
  for i in 0..500 {
    bus.ingest(json_event(i, None)).unwrap();
  }
  let flush = {
    let bus = bus.clone();
    tokio::spawn(async move { bus.flush().await })
  };
  let started = Instant::now();
  let (a, b) = tokio::join!(bus.shutdown(), bus.shutdown());
  assert!(
    started.elapsed() < Duration::from_secs(3),
    "{:?}",
    started.elapsed()
  );
  assert_eq!(a, b, "concurrent callers share one shutdown");
  assert_eq!(a.counters.dropped_shutdown, 500);
  assert_eq!(a.counters.pending(), 0);
  assert_eq!(a.state, "closed");
  // A flush in flight settles too.
  let r = flush.await.unwrap().unwrap();
  assert_eq!(r.dropped, 500);
  assert_eq!(
    bus.ingest(json_event(1, None)).unwrap_err().code,
    Code::ShutDown
  );
}

#[test]
fn shutdown_delivers_every_accepted_event_from_many_threads() {
  let rt = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(2)
    .enable_all()
    .build()
    .unwrap();
  let adapter = Arc::new(MemoryAdapter::new(2_000_000, 1 << 30));
  let cfg = BusConfig {
    shards: 4,
    ring_capacity: 1 << 16,
    backpressure: Backpressure::Reject,
    ..BusConfig::default()
  };
  let bus = Bus::start_with_adapter(cfg, adapter.clone(), rt.handle().clone()).unwrap();
  let per_thread = 250_000u64;
  let accepted = Arc::new(AtomicUsize::new(0));
  let threads: Vec<_> = (0..4)
    .map(|t| {
      let bus = bus.clone();
      let accepted = accepted.clone();
      std::thread::spawn(move || {
        let key = format!("producer-{t}");
        for i in 0..per_thread {
          let mut ev = json_event(i, Some(&key));
          loop {
            match bus.ingest(ev) {
              Ok(_) => {
                accepted.fetch_add(1, AtomicOrdering::SeqCst);
                break;
              }
              Err(e) if e.code == Code::Backpressure => {
                std::thread::yield_now();
                ev = json_event(i, Some(&key));
              }
              Err(e) if e.code == Code::ShutDown => return,
              Err(e) => panic!("{e}"),
            }
          }
        }
      })
    })
    .collect();
  // Shut down while producers are still running.
  while accepted.load(AtomicOrdering::SeqCst) < 600_000 {
    std::thread::sleep(Duration::from_millis(5));
  }
  let stats = rt.block_on(bus.shutdown());
  for t in threads {
    t.join().unwrap();
  }
  let accepted = accepted.load(AtomicOrdering::SeqCst) as u64;
  assert!(accepted >= 600_000);
  assert_eq!(stats.counters.ingested, accepted);
  assert_eq!(
    stats.counters.stored, accepted,
    "every accepted event stored"
  );
  assert_eq!(stats.counters.dropped(), 0);
  assert_eq!(adapter.len() as u64, accepted);

  // Per-key order: each producer's events are stored in ingest order.
  let rt2 = tokio::runtime::Builder::new_current_thread()
    .enable_all()
    .build()
    .unwrap();
  let mut last: BTreeMap<String, i64> = BTreeMap::new();
  let mut total = 0u64;
  for shard in 0..4 {
    let mut after: Option<String> = None;
    loop {
      let page = rt2
        .block_on(adapter.read(shard, after.as_deref(), 10_000))
        .unwrap();
      for ev in &page.events {
        let v: serde_json::Value = serde_json::from_slice(&ev.payload).unwrap();
        let key = ev.key.as_deref().unwrap().to_string();
        let i = v["i"].as_i64().unwrap();
        let prev = last.insert(key, i).unwrap_or(-1);
        assert_eq!(i, prev + 1, "per-key order without gaps");
        total += 1;
      }
      if !page.has_more {
        break;
      }
      after = page.next;
    }
  }
  assert_eq!(total, accepted);
}

async fn memory_bus(shards: u32) -> (Bus, Arc<MemoryAdapter>) {
  let adapter = Arc::new(MemoryAdapter::new(1 << 20, 1 << 28));
  let bus = Bus::start_with_adapter(config(shards), adapter.clone(), rt()).unwrap();
  (bus, adapter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_pages_never_skip_or_repeat() {
  let (bus, _) = memory_bus(4).await;
  for i in 0..5000u64 {
    bus
      .ingest(json_event(i, Some(&format!("k{}", i % 13))))
      .unwrap();
  }
  bus.flush().await.unwrap();
  let filter = Filter::parse(&json!({ "even": true, "i": { "$gte": 100 } })).unwrap();
  let mut seen = Vec::new();
  let mut cursor: Option<Cursor> = None;
  let mut pages = 0;
  loop {
    let page = bus
      .poll(PollRequest {
        limit: 7,
        cursor: cursor.clone(),
        filter: Some(filter.clone()),
        ..Default::default()
      })
      .await
      .unwrap();
    pages += 1;
    for ev in &page.events {
      let v: serde_json::Value = serde_json::from_slice(&ev.payload).unwrap();
      seen.push(v["i"].as_u64().unwrap());
    }
    cursor = Some(page.cursor);
    if !page.has_more {
      break;
    }
    assert!(pages < 10_000);
  }
  let mut sorted = seen.clone();
  sorted.sort();
  let expected: Vec<u64> = (100..5000).filter(|i| i % 2 == 0).collect();
  assert_eq!(sorted, expected, "every match exactly once");
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_shard_starves_the_others() {
  let (bus, adapter) = memory_bus(4).await;
  // Shard 0 has a deep backlog; the others have a little each.
  let mut by_shard = [0u32; 4];
  let mut i = 0u64;
  while by_shard
    .iter()
    .zip([5000, 20, 20, 20])
    .any(|(n, want)| *n < want)
  {
    let ev = json_event(i, Some(&format!("key-{i}")));
    let shard = bus.route(&ev) as usize;
    if by_shard[shard] < [5000, 20, 20, 20][shard] {
      bus.ingest(ev).unwrap();
      by_shard[shard] += 1;
    }
    i += 1;
  }
  bus.flush().await.unwrap();
  assert_eq!(adapter.len(), 5060);
  let page = bus
    .poll(PollRequest {
      limit: 40,
      ..Default::default()
    })
    .await
    .unwrap();
  let mut counts = [0usize; 4];
  for ev in &page.events {
    counts[ev.shard as usize] += 1;
  }
  assert_eq!(counts, [10, 10, 10, 10], "an equal share per shard");
  // Once the small shards are drained, the backlog fills the page.
  let page = bus
    .poll(PollRequest {
      limit: 40,
      cursor: Some(page.cursor),
      ..Default::default()
    })
    .await
    .unwrap();
  let mut counts = [0usize; 4];
  for ev in &page.events {
    counts[ev.shard as usize] += 1;
  }
  assert_eq!(counts, [10, 10, 10, 10]);
  let page = bus
    .poll(PollRequest {
      limit: 40,
      cursor: Some(page.cursor),
      ..Default::default()
    })
    .await
    .unwrap();
  assert_eq!(page.events.len(), 40);
  assert!(page.events.iter().all(|e| e.shard == 0));
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_ordering_merges_shards() {
  let (bus, _) = memory_bus(3).await;
  for i in 0..300u64 {
    bus.ingest(json_event(i, Some(&format!("k{i}")))).unwrap();
    if i % 50 == 0 {
      tokio::time::sleep(Duration::from_millis(2)).await;
    }
  }
  bus.flush().await.unwrap();
  let mut all = Vec::new();
  let mut cursor = None;
  loop {
    let page = bus
      .poll(PollRequest {
        limit: 16,
        cursor,
        ordering: PageOrder::Timestamp,
        ..Default::default()
      })
      .await
      .unwrap();
    all.extend(page.events.iter().map(|e| (e.timestamp_ms, e.shard, e.seq)));
    cursor = Some(page.cursor);
    if !page.has_more {
      break;
    }
  }
  assert_eq!(all.len(), 300);
  assert!(all.windows(2).all(|w| w[0] <= w[1]), "ordered across pages");
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_from_another_backend_are_refused() {
  let (bus, _) = memory_bus(2).await;
  let mut c = Cursor::default();
  c.positions.insert(0, "5".into());
  let foreign = c.encode("jetstream:orders");
  let err = Cursor::decode(&foreign, &bus.cursor_scope()).unwrap_err();
  assert_eq!(err.code, Code::InvalidCursor);
  // A memory cursor whose position is not an offset is refused by the adapter.
  let mut bad = Cursor::default();
  bad.positions.insert(0, "x-y".into());
  let err = bus
    .poll(PollRequest {
      limit: 5,
      cursor: Some(bad),
      ..Default::default()
    })
    .await
    .unwrap_err();
  assert_eq!(err.code, Code::InvalidCursor);
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_identity_survives_restarts_without_reusing_ids() {
  let dir = std::env::temp_dir().join(format!("ringbus-engine-{}", ringbus::random::random_u64()));
  std::fs::create_dir_all(&dir).unwrap();
  let path = dir.join("producer.nonce");
  let mut ids = HashSet::new();
  let mut producers = Vec::new();
  for _run in 0..2 {
    let cfg = BusConfig {
      producer_nonce_path: Some(path.clone()),
      ..config(1)
    };
    let memory = AdapterConfig::Memory {
      max_events: 1000,
      max_bytes: 1 << 20,
    };
    let bus = Bus::start(cfg, &memory, rt()).unwrap();
    producers.push(bus.producer());
    // A second live bus on the same path is refused.
    let clash = Bus::start(
      BusConfig {
        producer_nonce_path: Some(path.clone()),
        ..config(1)
      },
      &AdapterConfig::default(),
      rt(),
    );
    assert_eq!(clash.err().unwrap().code, Code::InvalidConfig);
    for i in 0..10 {
      bus.ingest(json_event(i, None)).unwrap();
    }
    bus.flush().await.unwrap();
    let page = bus
      .poll(PollRequest {
        limit: 100,
        ..Default::default()
      })
      .await
      .unwrap();
    for ev in page.events {
      assert!(ids.insert(ev.message_id), "message id reused across runs");
    }
    bus.shutdown().await;
  }
  assert_eq!(producers[0].nonce, producers[1].nonce);
  assert_eq!(producers[0].generation + 1, producers[1].generation);
  assert_eq!(ids.len(), 20);
  std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_change_nothing() {
  let cfg = BusConfig {
    max_event_bytes: 64,
    ..config(2)
  };
  let bus = Bus::start(cfg, &AdapterConfig::default(), rt()).unwrap();
  let big = Incoming::bytes(Bytes::from(vec![7u8; 65]), None).unwrap();
  assert_eq!(
    bus.ingest(big.clone()).unwrap_err().code,
    Code::InvalidEvent
  );
  let batch = vec![json_event(1, None), big, json_event(2, None)];
  let err = bus.ingest_batch(batch).unwrap_err();
  assert_eq!(err.code, Code::InvalidEvent);
  assert!(err.message.starts_with("events[1]"));
  assert_eq!(bus.stats().counters, Default::default());
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_ingest_stops_at_the_first_full_shard() {
  let cfg = BusConfig {
    shards: 1,
    ring_capacity: 16,
    batch: BatchConfig {
      max_delay: Some(Duration::from_secs(10)),
      max_events: 1000,
      max_bytes: 1 << 20,
    },
    ..BusConfig::default()
  };
  let bus = Bus::start_with_adapter(
    cfg,
    Arc::new(ScriptedAdapter {
      hang: true,
      ..Default::default()
    }),
    rt(),
  )
  .unwrap();
  let n = bus
    .ingest_batch((0..40).map(|i| json_event(i, None)).collect())
    .unwrap();
  assert_eq!(n, 16);
  let err = bus.ingest_batch(vec![json_event(99, None)]).unwrap_err();
  assert_eq!(err.code, Code::Backpressure);
  let c = bus.stats().counters;
  assert_eq!((c.ingested, c.rejected), (16, 2));
}

/// Waits (up to 10 s) until `done` holds; the bound only keeps a broken build from hanging.
async fn eventually(mut done: impl FnMut() -> bool) {
  for _ in 0..2000 {
    if done() {
      return;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
  }
  panic!("condition not reached within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_batches_write_the_first_event_at_once_and_gather_during_a_write() {
  let adapter = Arc::new(ScriptedAdapter {
    delay: Duration::from_millis(300),
    ..Default::default()
  });
  let cfg = BusConfig {
    batch: BatchConfig {
      max_delay: None,
      ..BatchConfig::default()
    },
    ..config(1)
  };
  let bus = Bus::start_with_adapter(cfg, adapter.clone(), rt()).unwrap();
  bus.ingest(json_event(0, None)).unwrap();
  // No flush: an idle shard writes its lone event at once.
  eventually(|| adapter.attempts.lock().len() == 1).await;
  // These arrive while that write is in flight and go out together after it.
  for i in 1..=50 {
    bus.ingest(json_event(i, None)).unwrap();
  }
  bus.flush().await.unwrap();
  let sizes: Vec<usize> = adapter.attempts.lock().iter().map(Vec::len).collect();
  assert_eq!(sizes, vec![1, 50]);
  assert_eq!(bus.stats().counters.stored, 51);
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_linger_holds_a_partial_batch_until_flush() {
  let adapter = Arc::new(ScriptedAdapter::default());
  let cfg = BusConfig {
    batch: BatchConfig {
      max_delay: Some(Duration::from_secs(60)),
      ..BatchConfig::default()
    },
    ..config(1)
  };
  let bus = Bus::start_with_adapter(cfg, adapter.clone(), rt()).unwrap();
  for i in 0..3 {
    bus.ingest(json_event(i, None)).unwrap();
  }
  tokio::time::sleep(Duration::from_millis(300)).await;
  assert!(
    adapter.attempts.lock().is_empty(),
    "written before the linger or a flush"
  );
  bus.flush().await.unwrap();
  let sizes: Vec<usize> = adapter.attempts.lock().iter().map(Vec::len).collect();
  assert_eq!(sizes, vec![3]);
  bus.shutdown().await;
}

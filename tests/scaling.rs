//! Shard scaling under load: nothing lost, duplicated or reordered per key; no herding;
//! the policy's bounds and hysteresis; failed activations leave no trace.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use ringbus::adapter::memory::MemoryAdapter;
use ringbus::adapter::{Adapter, AdapterError, Positions, ReadPage, WriteBatch, WriteResult};
use ringbus::bus::Bus;
use ringbus::config::{BatchConfig, BusConfig, ScalingConfig};
use ringbus::consume::poll::{PageOrder, PollRequest};
use ringbus::consume::subscribe::StartAt;
use ringbus::error::Code;
use ringbus::event::Incoming;

/// The memory store, plus a log of (key, counter) in the order events were stored.
struct Recording {
  inner: MemoryAdapter,
  log: tokio::sync::Mutex<Vec<(String, u64)>>,
  delay: Duration,
}

impl Recording {
  fn new(delay: Duration) -> Arc<Self> {
    Arc::new(Recording {
      inner: MemoryAdapter::new(1 << 24, 1 << 32),
      log: tokio::sync::Mutex::new(Vec::new()),
      delay,
    })
  }
}

#[async_trait]
impl Adapter for Recording {
  fn kind(&self) -> &'static str {
    "recording"
  }
  fn cursor_scope(&self) -> String {
    self.inner.cursor_scope()
  }
  async fn write(&self, batch: WriteBatch<'_>) -> Result<WriteResult, AdapterError> {
    if !self.delay.is_zero() {
      tokio::time::sleep(self.delay).await;
    }
    // One lock around store and log: the log's order is the storage order.
    let mut log = self.log.lock().await;
    let events = batch.events;
    let result = self.inner.write(batch).await?;
    assert_eq!(result, WriteResult::AllStored);
    for ev in events {
      let v: serde_json::Value = serde_json::from_slice(&ev.payload).unwrap();
      log.push((
        ev.key.as_deref().unwrap().to_string(),
        v["n"].as_u64().unwrap(),
      ));
    }
    Ok(result)
  }
  async fn read(&self, s: u32, a: Option<&str>, l: usize) -> Result<ReadPage, AdapterError> {
    self.inner.read(s, a, l).await
  }
  async fn end_positions(&self, s: &[u32]) -> Result<Positions, AdapterError> {
    self.inner.end_positions(s).await
  }
  async fn wait_for_data(&self, s: &[u32], a: &Positions, w: Duration) {
    self.inner.wait_for_data(s, a, w).await
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

fn event(key: &str, n: u64) -> Incoming {
  Incoming::json(Bytes::from(format!(r#"{{"n":{n}}}"#)), Some(Arc::from(key))).unwrap()
}

fn config(shards: u32, scaling: ScalingConfig) -> BusConfig {
  BusConfig {
    shards,
    ring_capacity: 4096,
    batch: BatchConfig {
      max_events: 256,
      max_bytes: 1 << 20,
      max_delay: Some(Duration::from_millis(1)),
    },
    scaling: Some(scaling),
    ..BusConfig::default()
  }
}

/// Ingests, waiting while the target ring is full.
fn ingest_patiently(bus: &Bus, key: &str, n: u64) {
  loop {
    match bus.ingest(event(key, n)) {
      Ok(_) => return,
      Err(e) if e.code == Code::Backpressure => std::thread::sleep(Duration::from_micros(200)),
      Err(e) => panic!("ingest failed: {}", e.message),
    }
  }
}

/// The message ids stored on one shard, in order.
async fn message_ids(bus: &Bus, shard: u32) -> Vec<String> {
  let page = bus
    .poll(PollRequest {
      limit: 10_000,
      shards: Some(vec![shard]),
      ..PollRequest::default()
    })
    .await
    .unwrap();
  page.events.into_iter().map(|e| e.message_id).collect()
}

/// Every key's counters appear exactly once each, in order 0, 1, 2, ...
fn assert_each_key_once_in_order(log: &[(String, u64)], keys: usize, per_key: u64) {
  let mut next: HashMap<&str, u64> = HashMap::new();
  let mut bad = 0usize;
  for (k, n) in log {
    let want = next.entry(k.as_str()).or_insert(0);
    if *n != *want {
      bad += 1;
    }
    *want = n + 1;
  }
  assert_eq!(bad, 0, "events stored out of order or twice");
  assert_eq!(next.len(), keys);
  assert!(next.values().all(|v| *v == per_key));
  assert_eq!(log.len() as u64, keys as u64 * per_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_events_through_twenty_random_scalings() {
  let adapter = Recording::new(Duration::ZERO);
  let bus = Bus::start_with_adapter(
    config(4, ScalingConfig::new(2, 12)),
    adapter.clone(),
    tokio::runtime::Handle::current(),
  )
  .unwrap();
  const PRODUCERS: usize = 4;
  const KEYS_PER_PRODUCER: usize = 250;
  const PER_KEY: u64 = 1000; // 4 x 250 x 1000 = 1,000,000 events
                             // The producers' last rounds wait for the scalings, so every change happens mid-stream.
  let scaled = Arc::new(AtomicBool::new(false));
  let producers: Vec<_> = (0..PRODUCERS)
    .map(|p| {
      let (bus, scaled) = (bus.clone(), scaled.clone());
      std::thread::spawn(move || {
        for n in 0..PER_KEY {
          while n == PER_KEY - 50 && !scaled.load(AtomicOrdering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
          }
          for k in 0..KEYS_PER_PRODUCER {
            ingest_patiently(&bus, &format!("p{p}-k{k}"), n);
          }
        }
      })
    })
    .collect();
  // Twenty scalings at random while the producers run.
  let mut rng = 0x9e37_79b9_7f4a_7c15u64;
  let mut random = move |m: u64| {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    rng % m
  };
  let mut changes = 0;
  // (events ingested, active shards) when each change finished.
  let mut at_change: Vec<(u64, u32)> = Vec::new();
  while changes < 20 {
    tokio::time::sleep(Duration::from_millis(1 + random(10))).await;
    let active = bus.num_shards();
    let n = 1 + random(3) as u32;
    let up = random(2) == 0;
    let result = if up && active + n <= 12 {
      bus.scale_up(n).await.map(|ids| ids.len())
    } else if active >= 2 + n {
      bus.scale_down(n).await.map(|ids| ids.len())
    } else {
      continue;
    };
    assert_eq!(result.unwrap(), n as usize);
    changes += 1;
    at_change.push((bus.stats().counters.ingested, bus.num_shards()));
  }
  scaled.store(true, AtomicOrdering::SeqCst);
  for p in producers {
    p.join().unwrap();
  }
  // The changes happened while the producers ran: events kept arriving between them, and
  // the shard count really moved.
  let progressed = at_change.windows(2).filter(|w| w[1].0 > w[0].0).count();
  assert!(
    progressed >= 10,
    "events arrived between only {progressed} of 19 pairs of changes: {at_change:?}"
  );
  let counts: std::collections::HashSet<u32> = at_change.iter().map(|c| c.1).collect();
  assert!(counts.len() > 2, "shard counts seen: {counts:?}");
  let flushed = bus.flush().await.unwrap();
  assert_eq!(flushed.dropped, 0);
  let stats = bus.stats();
  assert_eq!(
    (stats.counters.ingested, stats.counters.stored),
    (1_000_000, 1_000_000)
  );
  let log = adapter.log.lock().await;
  assert_each_key_once_in_order(&log, PRODUCERS * KEYS_PER_PRODUCER, PER_KEY);
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uniform_load_never_herds() {
  // The policy acts here: under this load it grows the bus from 4 to 8 shards. Routing
  // still spreads uniform keys evenly over whatever shards are active, never by load.
  let policy = ScalingConfig {
    auto: true,
    window: Duration::from_millis(20),
    up_windows: 1,
    down_windows: 1000,
    scale_up_fill: 0.001,
    scale_down_fill: 0.0,
    cooldown: Duration::ZERO,
    max_step: 2,
    ..ScalingConfig::new(4, 8)
  };
  // A slow backend keeps events in the rings between writes, so the policy sees them.
  let adapter = Recording::new(Duration::from_millis(2));
  let bus = Bus::start_with_adapter(
    config(4, policy),
    adapter,
    tokio::runtime::Handle::current(),
  )
  .unwrap();
  let mut judged = 0;
  for window in 0..16 {
    let active = bus.num_shards();
    let before: Vec<u64> = bus
      .shard_stats()
      .iter()
      .map(|s| s.counters.ingested)
      .collect();
    for i in 0..40_000u64 {
      ingest_patiently(&bus, &format!("user-{window}-{i}"), 0);
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    // A change within the window moves keys mid-way; only steady windows are judged.
    if bus.num_shards() != active {
      continue;
    }
    let shares: Vec<u64> = bus
      .shard_stats()
      .iter()
      .take(active as usize)
      .map(|s| s.counters.ingested - before.get(s.id as usize).copied().unwrap_or(0))
      .collect();
    let mean = 40_000.0 / active as f64;
    for (id, share) in shares.iter().enumerate() {
      let off = (*share as f64 - mean).abs() / mean;
      assert!(
        off <= 0.2,
        "window {window} ({active} shards): shard {id} got {share}, mean {mean}"
      );
    }
    judged += 1;
  }
  assert_eq!(bus.num_shards(), 8, "the policy should have grown the bus");
  assert!(judged >= 3, "only {judged} steady windows");
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_grows_to_max_under_overload_and_shrinks_to_min_when_idle() {
  let policy = ScalingConfig {
    auto: true,
    window: Duration::from_millis(50),
    up_windows: 2,
    down_windows: 3,
    cooldown: Duration::from_millis(100),
    max_step: 1,
    ..ScalingConfig::new(1, 3)
  };
  // A slow backend keeps the rings full while producers push.
  let adapter = Recording::new(Duration::from_millis(20));
  let mut cfg = config(1, policy);
  cfg.ring_capacity = 512;
  cfg.batch.max_events = 32;
  let bus =
    Bus::start_with_adapter(cfg, adapter.clone(), tokio::runtime::Handle::current()).unwrap();
  let stop = Arc::new(AtomicBool::new(false));
  let sent = Arc::new(AtomicU64::new(0));
  let producer = {
    let (bus, stop, sent) = (bus.clone(), stop.clone(), sent.clone());
    std::thread::spawn(move || {
      let mut n = 0u64;
      while !stop.load(AtomicOrdering::SeqCst) {
        let key = format!("k{}", n % 64);
        if bus.ingest(event(&key, n / 64)).is_ok() {
          n += 1;
        } else {
          std::thread::sleep(Duration::from_micros(100));
        }
      }
      sent.store(n, AtomicOrdering::SeqCst);
    })
  };
  let mut most = 0;
  let deadline = Instant::now() + Duration::from_secs(20);
  while bus.num_shards() < 3 && Instant::now() < deadline {
    tokio::time::sleep(Duration::from_millis(20)).await;
    most = most.max(bus.num_shards());
  }
  assert_eq!(bus.num_shards(), 3, "overload should reach maxShards");
  // Sustained overload at the max: no further growth.
  for _ in 0..20 {
    tokio::time::sleep(Duration::from_millis(25)).await;
    most = most.max(bus.num_shards());
  }
  assert_eq!(most, 3);
  stop.store(true, AtomicOrdering::SeqCst);
  producer.join().unwrap();
  // A trickle of late pushes while shards drain must not keep them draining.
  let deadline = Instant::now() + Duration::from_secs(30);
  let mut late = 0u64;
  while bus.num_shards() > 1 && Instant::now() < deadline {
    ingest_patiently(&bus, "late", late);
    late += 1;
    tokio::time::sleep(Duration::from_millis(30)).await;
  }
  assert_eq!(bus.num_shards(), 1, "idle should shrink to minShards");
  let listed: Vec<&str> = bus.shard_stats().iter().map(|s| s.state).collect();
  assert_eq!(listed, vec!["active"]);
  bus.flush().await.unwrap();
  let stats = bus.stats();
  assert_eq!(
    stats.counters.ingested,
    sent.load(AtomicOrdering::SeqCst) + late
  );
  assert_eq!(stats.counters.stored, stats.counters.ingested);
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_activation_leaves_no_trace() {
  let adapter = Recording::new(Duration::ZERO);
  let bus = Bus::start_with_adapter(
    config(2, ScalingConfig::new(1, 8)),
    adapter.clone(),
    tokio::runtime::Handle::current(),
  )
  .unwrap();
  for n in 0..1000 {
    ingest_patiently(&bus, &format!("k{}", n % 10), n / 10);
  }
  bus.inject_activation_failures(1);
  let err = bus.scale_up(3).await.unwrap_err();
  assert_eq!(err.code, Code::Timeout);
  assert_eq!(bus.num_shards(), 2);
  let ids: Vec<u32> = bus.shard_stats().iter().map(|s| s.id).collect();
  assert_eq!(ids, vec![0, 1]);
  for n in 1000..2000 {
    ingest_patiently(&bus, &format!("k{}", n % 10), n / 10);
  }
  // The same ids come up cleanly afterwards.
  assert_eq!(bus.scale_up(3).await.unwrap(), vec![2, 3, 4]);
  assert_eq!(bus.flush().await.unwrap().dropped, 0);
  let log = adapter.log.lock().await;
  assert_each_key_once_in_order(&log, 10, 200);
  drop(log);
  bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_shards_stay_readable_and_old_cursors_stay_valid() {
  let adapter = Recording::new(Duration::ZERO);
  let bus = Bus::start_with_adapter(
    config(4, ScalingConfig::new(1, 8)),
    adapter,
    tokio::runtime::Handle::current(),
  )
  .unwrap();
  for n in 0..400 {
    ingest_patiently(&bus, &format!("k{}", n % 40), n / 40);
  }
  bus.flush().await.unwrap();
  let first = bus
    .poll(PollRequest {
      limit: 100,
      ..PollRequest::default()
    })
    .await
    .unwrap();
  assert_eq!(bus.scale_down(3).await.unwrap(), vec![1, 2, 3]);
  assert_eq!(bus.num_shards(), 1);
  // Resuming from a cursor issued before the change returns the other 300, removed shards' included.
  let mut rest = 0;
  let mut cursor = Some(first.cursor);
  loop {
    let page = bus
      .poll(PollRequest {
        limit: 100,
        cursor: cursor.take(),
        ..PollRequest::default()
      })
      .await
      .unwrap();
    rest += page.events.len();
    cursor = Some(page.cursor);
    if !page.has_more {
      break;
    }
  }
  assert_eq!(first.events.len() + rest, 400);
  // A removed id that comes back continues its sequence: its message ids are never reused.
  let before = message_ids(&bus, 1).await;
  assert_eq!(bus.scale_up(1).await.unwrap(), vec![1]);
  for n in 0..400 {
    ingest_patiently(&bus, &format!("k{}", n % 40), 10 + n / 40);
  }
  bus.flush().await.unwrap();
  let after = message_ids(&bus, 1).await;
  assert!(after.len() > before.len());
  assert_eq!(
    after.iter().collect::<std::collections::HashSet<_>>().len(),
    after.len()
  );
  bus.shutdown().await;
}

/// (key, counter) of events read back.
fn keyed(events: &[ringbus::event::StoredEvent]) -> Vec<(String, u64)> {
  events
    .iter()
    .map(|e| {
      let v: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
      (
        e.key.as_deref().unwrap().to_string(),
        v["n"].as_u64().unwrap(),
      )
    })
    .collect()
}

/// Polls from `cursor` until it has `total` events (live: the producer may still run).
async fn poll_all(bus: &Bus, ordering: PageOrder, total: usize) -> Vec<(String, u64)> {
  let mut cursor = None;
  let mut got = Vec::new();
  // A failure, not a hang, when events go missing.
  let deadline = std::time::Instant::now() + Duration::from_secs(120);
  while got.len() < total {
    assert!(
      std::time::Instant::now() < deadline,
      "{ordering:?}: read {} of {total} events in 120 s",
      got.len()
    );
    let page = bus
      .poll(PollRequest {
        limit: 700,
        cursor: cursor.take(),
        ordering,
        ..PollRequest::default()
      })
      .await
      .unwrap();
    got.extend(keyed(&page.events));
    cursor = Some(page.cursor);
    if page.events.is_empty() {
      tokio::time::sleep(Duration::from_millis(2)).await;
    }
  }
  got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_each_key_in_order_through_scaling() {
  // Slow writes make every swap hold new shards back while old ones drain: the window in
  // which a reader could see a moved key's new shard before its old one.
  let adapter = Recording::new(Duration::from_millis(1));
  let bus = Bus::start_with_adapter(
    config(4, ScalingConfig::new(1, 12)),
    adapter.clone(),
    tokio::runtime::Handle::current(),
  )
  .unwrap();
  const KEYS: usize = 64;
  const PER_KEY: u64 = 600;
  const TOTAL: usize = KEYS * PER_KEY as usize;
  // The producer and the scalings go in step: round 50·j waits for change j, so every
  // change falls between two stretches of events, whatever the machine's speed.
  let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
  let producer = {
    let (bus, made) = (bus.clone(), made.clone());
    std::thread::spawn(move || {
      for n in 0..PER_KEY {
        let step = (n / 50) as usize;
        while n % 50 == 0 && made.load(AtomicOrdering::SeqCst) < step.min(10) {
          std::thread::sleep(Duration::from_millis(1));
        }
        for k in 0..KEYS {
          ingest_patiently(&bus, &format!("k{k}"), n);
        }
      }
    })
  };
  // Live readers in both orderings, and a subscription, while the bus scales.
  let live_shard = tokio::spawn({
    let bus = bus.clone();
    async move { poll_all(&bus, PageOrder::Shard, TOTAL).await }
  });
  let live_time = tokio::spawn({
    let bus = bus.clone();
    async move { poll_all(&bus, PageOrder::Timestamp, TOTAL).await }
  });
  let live_sub = tokio::spawn({
    let mut sub = bus.subscribe(None, StartAt::Earliest).unwrap();
    async move {
      let mut got = Vec::new();
      let deadline = std::time::Instant::now() + Duration::from_secs(120);
      while got.len() < TOTAL {
        let batch = tokio::time::timeout_at(deadline.into(), sub.next_batch()).await;
        let batch =
          batch.unwrap_or_else(|_| panic!("subscribe: {} of {TOTAL} events in 120 s", got.len()));
        got.extend(keyed(&batch.unwrap()));
      }
      got
    }
  });
  let plan = [3u32, 2, 5, 4, 6, 1, 2, 3, 7, 5];
  let mut changes = 0;
  // Events ingested and active shards when each change finished.
  let mut at_change = Vec::new();
  for target in plan.iter() {
    // Change j once the producer is past round 50·j (in step, above).
    while bus.stats().counters.ingested < (changes as u64 * 50 + 1) * KEYS as u64 {
      tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let active = bus.num_shards();
    let result = if *target > active {
      bus.scale_up(target - active).await
    } else if *target < active {
      bus.scale_down(active - target).await
    } else {
      continue;
    };
    result.unwrap();
    changes += 1;
    at_change.push((bus.stats().counters.ingested, bus.num_shards()));
    made.store(changes, AtomicOrdering::SeqCst);
  }
  producer.join().unwrap();
  assert_eq!(changes, plan.len());
  // Each change took the shard count to its target, with events stored before and after it.
  let counts: Vec<u32> = at_change.iter().map(|c| c.1).collect();
  assert_eq!(counts, plan.to_vec(), "shard counts after each change");
  for (j, (ingested, _)) in at_change.iter().enumerate() {
    assert!(
      *ingested > (j as u64 * 50) * KEYS as u64 && *ingested < TOTAL as u64,
      "change {j} at {ingested} events ingested, not mid-stream"
    );
  }
  bus.flush().await.unwrap();
  assert_eq!(bus.stats().counters.stored, TOTAL as u64);
  for (name, got) in [
    ("live poll", live_shard.await.unwrap()),
    ("live timestamp poll", live_time.await.unwrap()),
    ("live subscribe", live_sub.await.unwrap()),
    ("poll", poll_all(&bus, PageOrder::Shard, TOTAL).await),
    (
      "timestamp poll",
      poll_all(&bus, PageOrder::Timestamp, TOTAL).await,
    ),
  ] {
    let mut next: HashMap<String, u64> = HashMap::new();
    for (k, n) in &got {
      let want = next.entry(k.clone()).or_insert(0);
      assert_eq!(*n, *want, "{name}: key {k} out of order");
      *want += 1;
    }
    assert_eq!(got.len(), TOTAL, "{name}");
  }
  bus.shutdown().await;
}

use super::*;
use bytes::Bytes;

fn inc(i: u32) -> Incoming {
  Incoming::json(Bytes::from(format!("{{\"i\":{i}}}")), None).unwrap()
}

fn fill(shard: &Shard, n: u32) -> Vec<Result<Pushed>> {
  let clock = crate::clock::Clock::new();
  (0..n).map(|i| shard.push(inc(i), clock.now_ms())).collect()
}

#[test]
fn reject_mode_bounds_the_ring() {
  let s = Shard::new(0, 16, Backpressure::Reject, 1024, 1 << 20);
  let r = fill(&s, 20);
  assert_eq!(r.iter().filter(|r| r.is_ok()).count(), 16);
  let err = r[16].as_ref().unwrap_err();
  assert_eq!(err.code, Code::Backpressure);
  let c = s.counters();
  assert_eq!((c.ingested, c.rejected, c.dropped()), (16, 4, 0));
  assert_eq!(s.occupancy().queued, 16);
}

#[test]
fn a_drained_backlog_gives_its_memory_back() {
  let s = Shard::new(0, 100_000, Backpressure::Reject, 1000, 1 << 20);
  fill(&s, 50_000);
  assert!(s.state.lock().ring.capacity() >= 50_000);
  let mut out = Vec::new();
  while s.occupancy().queued > 0 {
    out.clear();
    s.take_batch(&mut out);
    let n = out.len() as u64;
    s.finish_batch(n, &[], DropReason::Adapter, None);
  }
  assert!(s.state.lock().ring.capacity() <= RETAINED_SLOTS);
  // Ordinary traffic keeps its buffer: a ring that never grew past it is left alone.
  fill(&s, 100);
  out.clear();
  s.take_batch(&mut out);
  assert_eq!(out.len(), 100);
}

fn sized(n: usize) -> Incoming {
  Incoming::bytes(Bytes::from(vec![7u8; n]), None).unwrap()
}

#[test]
fn rings_are_bounded_in_bytes_too() {
  let clock = crate::clock::Clock::new();
  let s = Shard::with_limits(0, 1000, 1000, Backpressure::Reject, 1000, 1 << 20);
  for _ in 0..4 {
    s.push(sized(250), clock.now_ms()).unwrap();
  }
  let err = s.push(sized(1), clock.now_ms()).unwrap_err();
  assert_eq!(err.code, Code::Backpressure);
  assert!(err.message.contains("ringMaxBytes 1000"), "{}", err.message);
  assert_eq!(s.occupancy().queued_bytes, 1000);
  // dropOldest evicts as many as it takes to fit a large event.
  let d = Shard::with_limits(0, 1000, 1000, Backpressure::DropOldest, 1000, 1 << 20);
  for _ in 0..4 {
    d.push(sized(250), clock.now_ms()).unwrap();
  }
  d.push(sized(600), clock.now_ms()).unwrap();
  let o = d.occupancy();
  assert_eq!((o.queued, o.queued_bytes), (2, 850));
  assert_eq!(d.counters().dropped_oldest, 3);
  // An empty ring takes one event larger than the bound.
  let e = Shard::with_limits(0, 10, 100, Backpressure::Reject, 10, 1 << 20);
  e.push(sized(500), clock.now_ms()).unwrap();
  assert!(e.push(sized(1), clock.now_ms()).is_err());
}

#[test]
fn drop_oldest_keeps_newest() {
  let s = Shard::new(0, 16, Backpressure::DropOldest, 1024, 1 << 20);
  assert!(fill(&s, 20).iter().all(|r| r.is_ok()));
  let c = s.counters();
  assert_eq!((c.ingested, c.dropped_oldest, c.rejected), (20, 4, 0));
  assert_eq!(c.pending(), 16);
  let mut out = Vec::new();
  s.take_batch(&mut out);
  assert_eq!(out.first().unwrap().seq, 4);
  assert_eq!(out.last().unwrap().seq, 19);
}

#[test]
fn drop_newest_keeps_oldest() {
  let s = Shard::new(0, 16, Backpressure::DropNewest, 1024, 1 << 20);
  let r = fill(&s, 20);
  assert_eq!(r[19].as_ref().unwrap(), &Pushed::DroppedNewest);
  let c = s.counters();
  assert_eq!((c.ingested, c.dropped_newest, c.rejected), (20, 4, 0));
  let mut out = Vec::new();
  s.take_batch(&mut out);
  assert_eq!(out.last().unwrap().seq, 15);
}

#[test]
fn sequences_are_gap_free_and_timestamps_monotonic() {
  let s = Shard::new(0, 1000, Backpressure::Reject, 1000, 1 << 20);
  fill(&s, 500);
  let mut out = Vec::new();
  s.take_batch(&mut out);
  for (i, w) in out.windows(2).enumerate() {
    assert_eq!(w[0].seq, i as u64);
    assert_eq!(w[1].seq, w[0].seq + 1);
    assert!(w[1].timestamp_ms >= w[0].timestamp_ms);
  }
}

#[test]
fn batch_respects_byte_limit() {
  let s = Shard::new(0, 1000, Backpressure::Reject, 1000, 64);
  fill(&s, 100);
  let mut out = Vec::new();
  s.take_batch(&mut out);
  let bytes: usize = out.iter().map(|e| e.size()).sum();
  assert!(bytes <= 64 && !out.is_empty());
}

#[test]
fn flush_ticket_counts_drops_of_covered_events() {
  let s = Shard::new(0, 100, Backpressure::Reject, 10, 1 << 20);
  fill(&s, 10);
  let mut t = s.flush_ticket().unwrap();
  assert_eq!(t.pending, 10);
  fill(&s, 5); // not covered
  let mut out = Vec::new();
  s.take_batch(&mut out);
  assert_eq!(out.len(), 10);
  assert!(t.done.try_recv().is_err());
  let dropped: Vec<u64> = out
    .iter()
    .filter(|e| e.seq % 2 == 0)
    .map(|e| e.seq)
    .collect();
  s.finish_batch(5, &dropped, DropReason::Adapter, Some("boom".into()));
  assert_eq!(t.done.try_recv().unwrap(), 5);
}

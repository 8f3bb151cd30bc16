//! The ledger alone: counters, deadlines, watermarks and commit changes, without a store.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::consume::filter::Filter;
use crate::event::{PayloadKind, Stamp};

fn event(shard: u32, n: u64, json: &str) -> StoredEvent {
  StoredEvent {
    id: format!("{shard}-{n}"),
    position: n.to_string(),
    shard,
    seq: n,
    timestamp_ms: 1_700_000_000_000 + n,
    kind: PayloadKind::Json,
    key: None,
    payload: Bytes::from(json.to_string()),
    message_id: format!("00000000000000ab-0-{shard}-{n}"),
    stamp: Stamp::default(),
    headers: None,
  }
}

fn page(shard: u32, range: std::ops::Range<u64>) -> ReadPage {
  ReadPage {
    events: range.clone().map(|n| event(shard, n, "{}")).collect(),
    next: Some((range.end - 1).to_string()),
    has_more: false,
    remaining: None,
  }
}

/// A ledger owning `shard` from the start with events 1..=n read.
fn with_events(shard: u32, n: u64) -> Ledger {
  let mut l = Ledger::default();
  l.take_shard(shard, CommitRecord::default());
  let gen = l.shards[&shard].gen;
  assert_eq!(
    l.accept(shard, gen, None, page(shard, 1..n + 1), None),
    Some((n as usize, false))
  );
  l
}

fn ids(ds: &[Delivery]) -> Vec<String> {
  ds.iter().map(|d| d.event.id.clone()).collect()
}

fn watermark(l: &mut Ledger) -> Option<String> {
  let changes = l.changes();
  changes
    .records
    .last()
    .and_then(|(_, _, text)| CommitRecord::decode(text))
    .and_then(|r| r.watermark)
}

#[test]
fn counts_held_and_out_through_take_ack_and_dead_letter() {
  let mut l = with_events(0, 4);
  assert_eq!((l.held(), l.out()), (4, 0));
  let (got, earlier) = l.take(3, None);
  assert_eq!(ids(&got), ["0-1", "0-2", "0-3"]);
  assert!(!earlier, "held by a worker: no deadline");
  assert_eq!((l.held(), l.out()), (4, 3));
  assert!(l.ack(0, "0-1"));
  assert!(
    !l.ack(0, "0-1"),
    "a second ack of the same event is refused"
  );
  assert!(!l.ack(0, "0-4"), "queued, never delivered");
  assert!(l.dead_letter(0, "0-2", "boom"));
  assert_eq!((l.held(), l.out()), (2, 1));
  let changes = l.changes();
  assert_eq!(changes.dead.len(), 1);
  assert_eq!(changes.dead[0].event.id, "0-2");
  assert_eq!(changes.dead[0].reason, "boom");
  assert!(!l.commit_pending);
}

#[test]
fn the_watermark_moves_over_the_finished_prefix_only() {
  let mut l = with_events(0, 3);
  l.take(3, None);
  assert!(l.ack(0, "0-2"));
  // 0-1 is still out: the watermark stays, and the record lists 0-2 as acked past it
  // (committed now, so a crash does not deliver it again).
  let r = CommitRecord::decode(&l.changes().records[0].2).unwrap();
  assert_eq!(r.watermark, None);
  assert!(r.acked.contains("0-2"));
  assert!(l.changes().records.is_empty(), "nothing new since");
  // A retry counts a delivery in the record.
  assert_eq!(l.retrying(0, "0-1"), Some(2));
  let r = CommitRecord::decode(&l.changes().records[0].2).unwrap();
  assert_eq!(r.watermark, None);
  assert!(r.acked.contains("0-2"));
  assert_eq!(r.counts.get("0-1"), Some(&2));
  assert!(l.ack(0, "0-1"));
  assert_eq!(watermark(&mut l).as_deref(), Some("2"));
}

#[test]
fn deadlines_requeue_in_read_order_then_dead_letter_past_max_deliveries() {
  let mut l = with_events(0, 3);
  let t0 = Instant::now();
  let due = t0 + Duration::from_millis(10);
  let (got, earlier) = l.take(3, Some(due));
  assert_eq!(got.len(), 3);
  assert!(earlier);
  assert_eq!(l.next_due, Some(due));
  assert!(l.ack(0, "0-2"));
  // Before the deadline nothing moves; after it the two unacked come back first, in order.
  assert_eq!(l.scan_due(t0, 2, 10).requeued, 0);
  let scan = l.scan_due(due, 2, 10);
  assert_eq!((scan.requeued, scan.finished, scan.next), (2, 0, None));
  assert_eq!((l.held(), l.out()), (2, 0));
  let (again, _) = l.take(5, Some(due + Duration::from_millis(10)));
  assert_eq!(ids(&again), ["0-1", "0-3"]);
  assert!(again.iter().all(|d| d.deliveries == 2));
  // Second deadline missed with maxDeliveries 2: both become dead letters.
  let scan = l.scan_due(due + Duration::from_millis(10), 2, 10);
  assert_eq!((scan.requeued, scan.finished, scan.dead), (0, 2, 2));
  assert_eq!((l.held(), l.out()), (0, 0));
  assert!(l.commit_pending);
  let changes = l.changes();
  assert_eq!(changes.dead.len(), 2);
  assert!(changes.dead[0]
    .reason
    .contains("not acked within ackWaitMs (10 ms) on each of 2"));
}

#[test]
fn a_nack_lowers_the_deadline_and_is_dead_lettered_as_nacked() {
  let mut l = with_events(0, 1);
  let t0 = Instant::now();
  l.take(1, Some(t0 + Duration::from_secs(30)));
  assert_eq!(
    l.nack(0, "0-1", t0),
    Some(true),
    "earlier than the ack deadline"
  );
  assert_eq!(l.nack(0, "0-9", t0), None);
  assert!(
    !l.touch(0, "0-1", t0 + Duration::from_secs(60)),
    "a nacked event keeps its time"
  );
  let scan = l.scan_due(t0, 1, 10);
  assert_eq!((scan.finished, scan.dead), (1, 1));
  assert!(l.changes().dead[0].reason.contains("nacked on each of 1"));
}

#[test]
fn handing_over_drops_what_is_queued_and_forgetting_releases_what_is_out() {
  let mut l = with_events(0, 4);
  l.take(1, None);
  l.drain(0);
  assert_eq!((l.held(), l.out()), (1, 1), "three queued entries dropped");
  assert!(
    l.take(4, None).0.is_empty(),
    "nothing more is delivered from a draining shard"
  );
  assert_eq!(l.shards[&0].count(Status::Out), 1);
  l.forget(0);
  assert_eq!((l.held(), l.out()), (0, 0));
  assert!(l.shards.is_empty());
  assert!(!l.ack(0, "0-1"), "an ack after the hand-over is refused");
}

#[test]
fn a_page_from_an_older_ownership_or_position_is_ignored() {
  let mut l = with_events(0, 2);
  let gen = l.shards[&0].gen;
  assert_eq!(
    l.accept(0, gen + 1, Some("2".into()), page(0, 3..5), None),
    None
  );
  assert_eq!(
    l.accept(0, gen, None, page(0, 3..5), None),
    None,
    "position moved on"
  );
  assert_eq!(
    l.accept(0, gen, Some("2".into()), page(0, 3..5), None),
    Some((2, false))
  );
  assert_eq!(l.held(), 4);
}

#[test]
fn skipped_and_filtered_events_are_done_at_once() {
  let mut l = Ledger::default();
  let record = CommitRecord {
    acked: ["0-1".to_string()].into_iter().collect(),
    counts: [("0-3".to_string(), 2)].into_iter().collect(),
    ..Default::default()
  };
  l.take_shard(0, record);
  let gen = l.shards[&0].gen;
  let p = ReadPage {
    events: vec![
      event(0, 1, "{}"),
      event(0, 2, r#"{"t":"x"}"#),
      event(0, 3, r#"{"t":"a"}"#),
    ],
    next: Some("3".into()),
    has_more: false,
    remaining: None,
  };
  let filter = Filter::parse(&serde_json::json!({ "t": "a" })).unwrap();
  // 0-1 was acked by the earlier owner, 0-2 does not match: the watermark passes both.
  assert_eq!(l.accept(0, gen, None, p, Some(&filter)), Some((1, true)));
  let (got, _) = l.take(5, None);
  assert_eq!(ids(&got), ["0-3"]);
  assert_eq!(
    got[0].deliveries, 3,
    "deliveries by earlier owners count on"
  );
  assert_eq!(watermark(&mut l).as_deref(), Some("2"));
  assert_eq!(l.shards[&0].remaining, Some(0), "read to the end");
}

#[test]
fn giving_back_uncounts_the_delivery() {
  let mut l = with_events(0, 1);
  l.take(1, None);
  assert_eq!(l.retrying(0, "0-1"), Some(2));
  assert!(l.give_back(0, "0-1"));
  assert_eq!((l.held(), l.out()), (0, 0));
  let r = CommitRecord::decode(&l.changes().records[0].2).unwrap();
  assert_eq!(
    r.counts.get("0-1"),
    Some(&1),
    "two deliveries counted, one given back"
  );
}

#[test]
fn returned_letters_are_admitted_within_max_in_flight_and_settle_like_events() {
  let mut l = with_events(0, 1);
  let letter = |n: u64| Letter {
    id: format!("L{n}"),
    event: event(0, 100 + n, "{}"),
    reason: "r".into(),
    deliveries: 5,
    time_ms: 1,
    cut: None,
  };
  assert_eq!(l.admit(letter(1), 3), Admit::Added);
  assert_eq!(l.admit(letter(1), 3), Admit::Skipped, "already held");
  let mut other = letter(2);
  other.event.shard = 7;
  assert_eq!(l.admit(other, 3), Admit::Skipped, "not an owned shard");
  assert_eq!(l.admit(letter(3), 3), Admit::Added);
  assert_eq!(l.admit(letter(4), 3), Admit::Full);
  let (got, _) = l.take(5, None);
  assert_eq!(ids(&got), ["0-1", "0-101", "0-103"]);
  assert!(l.ack(0, "0-101"));
  assert!(
    l.returned_busy(),
    "the acked letter must be removed from the store first"
  );
  assert!(l.dead_letter(0, "0-103", "again"));
  let changes = l.changes();
  assert_eq!(changes.done, ["L1", "L3"]);
  assert_eq!(changes.dead.len(), 1);
  assert_eq!(changes.dead[0].id, "", "a new letter gets a new id");
  assert!(!l.returned_busy());
}

#[test]
fn a_failed_commit_is_restored_before_later_changes() {
  let mut l = with_events(0, 2);
  l.take(2, None);
  assert!(l.dead_letter(0, "0-1", "first"));
  let changes = l.changes();
  assert!(l.dead_letter(0, "0-2", "second"));
  l.restore(changes.dead, changes.done, &changes.records);
  let again = l.changes();
  let reasons: Vec<&str> = again.dead.iter().map(|d| d.reason.as_str()).collect();
  assert_eq!(reasons, ["first", "second"]);
  assert_eq!(again.records.len(), 1);
  // A refusal for an older ownership leaves the current one alone.
  let gen = l.shards[&0].gen;
  l.commit_refused(0, gen + 1);
  assert!(l.shards.contains_key(&0));
  l.commit_refused(0, gen);
  assert!(l.shards.is_empty());
}

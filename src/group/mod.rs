//! Consumer groups: competing members that own shards, deliver with acknowledgement and
//! keep their state in the backend (DESIGN §8).
//!
//! What a backend keeps for a group (members, leases, commit records, letters) is the
//! storage layer's `adapter::group_store`; this module only uses it.
//!
//! - `record`: the commit and start records.
//! - `member`: one member (`bus.consumer()`): ownership, reading, delivery, acks, commits.
//! - `worker`: `bus.process()`: one event per key at a time, retries before later events.
//! - `join`: how a `process()` worker joins, retrying in the background.
//! - `letters`: dead letters read, redriven and purged from outside a member.
//! - `inspect`: a group seen from outside (members, owners, positions, lag) and its reset.

pub mod inspect;
pub mod join;
pub mod letters;
pub mod member;
pub mod record;
pub mod worker;

use std::time::Duration;

use crate::config::check_range;
use crate::consume::filter::Filter;
use crate::consume::start::StartAt;
use crate::error::{BusError, Result};

pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_DELIVERIES: u32 = 5;
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1000;
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// A member's settings (`bus.consumer(options)`), validated.
#[derive(Debug, Clone)]
pub struct GroupOptions {
  pub group: String,
  pub member: String,
  pub filter: Option<Filter>,
  /// Where a new group starts: the end of every shard instead of the beginning.
  /// Where a new group starts: earliest, latest or a time (never a cursor).
  pub from: StartAt,
  pub ack_wait: Duration,
  pub max_deliveries: u32,
  pub max_in_flight: usize,
  /// How long a member's shard leases last without renewal (renewed every third of it).
  pub lease: Duration,
}

impl GroupOptions {
  /// Defaults for `group`, with a random member name.
  pub fn new(group: &str) -> Self {
    GroupOptions {
      group: group.to_string(),
      member: random_member(),
      filter: None,
      from: StartAt::Earliest,
      ack_wait: DEFAULT_ACK_WAIT,
      max_deliveries: DEFAULT_MAX_DELIVERIES,
      max_in_flight: DEFAULT_MAX_IN_FLIGHT,
      lease: DEFAULT_LEASE,
    }
  }

  pub fn validate(&self) -> Result<()> {
    check_name("group", &self.group)?;
    check_name("member", &self.member)?;
    check_range(
      "ackWaitMs",
      self.ack_wait.as_millis() as u64,
      100,
      86_400_000,
    )?;
    check_range("maxDeliveries", self.max_deliveries as u64, 1, 1_000_000)?;
    check_range("maxInFlight", self.max_in_flight as u64, 1, 100_000)?;
    check_range("leaseMs", self.lease.as_millis() as u64, 1000, 600_000)
  }

  /// How often leases and membership are renewed.
  pub fn renew_every(&self) -> Duration {
    self.lease / 3
  }
}

/// Group and member names go into backend keys as they are.
pub fn check_name(what: &str, name: &str) -> Result<()> {
  let ok = (1..=64).contains(&name.len())
    && name
      .bytes()
      .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
  if ok {
    Ok(())
  } else {
    Err(BusError::config(format!(
      "{what} must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-', got {name:?}"
    )))
  }
}

fn random_member() -> String {
  let mut b = [0u8; 8];
  let _ = getrandom::fill(&mut b);
  format!("m-{:016x}", u64::from_le_bytes(b))
}

/// A group's `from` option: `'earliest'` (the default), `'latest'` or `{ time }`.
pub fn parse_from(from: Option<&serde_json::Value>) -> Result<StartAt> {
  match from {
    Some(serde_json::Value::String(s)) if s != "earliest" && s != "latest" => {
      Err(BusError::config(format!(
        "from must be 'earliest' or 'latest' (or {{ time }} to start at a point in time), got {s:?}"
      )))
    }
    // The scope is never used: a string here is one of the two names.
    other => StartAt::parse(other, "", "from"),
  }
}

/// The shards `me` should own: shards sorted, members sorted, shard i to member i mod n.
/// Every member computes the same split from the same view; until views agree, leases
/// keep two members from reading one shard.
pub fn assigned(shards: &[u32], members: &[String], me: &str) -> Vec<u32> {
  let mut members: Vec<&String> = members.iter().collect();
  members.sort();
  members.dedup();
  match members.iter().position(|m| *m == me) {
    Some(i) => assigned_at(shards, i, members.len()),
    None => Vec::new(),
  }
}

/// The shards of the member at `rank` among `count` sorted members (see [`assigned`]).
pub fn assigned_at(shards: &[u32], rank: usize, count: usize) -> Vec<u32> {
  if rank >= count {
    return Vec::new();
  }
  let mut shards = shards.to_vec();
  shards.sort_unstable();
  shards.dedup();
  shards
    .into_iter()
    .enumerate()
    .filter(|(k, _)| k % count == rank)
    .map(|(_, s)| s)
    .collect()
}

#[cfg(test)]
mod tests {
  use super::*;

  fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
  }

  #[test]
  fn assignment_splits_evenly_and_completely() {
    let shards: Vec<u32> = (0..7).collect();
    let members = names(&["b", "a", "c"]);
    let mut all = Vec::new();
    for m in ["a", "b", "c"] {
      let mine = assigned(&shards, &members, m);
      assert!(mine.len() == 2 || mine.len() == 3, "{m}: {mine:?}");
      all.extend(mine);
    }
    all.sort();
    assert_eq!(all, shards);
    assert_eq!(assigned(&shards, &members, "zz"), Vec::<u32>::new());
    // More members than shards: the extra ones get nothing.
    let four = names(&["a", "b", "c", "d"]);
    let two = [0, 1];
    let counts: Vec<usize> = ["a", "b", "c", "d"]
      .iter()
      .map(|m| assigned(&two, &four, m).len())
      .collect();
    assert_eq!(counts, vec![1, 1, 0, 0]);
  }

  #[test]
  fn names_are_checked() {
    assert!(check_name("group", "billing_v2-eu").is_ok());
    for bad in ["", "a b", "a.b", "ü", &"x".repeat(65)] {
      let e = check_name("group", bad).unwrap_err();
      assert!(e.message.starts_with("group must be"), "{}", e.message);
    }
    let mut o = GroupOptions::new("g");
    assert!(o.validate().is_ok());
    o.lease = Duration::from_millis(10);
    assert!(o.validate().unwrap_err().message.contains("leaseMs"));
  }

  #[test]
  fn a_rank_gives_the_same_split_as_the_member_list() {
    let members = names(&["d", "a", "c", "b"]);
    let shards = [7, 3, 5, 1, 0, 2, 6, 4, 3];
    for (rank, me) in ["a", "b", "c", "d"].iter().enumerate() {
      assert_eq!(
        assigned_at(&shards, rank, 4),
        assigned(&shards, &members, me)
      );
    }
    assert_eq!(assigned_at(&shards, 0, 4), vec![0, 4]);
    assert!(assigned_at(&shards, 4, 4).is_empty());
  }

  #[test]
  fn from_is_earliest_unless_latest() {
    use serde_json::json;
    assert_eq!(parse_from(None).unwrap(), StartAt::Earliest);
    assert_eq!(
      parse_from(Some(&json!("earliest"))).unwrap(),
      StartAt::Earliest
    );
    assert_eq!(parse_from(Some(&json!("latest"))).unwrap(), StartAt::Latest);
    assert_eq!(
      parse_from(Some(&json!({ "time": 9 }))).unwrap(),
      StartAt::Time(9)
    );
    let e = parse_from(Some(&json!("now"))).unwrap_err();
    assert!(e.message.contains("got \"now\""), "{}", e.message);
  }
}

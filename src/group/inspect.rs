//! A group seen from outside (`bus.groups()`, `bus.group(name)`, `bus.resetGroup`): read
//! from the store's members, leases, commit records and letters, without joining the
//! group or taking a lease (a reset takes each lease for the moment of its write).

use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::join_all;

use super::record::{CommitRecord, StartRecord};
use crate::adapter::group_store::{GroupStore, MemberSeen, Tray};
use crate::adapter::Adapter;
use crate::clock::now_ms;
use crate::consume::start::{start_cursor, StartAt};
use crate::error::{BusError, Result};

/// Records a lag count reads at most to find the oldest unacked one past acks out of
/// order (the commit record lists at most [`super::record::MAX_LISTED`] of those).
const LOOK_AHEAD: usize = super::record::MAX_LISTED;

/// The name a reset holds leases under while it writes; never a member's (members are
/// refused while it runs, and it holds each lease for two requests).
const RESETTER: &str = "_ringbus-reset";
const RESET_LEASE: Duration = Duration::from_secs(30);

/// One shard of a group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardView {
  pub id: u32,
  pub owner: Option<String>,
  pub lease_until_ms: Option<u64>,
  /// The read position everything at or before is acked (None: the shard's start).
  pub committed: Option<String>,
  /// Records after `committed` not acked (acks out of order subtracted), within what the
  /// store still holds.
  pub lag: u64,
  /// Since the oldest of them was ingested (its timestamp), in ms.
  pub lag_age_ms: Option<u64>,
  /// Delivered and not acked, as of the last commit record write.
  pub in_flight: u64,
  /// Of those, delivered more than once.
  pub redelivered: u64,
}

/// A group: members, shards, letters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupView {
  pub group: String,
  pub members: Vec<MemberSeen>,
  pub shards: Vec<ShardView>,
  pub lag: u64,
  pub lag_age_ms: Option<u64>,
  pub in_flight: u64,
  pub redelivered: u64,
  pub dead_letters: u64,
  /// Letters put back by `redeliver` and not delivered yet.
  pub returned: u64,
}

/// One shard of a reset: where it was and where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct ResetShard {
  pub id: u32,
  pub from: Option<String>,
  pub to: Option<String>,
  pub lag_before: u64,
  pub lag_after: u64,
}

/// The start record of a listed group. One the store lost is counted from the earliest
/// (the most a new member could read) and not written back: the next member's `from`
/// decides where the group starts again.
async fn start_of(store: &dyn GroupStore, group: &str) -> Result<StartRecord> {
  let text = store.start_record(group).await?;
  Ok(text.map_or(StartRecord::Earliest, |t| StartRecord::decode(&t)))
}

/// Refuses a group the store has no state of (inspecting must not create one).
async fn existing(store: &dyn GroupStore, group: &str) -> Result<StartRecord> {
  super::check_name("group", group)?;
  if !store.group_names().await?.iter().any(|g| g == group) {
    return Err(BusError::config(format!(
      "no consumer group {group:?} in this store (check the name; bus.groups() or `ringbus groups` lists them)"
    )));
  }
  start_of(store, group).await
}

/// Where `shard` stands: its commit record, or the group's start when it has none.
async fn commit_of(
  store: &dyn GroupStore,
  group: &str,
  shard: u32,
  start: &StartRecord,
) -> Result<CommitRecord> {
  let text = store.committed(group, shard).await?;
  Ok(
    text
      .as_deref()
      .and_then(CommitRecord::decode)
      .unwrap_or_else(|| CommitRecord {
        watermark: start.position(shard),
        ..Default::default()
      }),
  )
}

/// Records after `after` not in `acked`, and how long ago the first of them was ingested.
async fn lag_after(
  adapter: &dyn Adapter,
  shard: u32,
  after: Option<&str>,
  acked: &HashSet<String>,
) -> Result<(u64, Option<u64>)> {
  let look = if acked.is_empty() { 1 } else { LOOK_AHEAD };
  let page = adapter.read(shard, after, look).await?;
  let first = page.events.iter().find(|e| !acked.contains(&e.id));
  let age = first.map(|e| now_ms().saturating_sub(e.timestamp_ms));
  let seen = page.events.len() as u64;
  let count = if !page.has_more {
    seen
  } else if let Some(r) = page.remaining {
    seen + r
  } else {
    match adapter.count_after(shard, after).await? {
      Some(n) => n,
      None => seen,
    }
  };
  let acked_seen = page.events.iter().filter(|e| acked.contains(&e.id)).count() as u64;
  Ok((count.saturating_sub(acked_seen), age))
}

async fn shard_view(
  adapter: &dyn Adapter,
  store: &dyn GroupStore,
  group: &str,
  shard: u32,
  start: &StartRecord,
) -> Result<ShardView> {
  let record = commit_of(store, group, shard, start).await?;
  let lease = store.lease_holder(group, shard).await?;
  let (lag, lag_age_ms) =
    lag_after(adapter, shard, record.watermark.as_deref(), &record.acked).await?;
  Ok(ShardView {
    id: shard,
    owner: lease.as_ref().map(|l| l.member.clone()),
    lease_until_ms: lease.map(|l| l.until_ms),
    committed: record.watermark,
    lag,
    lag_age_ms,
    in_flight: record.counts.len() as u64,
    redelivered: record.counts.values().filter(|n| **n > 1).count() as u64,
  })
}

/// `group` over `shards`: its members, each shard's owner, position and lag, its letters.
pub async fn view(
  adapter: &dyn Adapter,
  store: &dyn GroupStore,
  shards: &[u32],
  group: &str,
) -> Result<GroupView> {
  let start = existing(store, group).await?;
  view_from(adapter, store, shards, group, &start).await
}

/// Every group the store holds, sorted by name (the store is listed once).
pub async fn views(
  adapter: &dyn Adapter,
  store: &dyn GroupStore,
  shards: &[u32],
) -> Result<Vec<GroupView>> {
  let mut out = Vec::new();
  for group in store.group_names().await? {
    let start = start_of(store, &group).await?;
    out.push(view_from(adapter, store, shards, &group, &start).await?);
  }
  Ok(out)
}

async fn view_from(
  adapter: &dyn Adapter,
  store: &dyn GroupStore,
  shards: &[u32],
  group: &str,
  start: &StartRecord,
) -> Result<GroupView> {
  let members = store.member_list(group).await?;
  let views = join_all(
    shards
      .iter()
      .map(|s| shard_view(adapter, store, group, *s, start)),
  )
  .await
  .into_iter()
  .collect::<Result<Vec<_>>>()?;
  Ok(GroupView {
    group: group.to_string(),
    members,
    lag: views.iter().map(|s| s.lag).sum(),
    lag_age_ms: views.iter().filter_map(|s| s.lag_age_ms).max(),
    in_flight: views.iter().map(|s| s.in_flight).sum(),
    redelivered: views.iter().map(|s| s.redelivered).sum(),
    shards: views,
    dead_letters: store.count_letters(group, Tray::Dead).await?,
    returned: store.count_letters(group, Tray::Returned).await?,
  })
}

/// Moves every shard of `group` to `to` (or says where it would, with `dry_run`). Refused
/// while a member is live or holds a lease: a live member's read-ahead and acks would
/// overwrite the reset.
pub async fn reset(
  adapter: &dyn Adapter,
  store: &dyn GroupStore,
  shards: &[u32],
  group: &str,
  to: &StartAt,
  dry_run: bool,
) -> Result<Vec<ResetShard>> {
  let start = existing(store, group).await?;
  refuse_if_active(store, shards, group).await?;
  let target = start_cursor(adapter, shards, to).await?;
  let mut plan = Vec::with_capacity(shards.len());
  for &s in shards {
    let record = commit_of(store, group, s, &start).await?;
    let to = target.position(s).cloned();
    let (lag_before, _) = lag_after(adapter, s, record.watermark.as_deref(), &record.acked).await?;
    let (lag_after, _) = lag_after(adapter, s, to.as_deref(), &HashSet::new()).await?;
    plan.push(ResetShard {
      id: s,
      from: record.watermark,
      to,
      lag_before,
      lag_after,
    });
  }
  if !dry_run {
    write_reset(store, group, &plan).await?;
  }
  Ok(plan)
}

async fn refuse_if_active(store: &dyn GroupStore, shards: &[u32], group: &str) -> Result<()> {
  let members = store.member_list(group).await?;
  // Holder → the shards it holds.
  let mut holders: std::collections::BTreeMap<String, Vec<String>> = Default::default();
  for &s in shards {
    if let Some(l) = store.lease_holder(group, s).await? {
      holders.entry(l.member).or_default().push(s.to_string());
    }
  }
  let held: Vec<String> = holders
    .into_iter()
    .map(|(m, s)| format!("{m} on shard {}", s.join(", ")))
    .collect();
  if members.is_empty() && held.is_empty() {
    return Ok(());
  }
  let mut names: Vec<String> = members.iter().take(10).map(|m| m.name.clone()).collect();
  if members.len() > 10 {
    names.push(format!("and {} more", members.len() - 10));
  }
  Err(BusError::config(format!(
    "cannot reset group {group:?} while it has live members ({}) or held leases ({}): close its consumers and workers (or wait leaseMs for crashed ones to expire), then reset again",
    if names.is_empty() { "none".into() } else { names.join(", ") },
    if held.is_empty() { "none".into() } else { held.join(", ") },
  )))
}

/// Writes each shard's new commit record under a lease of its own, so that a member
/// joining meanwhile cannot read the shard half-reset.
async fn write_reset(store: &dyn GroupStore, group: &str, plan: &[ResetShard]) -> Result<()> {
  let mut taken = Vec::new();
  let mut result = Ok(());
  for s in plan {
    match store.lease(group, s.id, RESETTER, RESET_LEASE).await {
      Ok(true) => taken.push(s.id),
      Ok(false) => {
        result = Err(BusError::config(format!(
          "cannot reset group {group:?}: a member took shard {} while the reset ran; nothing was changed; close the group's members and reset again",
          s.id
        )));
        break;
      }
      Err(e) => {
        result = Err(e.into());
        break;
      }
    }
  }
  if result.is_ok() {
    for s in plan {
      let record = CommitRecord {
        watermark: s.to.clone(),
        ..Default::default()
      };
      match store.commit(group, s.id, RESETTER, &record.encode()).await {
        Ok(true) => {}
        Ok(false) => {
          result = Err(BusError::new(
            crate::error::Code::Timeout,
            format!("resetting group {group:?} took longer than its lease on shard {}; some shards may be reset and others not: run the reset again", s.id),
          ));
          break;
        }
        Err(e) => {
          result = Err(e.into());
          break;
        }
      }
    }
  }
  for s in taken {
    let _ = store.release(group, s, RESETTER).await;
  }
  result
}

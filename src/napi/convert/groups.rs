//! Consumer groups seen from outside as JS objects (`bus.groups()`, `bus.group()`,
//! `bus.resetGroup()`). Times are ms since the epoch, as numbers.

use napi_derive::napi;

use crate::group::inspect::{GroupView, ResetShard, ShardView};

/// One row of `bus.groups()`.
#[napi(object)]
pub struct GroupSummary {
  pub group: String,
  /// Live members.
  pub members: u32,
  /// Events stored and not yet acked by the group, over every shard (within what the
  /// store still holds after trimming).
  pub lag: f64,
  /// How long ago the oldest of them was ingested, in ms; absent with no lag.
  pub lag_age_ms: Option<f64>,
  /// Delivered and not yet acked, as of the members' last commit (every few hundred ms).
  pub in_flight: f64,
  /// Of those, delivered more than once.
  pub redelivered: f64,
  pub dead_letters: f64,
}

/// A live member of a group.
#[napi(object)]
pub struct GroupMember {
  pub name: String,
  /// Its last renewal (every `leaseMs / 3`), ms since the epoch.
  pub renewed_at: f64,
  /// When it stops counting as live without another renewal, ms since the epoch.
  pub expires_at: f64,
}

/// One shard of a group.
#[napi(object)]
pub struct GroupShard {
  pub id: u32,
  /// The member holding the shard's lease; absent when none does.
  pub owner: Option<String>,
  /// When that lease ends without renewal, ms since the epoch.
  pub lease_until: Option<f64>,
  /// The store position everything up to is acked (a Redis entry id, a JetStream
  /// sequence, a memory offset); absent: the shard's start.
  pub committed: Option<String>,
  pub lag: f64,
  pub lag_age_ms: Option<f64>,
  pub in_flight: f64,
  pub redelivered: f64,
}

/// `bus.group(name)`.
#[napi(object)]
pub struct GroupInfo {
  pub group: String,
  /// Live members, sorted by name.
  pub members: Vec<GroupMember>,
  /// Every shard the store holds, sorted by id.
  pub shards: Vec<GroupShard>,
  pub lag: f64,
  pub lag_age_ms: Option<f64>,
  pub in_flight: f64,
  pub redelivered: f64,
  pub dead_letters: f64,
  /// Letters put back by `redeliver()` and not delivered again yet.
  pub returned: f64,
}

/// One shard of `bus.resetGroup()`.
#[napi(object)]
pub struct ResetShardPlan {
  pub id: u32,
  /// The committed position before (absent: the shard's start).
  pub from: Option<String>,
  /// The committed position after (absent: the shard's start).
  pub to: Option<String>,
  /// Events the group had left on the shard before, and has after.
  pub lag_before: f64,
  pub lag_after: f64,
}

/// What `bus.resetGroup()` changed, or with `dryRun` would change.
#[napi(object)]
pub struct GroupReset {
  pub group: String,
  pub dry_run: bool,
  pub shards: Vec<ResetShardPlan>,
}

fn opt(n: Option<u64>) -> Option<f64> {
  n.map(|n| n as f64)
}

pub fn group_summary(v: GroupView) -> GroupSummary {
  GroupSummary {
    members: v.members.len() as u32,
    lag: v.lag as f64,
    lag_age_ms: opt(v.lag_age_ms),
    in_flight: v.in_flight as f64,
    redelivered: v.redelivered as f64,
    dead_letters: v.dead_letters as f64,
    group: v.group,
  }
}

fn group_shard(s: ShardView) -> GroupShard {
  GroupShard {
    id: s.id,
    owner: s.owner,
    lease_until: opt(s.lease_until_ms),
    committed: s.committed,
    lag: s.lag as f64,
    lag_age_ms: opt(s.lag_age_ms),
    in_flight: s.in_flight as f64,
    redelivered: s.redelivered as f64,
  }
}

pub fn group_info(v: GroupView) -> GroupInfo {
  GroupInfo {
    group: v.group,
    members: v
      .members
      .into_iter()
      .map(|m| GroupMember {
        name: m.name,
        renewed_at: m.renewed_ms as f64,
        expires_at: m.expires_ms as f64,
      })
      .collect(),
    shards: v.shards.into_iter().map(group_shard).collect(),
    lag: v.lag as f64,
    lag_age_ms: opt(v.lag_age_ms),
    in_flight: v.in_flight as f64,
    redelivered: v.redelivered as f64,
    dead_letters: v.dead_letters as f64,
    returned: v.returned as f64,
  }
}

pub fn group_reset(group: String, dry_run: bool, plan: Vec<ResetShard>) -> GroupReset {
  GroupReset {
    group,
    dry_run,
    shards: plan
      .into_iter()
      .map(|s| ResetShardPlan {
        id: s.id,
        from: s.from,
        to: s.to,
        lag_before: s.lag_before as f64,
        lag_after: s.lag_after as f64,
      })
      .collect(),
  }
}

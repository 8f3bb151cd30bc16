//! `EventBus` methods that operate consumer groups from outside (DESIGN §9): look at
//! groups, reset one, redrive and purge dead letters in bulk. They read the store and
//! join no group.

use std::collections::HashSet;

use super::*;
use crate::group::letters::{Bulk, Selection};
use crate::napi::convert::{GroupInfo, GroupReset, GroupSummary};
use crate::napi::options::{PurgeDeadLettersOptions, RedeliverOptions, ResetGroupOptions};

#[napi]
impl EventBus {
  /// Every consumer group the store holds, with its lag, members, in flight and dead
  /// letters, sorted by name. Reads the store only. Throws `ERR_ADAPTER`, `ERR_TIMEOUT` or
  /// `ERR_SHUT_DOWN`; `ERR_INVALID_CONFIG` on a store without groups (noop).
  #[napi(ts_return_type = "Promise<GroupSummary[]>")]
  pub fn groups<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, Vec<GroupSummary>>> {
    let bus = self.bus.clone();
    spawn(env, async move { bus.group_views().await }, |_, views| {
      Ok(views.into_iter().map(convert::group_summary).collect())
    })
  }

  /// One consumer group: its live members and their last renewal; per shard the owner,
  /// lease expiry, committed position, lag and lag age; in flight and letters. Reads the
  /// store only. `ERR_INVALID_CONFIG` when the store has no group of that name.
  #[napi(ts_args_type = "group: string", ts_return_type = "Promise<GroupInfo>")]
  pub fn group<'env>(
    &self,
    env: &'env Env,
    group: Unknown<'env>,
  ) -> Result<PromiseRaw<'env, GroupInfo>> {
    let bus = self.bus.clone();
    let group = group_arg(&group, "group()");
    spawn(env, async move { bus.group_view(&group?).await }, |_, v| {
      Ok(convert::group_info(v))
    })
  }

  /// Moves every shard of `group` to `to` (`'earliest'`, `'latest'`, `{ time }` or a
  /// cursor): the group's next members deliver from there. Refused with
  /// `ERR_INVALID_CONFIG`, naming them, while any member is live or holds a lease; with
  /// `dryRun` it changes nothing and says what would move.
  #[napi(
    ts_args_type = "group: string, options: ResetGroupOptions",
    ts_return_type = "Promise<GroupReset>"
  )]
  pub fn reset_group<'env>(
    &self,
    env: &'env Env,
    group: Unknown<'env>,
    options: Option<Unknown<'env>>,
  ) -> Result<PromiseRaw<'env, GroupReset>> {
    let bus = self.bus.clone();
    let request = group_arg(&group, "resetGroup()").and_then(|group| {
      let o: ResetGroupOptions = read_options(env, options, "resetGroup options")?;
      let to = match o.to {
        None | Some(serde_json::Value::Null) => {
          return Err(BusError::config(
            "resetGroup options.to is required: 'earliest', 'latest', { time } or a cursor from poll()",
          ))
        }
        Some(v) => StartAt::parse(Some(&v), &self.bus.cursor_scope(), "resetGroup options.to")?,
      };
      Ok((group, to, o.dry_run.unwrap_or(false)))
    });
    spawn(
      env,
      async move {
        let (group, to, dry_run) = request?;
        let plan = bus.reset_group(&group, &to, dry_run).await?;
        Ok((group, dry_run, plan))
      },
      |_, (group, dry_run, plan)| Ok(convert::group_reset(group, dry_run, plan)),
    )
  }

  /// Removes dead letters for good: by `letterIds`, by a `filter` on their events, or
  /// (neither given) all of them. Resolves with how many were removed (with `dryRun`:
  /// would be).
  #[napi(
    ts_args_type = "group: string, options?: PurgeDeadLettersOptions",
    ts_return_type = "Promise<number>"
  )]
  pub fn purge_dead_letters<'env>(
    &self,
    env: &'env Env,
    group: Unknown<'env>,
    options: Option<Unknown<'env>>,
  ) -> Result<PromiseRaw<'env, u32>> {
    let bus = self.bus.clone();
    let request = group_arg(&group, "purgeDeadLetters()").and_then(|group| {
      let o: PurgeDeadLettersOptions = read_options(env, options, "purgeDeadLetters options")?;
      let sel = Selection {
        ids: o
          .letter_ids
          .map(|ids| ids.into_iter().collect::<HashSet<_>>()),
        filter: o.filter.as_ref().map(Filter::parse).transpose()?,
        limit: None,
      };
      Ok((group, sel, o.dry_run.unwrap_or(false)))
    });
    spawn(
      env,
      async move {
        let (group, sel, dry_run) = request?;
        Ok(
          bus
            .dead_letters_bulk(&group, &sel, Bulk::Purge, dry_run)
            .await? as u32,
        )
      },
      |_, n| Ok(n),
    )
  }

  /// Puts dead letters back into `group`: the member owning each one's shard delivers it
  /// again, counting from 1. Takes the letters (from `deadLetters()`, or their
  /// `letterId`s), or `{ filter, limit, dryRun }` to move every matching letter, oldest
  /// first. Resolves with how many were found and moved (with `dryRun`: would be).
  #[napi(
    ts_args_type = "group: string, letters: Array<DeadLetter<unknown> | string> | RedeliverOptions",
    ts_return_type = "Promise<number>"
  )]
  pub fn redeliver<'env>(
    &self,
    env: &'env Env,
    group: Unknown<'env>,
    letters: Unknown<'env>,
  ) -> Result<PromiseRaw<'env, u32>> {
    enum Ask {
      Ids(Vec<String>),
      Bulk(Selection, bool),
    }
    let request = group_arg(&group, "redeliver()").and_then(|group| {
      if !letters.is_array().unwrap_or(false) && letters.get_type().ok() == Some(ValueType::Object) {
        let o: RedeliverOptions = read_options(env, Some(letters), "redeliver options")?;
        let sel = Selection {
          ids: None,
          filter: o.filter.as_ref().map(Filter::parse).transpose()?,
          limit: o.limit.map(|n| n as usize),
        };
        return Ok((group, Ask::Bulk(sel, o.dry_run.unwrap_or(false))));
      }
      // SAFETY: `letters` is a value of this call; the conversion checks that it is an array.
      let list = unsafe { Vec::<Unknown>::from_napi_value(env.raw(), letters.raw()) }.map_err(|_| {
        BusError::config("redeliver() takes an array of dead letters from deadLetters() or their letterId strings, or { filter, limit, dryRun }")
      })?;
      let ids = list
        .iter()
        .map(|v| letter_id(env, v))
        .collect::<std::result::Result<Vec<_>, _>>()?;
      Ok((group, Ask::Ids(ids)))
    });
    let bus = self.bus.clone();
    spawn(
      env,
      async move {
        let moved = match request? {
          (group, Ask::Ids(ids)) => bus.redeliver(&group, &ids).await?,
          (group, Ask::Bulk(sel, dry_run)) => {
            bus
              .dead_letters_bulk(&group, &sel, Bulk::Redeliver, dry_run)
              .await?
          }
        };
        Ok(moved as u32)
      },
      |_, n| Ok(n),
    )
  }
}

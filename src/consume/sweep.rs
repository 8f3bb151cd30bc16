//! Filling a timestamp merge's lanes from the store-wide reader, on stores that keep one
//! order over every shard (JetStream). A reader per shard is a consumer filtered by that
//! shard's subject, which nats-server serves slowly where the subject is sparse in the
//! stream (after a scale-up or a scale-down); one reader over the whole stream never skips,
//! and each of its pages feeds every lane whose records it holds.

use std::collections::{BTreeMap, BTreeSet};

use crate::adapter::Adapter;
use crate::consume::lane::{parse_seq, Lane, ReadClock};
use crate::consume::sweep_cache::SweepCache;
use crate::error::{BusError, Result};

/// Records one fill may examine, and may leave buffered, before the lanes it has not
/// filled yet are read on their own: a shard whose next record lies far ahead in the
/// stream would otherwise make the others buffer everything before it.
/// (Small in unit tests, so that they take that way too.)
const SWEEP_LIMIT: usize = if cfg!(test) { 100 } else { 32_768 };
/// Bounds of one store-wide page.
const PAGE_MIN: usize = 512;
const PAGE_MAX: usize = 10_000;

/// Reads the lanes in `which` further, as `Lane::extend` would each (up to about `want`
/// records each; a lane is done once it got a record or was read to the end), starting
/// every round where the furthest-behind of them stopped. Lanes outside `which` take the
/// records of theirs that a page brings when it covers where they stopped. Every page is
/// one read on `clock`. Returns how many records were buffered.
pub async fn fill(
  adapter: &dyn Adapter,
  lanes: &mut [Lane],
  which: &BTreeSet<usize>,
  want: usize,
  clock: &mut ReadClock,
  cache: Option<&SweepCache>,
) -> Result<usize> {
  let by_shard: BTreeMap<u32, usize> = lanes
    .iter()
    .enumerate()
    .map(|(i, l)| (l.shard, i))
    .collect();
  let page_size = want.saturating_mul(lanes.len()).clamp(PAGE_MIN, PAGE_MAX);
  let mut pending = which.clone();
  let (mut buffered, mut examined) = (0, 0);
  while !pending.is_empty() && examined < SWEEP_LIMIT {
    if let Some(cache) = cache {
      if let Some(n) = from_cache(cache, lanes, &mut pending, want, clock)? {
        buffered += n;
        continue;
      }
    }
    let mut from = u64::MAX;
    for &i in &pending {
      from = from.min(lanes[i].read_to_seq()?);
    }
    // Where each lane this page can feed stopped; None: before `from`, not fed.
    let mut upto: Vec<Option<u64>> = lanes
      .iter()
      .map(|l| l.read_to_seq().ok().filter(|&at| at >= from))
      .collect();
    let (started, completed) = (*clock, *clock + 1);
    let after = (from > 0).then(|| from.to_string());
    let page = adapter
      .read_all(after.as_deref(), page_size)
      .await
      .map_err(BusError::from)?;
    *clock = completed;
    let seqs = page
      .events
      .iter()
      .map(|e| parse_seq(&e.position))
      .collect::<Result<Vec<u64>>>()?;
    let next = page.next.as_deref().map(parse_seq).transpose()?;
    let to = next.max(seqs.last().copied());
    if let (Some(cache), Some(to)) = (cache, to) {
      cache.keep(from, to, &seqs, &page.events);
    }
    let mut got = vec![false; lanes.len()];
    for (ev, seq) in page.events.into_iter().zip(seqs) {
      examined += 1;
      let Some(&i) = by_shard.get(&ev.shard) else {
        continue;
      };
      if upto[i].is_some_and(|at| seq > at) {
        upto[i] = Some(seq);
        got[i] = true;
        buffered += 1;
        lanes[i].push_swept(ev, completed);
      }
    }
    let end = !page.has_more;
    for (i, lane) in lanes.iter_mut().enumerate() {
      if upto[i].is_some() {
        lane.swept(to, got[i], end, started);
        if got[i] || end {
          pending.remove(&i);
        }
      }
    }
    let stuck = to.is_none_or(|t| t <= from);
    let held: usize = lanes.iter().map(|l| l.buffer.len()).sum();
    if (stuck && !end) || held >= SWEEP_LIMIT {
      break;
    }
  }
  // What the sweep left is read per shard, all at once.
  let (started, completed) = (*clock, *clock + 1);
  let counts = futures_util::future::try_join_all(
    lanes
      .iter_mut()
      .enumerate()
      .filter(|(i, _)| pending.contains(i))
      .map(|(_, l)| l.extend(adapter, want, started, completed)),
  )
  .await?;
  if !counts.is_empty() {
    *clock = completed;
  }
  Ok(buffered + counts.into_iter().sum::<usize>())
}

/// Gives each pending lane what the cache holds of its shard after where it stopped, as
/// one read on `clock`. How many records it gave, or None where it held nothing for any of
/// them (a lane it answered moved on: one that got no record, to the end of what it holds).
fn from_cache(
  cache: &SweepCache,
  lanes: &mut [Lane],
  pending: &mut BTreeSet<usize>,
  want: usize,
  clock: &mut ReadClock,
) -> Result<Option<usize>> {
  let (started, completed) = (*clock, *clock + 1);
  let mut served = None;
  for i in pending.clone() {
    let lane = &mut lanes[i];
    let Some(slice) = cache.slice(lane.shard, lane.read_to_seq()?, want) else {
      continue;
    };
    let got = !slice.events.is_empty();
    *served.get_or_insert(0) += slice.events.len();
    for ev in slice.events {
      lane.push_swept(ev, completed);
    }
    lane.swept(Some(slice.to), got, false, started);
    if got {
      pending.remove(&i);
    }
  }
  if served.is_some() {
    *clock = completed;
  }
  Ok(served)
}

#[cfg(test)]
mod tests;

//! Consumer-group state of the memory adapter: maps under one lock, leases and members
//! with monotonic deadlines. Letters are bounded per group and tray (oldest dropped).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::adapter::group_store::{
  letter_id, GroupStore, LeaseSeen, Letter, LetterPage, MemberSeen, Signals, Tray, SIGNALS_QUEUED,
};
use crate::adapter::AdapterError;

/// Live members by name (sorted, for ranks) and by expiry (oldest first, so that pruning
/// touches only the expired): each renewal costs O(log n) instead of a sort of everyone.
#[derive(Default)]
struct Members {
  /// Expiry, and the wall-clock time of the last renewal (ms, for inspection).
  by_name: BTreeMap<String, (Instant, u64)>,
  by_expiry: BTreeSet<(Instant, String)>,
}

impl Members {
  fn renew(&mut self, member: &str, until: Instant) {
    let renewed = crate::clock::now_ms();
    if let Some((old, _)) = self.by_name.insert(member.to_string(), (until, renewed)) {
      self.by_expiry.remove(&(old, member.to_string()));
    }
    self.by_expiry.insert((until, member.to_string()));
  }

  fn remove(&mut self, member: &str) {
    if let Some((old, _)) = self.by_name.remove(member) {
      self.by_expiry.remove(&(old, member.to_string()));
    }
  }

  fn prune(&mut self, now: Instant) {
    while let Some((until, _)) = self.by_expiry.first() {
      if *until > now {
        break;
      }
      if let Some((_, name)) = self.by_expiry.pop_first() {
        self.by_name.remove(&name);
      }
    }
  }
}

#[derive(Default)]
struct Group {
  members: Members,
  leases: HashMap<u32, (String, Instant)>,
  commits: HashMap<u32, String>,
  start: Option<String>,
  trays: HashMap<&'static str, BTreeMap<String, Letter>>,
}

pub struct MemoryGroups {
  groups: Mutex<HashMap<String, Group>>,
  /// Each group's watchers; closed ones are dropped at the next signal.
  watchers: Mutex<HashMap<String, Vec<tokio::sync::mpsc::Sender<String>>>>,
  counter: Mutex<u64>,
  max_letters: usize,
}

impl MemoryGroups {
  pub fn new(max_letters: usize) -> Self {
    MemoryGroups {
      groups: Mutex::new(HashMap::new()),
      watchers: Mutex::new(HashMap::new()),
      counter: Mutex::new(0),
      max_letters: max_letters.max(1),
    }
  }

  /// Wall-clock ms of a monotonic deadline.
  fn wall(at: Instant) -> u64 {
    let now = Instant::now();
    let ms = crate::clock::now_ms();
    if at >= now {
      ms + (at - now).as_millis() as u64
    } else {
      ms.saturating_sub((now - at).as_millis() as u64)
    }
  }

  fn with<R>(&self, group: &str, f: impl FnOnce(&mut Group) -> R) -> R {
    let mut groups = self.groups.lock();
    f(groups.entry(group.to_string()).or_default())
  }
}

#[async_trait]
impl GroupStore for MemoryGroups {
  async fn heartbeat(&self, group: &str, member: &str, ttl: Duration) -> Result<(), AdapterError> {
    self.with(group, |g| {
      g.members.renew(member, Instant::now() + ttl);
    });
    Ok(())
  }

  async fn leave(&self, group: &str, member: &str) -> Result<(), AdapterError> {
    self.with(group, |g| g.members.remove(member));
    Ok(())
  }

  async fn members(&self, group: &str) -> Result<Vec<String>, AdapterError> {
    let now = Instant::now();
    Ok(self.with(group, |g| {
      g.members.prune(now);
      g.members.by_name.keys().cloned().collect()
    }))
  }

  async fn rank(&self, group: &str, member: &str) -> Result<Option<(usize, usize)>, AdapterError> {
    let now = Instant::now();
    Ok(self.with(group, |g| {
      g.members.prune(now);
      let m = &g.members.by_name;
      m.contains_key(member).then(|| {
        (
          m.range::<str, _>((
            std::ops::Bound::Unbounded,
            std::ops::Bound::Excluded(member),
          ))
          .count(),
          m.len(),
        )
      })
    }))
  }

  async fn lease(
    &self,
    group: &str,
    shard: u32,
    member: &str,
    ttl: Duration,
  ) -> Result<bool, AdapterError> {
    let now = Instant::now();
    Ok(self.with(group, |g| match g.leases.get(&shard) {
      Some((holder, until)) if holder != member && *until > now => false,
      _ => {
        g.leases.insert(shard, (member.to_string(), now + ttl));
        true
      }
    }))
  }

  async fn release(&self, group: &str, shard: u32, member: &str) -> Result<(), AdapterError> {
    self.with(group, |g| {
      if g.leases.get(&shard).is_some_and(|(h, _)| h == member) {
        g.leases.remove(&shard);
      }
    });
    Ok(())
  }

  async fn committed(&self, group: &str, shard: u32) -> Result<Option<String>, AdapterError> {
    Ok(self.with(group, |g| g.commits.get(&shard).cloned()))
  }

  async fn commit(
    &self,
    group: &str,
    shard: u32,
    member: &str,
    record: &str,
  ) -> Result<bool, AdapterError> {
    let now = Instant::now();
    Ok(self.with(group, |g| {
      let held = g
        .leases
        .get(&shard)
        .is_some_and(|(h, until)| h == member && *until > now);
      if held {
        g.commits.insert(shard, record.to_string());
      }
      held
    }))
  }

  async fn start(&self, group: &str, proposal: &str) -> Result<String, AdapterError> {
    Ok(self.with(group, |g| {
      g.start.get_or_insert_with(|| proposal.to_string()).clone()
    }))
  }

  async fn signal(&self, group: &str, member: &str) {
    if let Some(list) = self.watchers.lock().get_mut(group) {
      list.retain(|tx| !tx.is_closed());
      for tx in list.iter() {
        let _ = tx.try_send(member.to_string());
      }
    }
  }

  async fn watch(&self, group: &str) -> Option<Signals> {
    let (tx, rx) = tokio::sync::mpsc::channel(SIGNALS_QUEUED);
    let mut watchers = self.watchers.lock();
    let list = watchers.entry(group.to_string()).or_default();
    list.retain(|tx| !tx.is_closed());
    list.push(tx);
    Some(rx)
  }

  async fn start_record(&self, group: &str) -> Result<Option<String>, AdapterError> {
    let groups = self.groups.lock();
    Ok(groups.get(group).and_then(|g| g.start.clone()))
  }

  async fn put_letters(
    &self,
    group: &str,
    tray: Tray,
    letters: &[Letter],
  ) -> Result<(), AdapterError> {
    let now = crate::clock::now_ms();
    let mut counter = self.counter.lock();
    self.with(group, |g| {
      let t = g.trays.entry(tray.name()).or_default();
      for l in letters {
        *counter += 1;
        let id = letter_id(now, *counter);
        let mut l = l.clone();
        l.id = id.clone();
        t.insert(id, l);
        if t.len() > self.max_letters {
          t.pop_first();
        }
      }
    });
    Ok(())
  }

  async fn letters(
    &self,
    group: &str,
    tray: Tray,
    after: Option<&str>,
    limit: usize,
  ) -> Result<LetterPage, AdapterError> {
    Ok(self.with(group, |g| {
      let Some(t) = g.trays.get(tray.name()) else {
        return LetterPage::default();
      };
      let range = match after {
        Some(a) => t.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
        None => t.range::<str, _>(..),
      };
      let mut letters: Vec<Letter> = range.take(limit + 1).map(|(_, l)| l.clone()).collect();
      let has_more = letters.len() > limit;
      letters.truncate(limit);
      LetterPage {
        next: letters.last().map(|l| l.id.clone()),
        letters,
        has_more,
      }
    }))
  }

  async fn group_names(&self) -> Result<Vec<String>, AdapterError> {
    let groups = self.groups.lock();
    let mut names: Vec<String> = groups
      .iter()
      .filter(|(_, g)| g.start.is_some())
      .map(|(n, _)| n.clone())
      .collect();
    names.sort();
    Ok(names)
  }

  async fn member_list(&self, group: &str) -> Result<Vec<MemberSeen>, AdapterError> {
    let now = Instant::now();
    Ok(self.with(group, |g| {
      g.members.prune(now);
      g.members
        .by_name
        .iter()
        .map(|(name, (until, renewed))| MemberSeen {
          name: name.clone(),
          renewed_ms: *renewed,
          expires_ms: Self::wall(*until),
        })
        .collect()
    }))
  }

  async fn lease_holder(&self, group: &str, shard: u32) -> Result<Option<LeaseSeen>, AdapterError> {
    let now = Instant::now();
    Ok(self.with(group, |g| {
      g.leases
        .get(&shard)
        .filter(|(_, until)| *until > now)
        .map(|(m, until)| LeaseSeen {
          member: m.clone(),
          until_ms: Self::wall(*until),
        })
    }))
  }

  async fn count_letters(&self, group: &str, tray: Tray) -> Result<u64, AdapterError> {
    Ok(self.with(group, |g| {
      g.trays.get(tray.name()).map_or(0, |t| t.len() as u64)
    }))
  }

  async fn take_letters(
    &self,
    group: &str,
    tray: Tray,
    ids: &[String],
  ) -> Result<Vec<Letter>, AdapterError> {
    Ok(self.with(group, |g| {
      let Some(t) = g.trays.get_mut(tray.name()) else {
        return Vec::new();
      };
      ids.iter().filter_map(|id| t.remove(id)).collect()
    }))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[tokio::test]
  async fn ranks_follow_name_order_and_expiry() {
    let store = MemoryGroups::new(10);
    let long = Duration::from_secs(60);
    for m in ["c", "a", "b"] {
      store.heartbeat("g", m, long).await.unwrap();
    }
    assert_eq!(store.rank("g", "a").await.unwrap(), Some((0, 3)));
    assert_eq!(store.rank("g", "c").await.unwrap(), Some((2, 3)));
    assert_eq!(store.rank("g", "d").await.unwrap(), None);
    // A renewal moves the expiry, not the rank; a short one lapses and drops out.
    store
      .heartbeat("g", "b", Duration::from_millis(1))
      .await
      .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(store.rank("g", "b").await.unwrap(), None);
    assert_eq!(store.rank("g", "c").await.unwrap(), Some((1, 2)));
    assert_eq!(store.members("g").await.unwrap(), vec!["a", "c"]);
    store.heartbeat("g", "b", long).await.unwrap();
    store.leave("g", "a").await.unwrap();
    assert_eq!(store.rank("g", "b").await.unwrap(), Some((0, 2)));
    assert_eq!(store.members("g").await.unwrap(), vec!["b", "c"]);
  }
}

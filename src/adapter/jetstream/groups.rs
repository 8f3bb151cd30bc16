//! Consumer-group state in a JetStream key-value bucket beside the stream
//! (`rbg_<stream>`, same storage and replicas, one value per key). Works on nats-server
//! 2.9: no per-key TTL is needed, because leases and memberships carry their expiry
//! (wall-clock ms) and change only by compare-and-set on the key's revision.
//!
//! - `members.<group>`: `member expiry` lines, and `~member renewed` lines for inspection
//!   (older versions read those as long-expired members and skip them);
//! - `lease.<group>.<shard>`: `member expiry`;
//! - `commit.<group>.<shard>`: the commit record (written after checking the lease);
//! - `start.<group>`: the start record, created once;
//! - `dead.<group>.<id>`, `back.<group>.<id>`: letters (`letters.rs`).
//!
//! Signals between members go over core NATS (`signals.rs`).

use std::collections::HashMap;
use std::time::Duration;

use std::sync::Arc;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, StorageType};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;

use super::JetStreamAdapter;
use crate::adapter::group_store::{
  GroupStore, LeaseSeen, Letter, LetterPage, MemberSeen, Signals, Tray,
};
use crate::adapter::AdapterError;
use crate::clock::now_ms;

/// Compare-and-set attempts on a contended key before giving up for this round.
const CAS_ATTEMPTS: usize = 5;

fn bucket_name(stream: &str) -> String {
  format!("rbg_{stream}")
}

/// `member expiry` → (member, expiry ms).
fn holder(value: &[u8]) -> Option<(String, u64)> {
  let text = std::str::from_utf8(value).ok()?;
  let (m, exp) = text.split_once(' ')?;
  Some((m.to_string(), exp.parse().ok()?))
}

/// The member list's text: live `(member, expiry)` pairs and each one's last renewal.
fn member_lines(text: &str, now: u64) -> (Vec<(String, u64)>, HashMap<String, u64>) {
  let mut live = Vec::new();
  let mut renewed = HashMap::new();
  for (m, t) in text.lines().filter_map(|l| holder(l.as_bytes())) {
    match m.strip_prefix('~') {
      Some(name) => {
        renewed.insert(name.to_string(), t);
      }
      None if t > now => live.push((m, t)),
      None => {}
    }
  }
  (live, renewed)
}

pub(super) fn live(entry: &kv::Entry) -> bool {
  matches!(entry.operation, kv::Operation::Put) && !entry.value.is_empty()
}

impl JetStreamAdapter {
  pub(super) fn kv_err(&self, what: &str, e: impl std::fmt::Display) -> AdapterError {
    let text = e.to_string();
    // The bucket is gone (deleted, or a server restarted without its storage): open or
    // create it again at the next use, so members write their leases and commits again
    // instead of failing until they give their shards up.
    if text.contains("stream not found") || text.contains("no responders") {
      self.groups_kv.store(None);
    }
    AdapterError::retryable(super::scrub(
      &self.secrets,
      format!("JetStream group state ({what}) failed: {text}"),
    ))
  }

  /// The bucket, opened (or created) on first use and again after it was lost.
  pub(super) async fn bucket(&self) -> Result<Arc<kv::Store>, AdapterError> {
    if let Some(kv) = self.groups_kv.load_full() {
      return Ok(kv);
    }
    // One opener at a time; the others find its result.
    let _opening = self.groups_kv_open.lock().await;
    if let Some(kv) = self.groups_kv.load_full() {
      return Ok(kv);
    }
    let kv = Arc::new(self.open_bucket().await?);
    self.groups_kv.store(Some(kv.clone()));
    Ok(kv)
  }

  /// The groups with a start record in the bucket.
  async fn list_groups(&self) -> Result<Vec<String>, AdapterError> {
    let kv = self.bucket().await?;
    let prefix = format!("{}start.", kv.prefix);
    let info = kv
      .stream
      .clone()
      .info_with_subjects(format!("{prefix}*"))
      .await
      .map_err(|e| self.kv_err("group list", e))?;
    let mut names = Vec::new();
    let mut subjects = info;
    while let Some(next) = subjects.next().await {
      let (subject, _) = next.map_err(|e| self.kv_err("group list", e))?;
      if let Some(name) = subject.strip_prefix(&prefix) {
        names.push(name.to_string());
      }
    }
    names.sort();
    Ok(names)
  }

  async fn open_bucket(&self) -> Result<kv::Store, AdapterError> {
    let name = bucket_name(&self.config.stream);
    if let Ok(store) = self.js.get_key_value(&name).await {
      return Ok(store);
    }
    let storage = match self.config.storage {
      super::StorageKind::File => StorageType::File,
      super::StorageKind::Memory => StorageType::Memory,
    };
    // The stream a KV bucket is, made directly: async-nats's `create_key_value` first
    // asks for account limits in a form nats-server 2.9 does not answer.
    let config = stream::Config {
      name: format!("KV_{name}"),
      description: Some("ringbus consumer groups".into()),
      subjects: vec![format!("$KV.{name}.>")],
      max_messages_per_subject: 1,
      storage,
      num_replicas: self.config.replicas.max(1),
      allow_rollup: true,
      deny_delete: true,
      allow_direct: true,
      discard: stream::DiscardPolicy::New,
      ..Default::default()
    };
    let subject = config.subjects[0].clone();
    let mut existing = self
      .js
      .get_or_create_stream(config)
      .await
      .map_err(|e| self.kv_err("bucket creation", e))?;
    // A stream of that name that is not our bucket (a user's own stream named
    // `KV_rbg_<stream>`): say so, rather than pass on async-nats's "invalid name".
    let info = existing
      .info()
      .await
      .map_err(|e| self.kv_err("bucket check", e))?;
    if !info.config.subjects.contains(&subject) {
      return Err(AdapterError {
        code: crate::error::Code::InvalidConfig,
        retryable: false,
        message: format!(
          "consumer groups of stream {:?} keep their state in the stream KV_{name}, but a stream of that name already exists and is not a ringbus group bucket (its subjects are {:?}); rename or delete that stream, or use another stream name",
          self.config.stream, info.config.subjects
        ),
      });
    }
    self
      .js
      .get_key_value(&name)
      .await
      .map_err(|e| self.kv_err("bucket open", e))
  }

  /// The key's latest entry, deleted or emptied ones included: their revision is what a
  /// compare-and-set must name.
  async fn entry(&self, key: &str) -> Result<Option<kv::Entry>, AdapterError> {
    let kv = self.bucket().await?;
    kv.entry(key).await.map_err(|e| self.kv_err("read", e))
  }

  /// Sets `key` to `value` if its revision is still `rev` (None: the key must not exist).
  /// False when another writer got there first.
  async fn cas(&self, key: &str, value: String, rev: Option<u64>) -> Result<bool, AdapterError> {
    let kv = self.bucket().await?;
    let value = Bytes::from(value);
    match rev {
      Some(r) => match kv.update(key, value, r).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
        Err(e) => Err(self.kv_err("update", e)),
      },
      None => match kv.create(key, value).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(self.kv_err("create", e)),
      },
    }
  }

  /// Rewrites the member list with `change` applied (expired members pruned).
  async fn change_members(
    &self,
    group: &str,
    change: impl Fn(&mut Vec<(String, u64)>),
  ) -> Result<Vec<String>, AdapterError> {
    let key = format!("members.{group}");
    for _ in 0..CAS_ATTEMPTS {
      let entry = self.entry(&key).await?;
      let now = now_ms();
      let (mut list, mut renewed) = entry
        .as_ref()
        .filter(|e| live(e))
        .map(|e| member_lines(&String::from_utf8_lossy(&e.value), now))
        .unwrap_or_default();
      let before: HashMap<String, u64> = list.iter().cloned().collect();
      change(&mut list);
      // A changed expiry is a renewal.
      for (m, exp) in &list {
        if before.get(m) != Some(exp) {
          renewed.insert(m.clone(), now);
        }
      }
      let mut text: Vec<String> = list.iter().map(|(m, e)| format!("{m} {e}")).collect();
      text.extend(
        list
          .iter()
          .filter_map(|(m, _)| renewed.get(m).map(|t| format!("~{m} {t}"))),
      );
      if self
        .cas(&key, text.join("\n"), entry.map(|e| e.revision))
        .await?
      {
        let mut names: Vec<String> = list.into_iter().map(|(m, _)| m).collect();
        names.sort();
        return Ok(names);
      }
    }
    Err(AdapterError::retryable(format!(
      "JetStream group state: the member list of {group:?} kept changing; trying again"
    )))
  }
}

#[async_trait]
impl GroupStore for JetStreamAdapter {
  async fn heartbeat(&self, group: &str, member: &str, ttl: Duration) -> Result<(), AdapterError> {
    let until = now_ms() + ttl.as_millis() as u64;
    self
      .change_members(group, |list| {
        list.retain(|(m, _)| m != member);
        list.push((member.to_string(), until));
      })
      .await
      .map(|_| ())
  }

  async fn leave(&self, group: &str, member: &str) -> Result<(), AdapterError> {
    self
      .change_members(group, |list| list.retain(|(m, _)| m != member))
      .await
      .map(|_| ())
  }

  async fn members(&self, group: &str) -> Result<Vec<String>, AdapterError> {
    let key = format!("members.{group}");
    let now = now_ms();
    let Some(entry) = self.entry(&key).await?.filter(live) else {
      return Ok(Vec::new());
    };
    let mut names: Vec<String> = String::from_utf8_lossy(&entry.value)
      .lines()
      .filter_map(|l| holder(l.as_bytes()))
      .filter(|(_, exp)| *exp > now)
      .map(|(m, _)| m)
      .collect();
    names.sort();
    Ok(names)
  }

  async fn group_names(&self) -> Result<Vec<String>, AdapterError> {
    match self.list_groups().await {
      // The bucket was lost since it was opened: kv_err dropped it, so this opens it again.
      Err(e) if e.message.contains("stream not found") => self.list_groups().await,
      other => other,
    }
  }

  async fn member_list(&self, group: &str) -> Result<Vec<MemberSeen>, AdapterError> {
    let Some(entry) = self.entry(&format!("members.{group}")).await?.filter(live) else {
      return Ok(Vec::new());
    };
    let (list, renewed) = member_lines(&String::from_utf8_lossy(&entry.value), now_ms());
    let mut out: Vec<MemberSeen> = list
      .into_iter()
      .map(|(name, expires_ms)| MemberSeen {
        renewed_ms: renewed.get(&name).copied().unwrap_or(0),
        name,
        expires_ms,
      })
      .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
  }

  async fn lease_holder(&self, group: &str, shard: u32) -> Result<Option<LeaseSeen>, AdapterError> {
    let entry = self.entry(&format!("lease.{group}.{shard}")).await?;
    Ok(
      entry
        .filter(live)
        .and_then(|e| holder(&e.value))
        .filter(|(_, until)| *until > now_ms())
        .map(|(member, until_ms)| LeaseSeen { member, until_ms }),
    )
  }

  async fn count_letters(&self, group: &str, tray: Tray) -> Result<u64, AdapterError> {
    self.letters_count(group, tray).await
  }

  async fn lease(
    &self,
    group: &str,
    shard: u32,
    member: &str,
    ttl: Duration,
  ) -> Result<bool, AdapterError> {
    let key = format!("lease.{group}.{shard}");
    let entry = self.entry(&key).await?;
    let free = match entry.as_ref().filter(|e| live(e)) {
      None => true,
      Some(e) => holder(&e.value).is_none_or(|(m, exp)| m == member || exp <= now_ms()),
    };
    if !free {
      return Ok(false);
    }
    let value = format!("{member} {}", now_ms() + ttl.as_millis() as u64);
    self.cas(&key, value, entry.map(|e| e.revision)).await
  }

  async fn release(&self, group: &str, shard: u32, member: &str) -> Result<(), AdapterError> {
    let key = format!("lease.{group}.{shard}");
    let Some(entry) = self.entry(&key).await?.filter(live) else {
      return Ok(());
    };
    if holder(&entry.value).is_some_and(|(m, _)| m == member) {
      // An empty value is a free lease; losing the race means someone else holds it now.
      self.cas(&key, String::new(), Some(entry.revision)).await?;
    }
    Ok(())
  }

  async fn committed(&self, group: &str, shard: u32) -> Result<Option<String>, AdapterError> {
    let entry = self.entry(&format!("commit.{group}.{shard}")).await?;
    Ok(
      entry
        .filter(live)
        .map(|e| String::from_utf8_lossy(&e.value).into_owned()),
    )
  }

  async fn commit(
    &self,
    group: &str,
    shard: u32,
    member: &str,
    record: &str,
  ) -> Result<bool, AdapterError> {
    // Checked, then written: the lease outlives this by far more than the two requests.
    let lease = self.entry(&format!("lease.{group}.{shard}")).await?;
    let held = lease
      .filter(live)
      .and_then(|e| holder(&e.value))
      .is_some_and(|(m, exp)| m == member && exp > now_ms());
    if !held {
      return Ok(false);
    }
    let kv = self.bucket().await?;
    kv.put(
      format!("commit.{group}.{shard}"),
      Bytes::from(record.to_string()),
    )
    .await
    .map_err(|e| self.kv_err("commit", e))?;
    Ok(true)
  }

  async fn start(&self, group: &str, proposal: &str) -> Result<String, AdapterError> {
    let key = format!("start.{group}");
    if self.cas(&key, proposal.to_string(), None).await? {
      return Ok(proposal.to_string());
    }
    Ok(
      self
        .entry(&key)
        .await?
        .filter(live)
        .map(|e| String::from_utf8_lossy(&e.value).into_owned())
        .unwrap_or_else(|| proposal.to_string()),
    )
  }

  async fn signal(&self, group: &str, member: &str) {
    let subject = super::signals::subject(&self.config.stream, group);
    let _ = self
      .client
      .publish(subject, Bytes::from(member.to_string()))
      .await;
  }

  async fn watch(&self, group: &str) -> Option<Signals> {
    let subject = super::signals::subject(&self.config.stream, group);
    super::signals::watch(&self.client, subject).await
  }

  async fn start_record(&self, group: &str) -> Result<Option<String>, AdapterError> {
    let entry = self.entry(&format!("start.{group}")).await?;
    Ok(
      entry
        .filter(live)
        .map(|e| String::from_utf8_lossy(&e.value).into_owned()),
    )
  }

  async fn put_letters(
    &self,
    group: &str,
    tray: Tray,
    letters: &[Letter],
  ) -> Result<(), AdapterError> {
    self.letters_put(group, tray, letters).await
  }

  async fn letters(
    &self,
    group: &str,
    tray: Tray,
    after: Option<&str>,
    limit: usize,
  ) -> Result<LetterPage, AdapterError> {
    self.letters_page(group, tray, after, limit).await
  }

  async fn take_letters(
    &self,
    group: &str,
    tray: Tray,
    ids: &[String],
  ) -> Result<Vec<Letter>, AdapterError> {
    self.letters_take(group, tray, ids).await
  }
}

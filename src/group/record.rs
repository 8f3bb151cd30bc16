//! The commit record of one shard of a group, and the group's start record.
//!
//! Commit record: `v1|<watermark>|<acked ids>|<id:deliveries,...>`. Everything at or before
//! the watermark position is acked or dead-lettered. Acked ids are events past the
//! watermark acked out of order (a new owner skips them), and the counts are deliveries of
//! events delivered but not acked (a new owner continues counting toward
//! `maxDeliveries`). Ids never contain `|`, `,` or `:` (memory `3-17`, JetStream sequence
//! numbers, Redis entry ids).

use std::collections::{HashMap, HashSet};

use crate::consume::cursor::Cursor;

/// Entries kept in each list of a commit record. Past it, acked ids may be delivered again
/// after a hand-over, and counts restart: at least once still holds.
pub const MAX_LISTED: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitRecord {
  pub watermark: Option<String>,
  pub acked: HashSet<String>,
  pub counts: HashMap<String, u32>,
}

impl CommitRecord {
  pub fn encode(&self) -> String {
    let mut acked: Vec<&String> = self.acked.iter().take(MAX_LISTED).collect();
    acked.sort();
    let mut counts: Vec<(&String, &u32)> = self.counts.iter().take(MAX_LISTED).collect();
    counts.sort();
    let counts: Vec<String> = counts.iter().map(|(id, n)| format!("{id}:{n}")).collect();
    format!(
      "v1|{}|{}|{}",
      self.watermark.as_deref().unwrap_or(""),
      acked
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(","),
      counts.join(",")
    )
  }

  /// None for text that is not a commit record (a newer format, corruption).
  pub fn decode(text: &str) -> Option<CommitRecord> {
    let mut parts = text.split('|');
    if parts.next()? != "v1" {
      return None;
    }
    let watermark = parts.next()?;
    let acked = parts.next()?;
    let counts = parts.next()?;
    if parts.next().is_some() {
      return None;
    }
    let mut record = CommitRecord {
      watermark: (!watermark.is_empty()).then(|| watermark.to_string()),
      ..Default::default()
    };
    for id in acked.split(',').filter(|s| !s.is_empty()) {
      record.acked.insert(id.to_string());
    }
    for pair in counts.split(',').filter(|s| !s.is_empty()) {
      let (id, n) = pair.rsplit_once(':')?;
      record.counts.insert(id.to_string(), n.parse().ok()?);
    }
    Some(record)
  }
}

/// Where a new group starts: every shard's beginning, or the end of every shard when the
/// group was created (`from: 'latest'`; shards without a position start at their
/// beginning, or at the floor in stores with one order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartRecord {
  Earliest,
  Latest(Cursor),
}

const CURSOR_SCOPE: &str = "group-start";

impl StartRecord {
  pub fn encode(&self) -> String {
    match self {
      StartRecord::Earliest => "earliest".into(),
      StartRecord::Latest(c) => format!("latest {}", c.encode(CURSOR_SCOPE)),
    }
  }

  /// Unreadable records mean earliest: at least once over skipping events.
  pub fn decode(text: &str) -> StartRecord {
    match text.strip_prefix("latest ") {
      Some(c) => match Cursor::decode(c, CURSOR_SCOPE) {
        Ok(c) => StartRecord::Latest(c),
        Err(_) => StartRecord::Earliest,
      },
      None => StartRecord::Earliest,
    }
  }

  /// Where `shard` starts when it has no commit record.
  pub fn position(&self, shard: u32) -> Option<String> {
    match self {
      StartRecord::Earliest => None,
      StartRecord::Latest(c) => c.position(shard).cloned(),
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn commit_records_round_trip() {
    let mut r = CommitRecord {
      watermark: Some("1700000000000-3".into()),
      ..Default::default()
    };
    r.acked.insert("1700000000000-5".into());
    r.acked.insert("1700000000000-7".into());
    r.counts.insert("1700000000000-4".into(), 3);
    let text = r.encode();
    assert_eq!(
      text,
      "v1|1700000000000-3|1700000000000-5,1700000000000-7|1700000000000-4:3"
    );
    assert_eq!(CommitRecord::decode(&text), Some(r));
    assert_eq!(CommitRecord::decode("v1|||"), Some(CommitRecord::default()));
    for bad in ["", "v2|1||", "v1|1|", "v1|1||x:y", "v1|1|||"] {
      assert_eq!(CommitRecord::decode(bad), None, "{bad}");
    }
  }

  #[test]
  fn commit_records_list_a_bounded_number_of_ids() {
    let mut r = CommitRecord::default();
    for i in 0..5000 {
      r.acked.insert(i.to_string());
      r.counts.insert(format!("c{i}"), 1);
    }
    let back = CommitRecord::decode(&r.encode()).unwrap();
    assert_eq!(back.acked.len(), MAX_LISTED);
    assert_eq!(back.counts.len(), MAX_LISTED);
  }

  #[test]
  fn start_records_name_positions() {
    let mut c = Cursor::default();
    c.positions.insert(2, "40".into());
    c.floor = Some("9".into());
    let s = StartRecord::Latest(c);
    let back = StartRecord::decode(&s.encode());
    assert_eq!(back, s);
    assert_eq!(back.position(2).as_deref(), Some("40"));
    assert_eq!(back.position(5).as_deref(), Some("9"));
    assert_eq!(StartRecord::decode("earliest").position(2), None);
    assert_eq!(StartRecord::decode("latest garbage"), StartRecord::Earliest);
  }
}

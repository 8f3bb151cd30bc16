//! Where a read starts: the earliest record, the end (`'latest'`), a cursor, or a point
//! in time (`{ time }`: the first record stored at or after it). Used by `poll({ from })`,
//! `subscribe({ from })` and a new group's `from`.

use serde_json::Value;

use super::cursor::{latest, Cursor};
use super::filter::type_name;
use crate::adapter::Adapter;
use crate::error::{BusError, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum StartAt {
  Earliest,
  Latest,
  Cursor(Cursor),
  /// Milliseconds since the Unix epoch.
  Time(u64),
}

impl StartAt {
  /// The `from` option of a read: `'earliest'` (default), `'latest'`, a cursor of the store
  /// named by `scope`, or `{ time }` (a `Date`, which arrives as its ISO text, or ms since
  /// the epoch). `what` names the option in errors.
  pub fn parse(from: Option<&Value>, scope: &str, what: &str) -> Result<StartAt> {
    match from {
      None | Some(Value::Null) => Ok(StartAt::Earliest),
      Some(Value::String(s)) => StartAt::parse_text(Some(s), scope),
      Some(Value::Object(o)) => match (o.get("time"), o.len()) {
        (Some(t), 1) => Ok(StartAt::Time(parse_time(t, &format!("{what}.time"))?)),
        _ => Err(BusError::config(format!(
          "{what} must be 'earliest', 'latest', a cursor or {{ time }}; got an object with keys {:?}",
          o.keys().collect::<Vec<_>>()
        ))),
      },
      Some(other) => Err(BusError::config(format!(
        "{what} must be 'earliest', 'latest', a cursor or {{ time }}, got {}",
        type_name(other)
      ))),
    }
  }

  /// The `from` option as text: `'earliest'` (default), `'latest'`, or a cursor.
  pub fn parse_text(from: Option<&str>, scope: &str) -> Result<StartAt> {
    Ok(match from {
      None | Some("earliest") => StartAt::Earliest,
      Some("latest") => StartAt::Latest,
      Some(c) => StartAt::Cursor(Cursor::decode(c, scope)?),
    })
  }
}

/// The latest time a start may name: 9999-12-31T23:59:59.999Z.
const MAX_TIME_MS: u64 = 253_402_300_799_999;

/// A point in time: ms since the Unix epoch (a number), or RFC 3339 text such as
/// `Date.toJSON()` gives (`2026-12-03T18:00:00.000Z`, or with an offset `+01:00`).
pub fn parse_time(v: &Value, what: &str) -> Result<u64> {
  let ms = match v {
    Value::Number(n) => n
      .as_f64()
      .filter(|f| f.is_finite() && *f >= 0.0)
      .map(|f| f as u64),
    Value::String(s) => rfc3339_ms(s),
    _ => None,
  };
  ms.filter(|ms| *ms <= MAX_TIME_MS).ok_or_else(|| {
    BusError::config(format!(
      "{what} must be a Date, milliseconds since the epoch (0 or more) or an ISO 8601 time like 2026-12-03T18:00:00Z; got {}",
      match v {
        Value::String(s) => format!("{:?}", s.chars().take(64).collect::<String>()),
        other => type_name(other).to_string(),
      }
    ))
  })
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as ms since the epoch.
fn rfc3339_ms(s: &str) -> Option<u64> {
  let b = s.as_bytes();
  let num = |r: std::ops::Range<usize>| -> Option<i64> {
    let t = s.get(r)?;
    t.bytes()
      .all(|c| c.is_ascii_digit())
      .then(|| t.parse().ok())?
  };
  if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
    return None;
  }
  if b[13] != b':' || b[16] != b':' {
    return None;
  }
  let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
  let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
  if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60 {
    return None;
  }
  let mut i = 19;
  let mut ms = 0i64;
  if b.get(i) == Some(&b'.') {
    let start = i + 1;
    i = start;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
      i += 1;
    }
    let digits = s.get(start..i)?;
    if digits.is_empty() {
      return None;
    }
    ms = format!("{:0<3}", &digits[..digits.len().min(3)])
      .parse()
      .ok()?;
  }
  let offset_min = match s.get(i..)? {
    "Z" | "z" => 0,
    o if o.len() == 6 && matches!(&o[..1], "+" | "-") && &o[3..4] == ":" => {
      let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
      if oh > 23 || om > 59 {
        return None;
      }
      let m = oh * 60 + om;
      if o.starts_with('-') {
        -m
      } else {
        m
      }
    }
    _ => return None,
  };
  let days = days_from_civil(y, mo, d);
  let secs = days * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset_min * 60;
  let total = secs.checked_mul(1000)?.checked_add(ms)?;
  u64::try_from(total).ok()
}

fn days_in_month(y: i64, m: i64) -> i64 {
  match m {
    2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
    2 => 28,
    4 | 6 | 9 | 11 => 30,
    _ => 31,
  }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
  let y = if m <= 2 { y - 1 } else { y };
  let era = y.div_euclid(400);
  let yoe = y - era * 400;
  let mp = (m + 9) % 12;
  let doy = (153 * mp + 2) / 5 + d - 1;
  let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  era * 146_097 + doe - 719_468
}

/// The cursor a read from `start` begins at, over `shards`.
pub async fn start_cursor(
  adapter: &dyn Adapter,
  shards: &[u32],
  start: &StartAt,
) -> Result<Cursor> {
  Ok(match start {
    StartAt::Earliest => Cursor::default(),
    StartAt::Cursor(c) => c.clone(),
    StartAt::Latest => latest(adapter.total_order(), adapter.end_positions(shards).await?),
    StartAt::Time(t) => latest(
      adapter.total_order(),
      adapter.positions_at(shards, *t).await?,
    ),
  })
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::error::Code;
  use serde_json::json;

  #[test]
  fn times_parse_from_numbers_and_iso_text() {
    let t = |v: Value| parse_time(&v, "from.time");
    assert_eq!(t(json!(0)).unwrap(), 0);
    assert_eq!(t(json!(1_764_784_800_123u64)).unwrap(), 1_764_784_800_123);
    assert_eq!(t(json!("1970-01-01T00:00:00Z")).unwrap(), 0);
    assert_eq!(
      t(json!("2026-12-03T18:00:00.123Z")).unwrap(),
      1_796_320_800_123
    );
    assert_eq!(
      t(json!("2026-12-03T19:00:00.123+01:00")).unwrap(),
      1_796_320_800_123
    );
    assert_eq!(
      t(json!("2026-12-03T17:30:00.1234567-00:30")).unwrap(),
      1_796_320_800_123
    );
    assert_eq!(t(json!("2024-02-29T00:00:00Z")).unwrap(), 1_709_164_800_000);
    for bad in [
      json!(-1),
      json!("yesterday"),
      json!("2026-02-30T00:00:00Z"),
      json!("2026-12-03T18:00:00"),
      json!("2026-12-03T24:00:00Z"),
      json!("2026-12-03T18:00:00.Z"),
      json!(true),
      json!("10000-01-01T00:00:00Z"),
    ] {
      let e = t(bad.clone()).unwrap_err();
      assert_eq!(e.code, Code::InvalidConfig, "{bad}");
      assert!(
        e.message.starts_with("from.time must be a Date"),
        "{}",
        e.message
      );
    }
  }

  #[test]
  fn from_takes_names_cursors_and_times() {
    let p = |v: Value| StartAt::parse(Some(&v), "memory", "from");
    assert_eq!(p(json!("latest")).unwrap(), StartAt::Latest);
    assert_eq!(
      StartAt::parse(None, "memory", "from").unwrap(),
      StartAt::Earliest
    );
    assert_eq!(p(json!({ "time": 5 })).unwrap(), StartAt::Time(5));
    let c = Cursor::default().encode("memory");
    assert!(matches!(p(json!(c)).unwrap(), StartAt::Cursor(_)));
    assert_eq!(p(json!("junk")).unwrap_err().code, Code::InvalidCursor);
    let e = p(json!({ "time": 5, "x": 1 })).unwrap_err();
    assert!(e.message.contains("{ time }"), "{}", e.message);
    assert_eq!(p(json!(7)).unwrap_err().code, Code::InvalidConfig);
  }
}

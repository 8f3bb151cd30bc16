//! A Mongo-like filter language evaluated on JSON events.
//!
//! `{ field: value }` is equality (an array field matches when any element equals);
//! `{ field: { $op: operand, ... } }` applies operators; dotted paths reach into objects
//! and arrays (`items.0.sku`). Top level: `$and`, `$or` (non-empty arrays), `$not` (a
//! filter). Field operators: `$eq $ne $gt $gte $lt $lte $in $nin $exists $not`.
//! Numbers compare numerically (1 == 1.0); ordering operators compare numbers with
//! numbers and strings with strings, anything else does not match. Events that are not
//! JSON (ingested as bytes) never match a filter.

use std::cmp::Ordering;
use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::error::{BusError, Code, Result};
use crate::event::{PayloadKind, StoredEvent};

pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
  All(Vec<Filter>),
  And(Vec<Filter>),
  Or(Vec<Filter>),
  Not(Box<Filter>),
  Field { path: Vec<String>, cond: Cond },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
  Eq(Value),
  Ne(Value),
  Gt(Value),
  Gte(Value),
  Lt(Value),
  Lte(Value),
  In(ValueSet),
  Nin(ValueSet),
  Exists(bool),
  Not(Box<Cond>),
  All(Vec<Cond>),
}

fn err(path: &str, msg: impl std::fmt::Display) -> BusError {
  BusError::new(Code::InvalidFilter, format!("{path}: {msg}"))
}

fn check_depth(path: &str, depth: usize) -> Result<()> {
  if depth > MAX_DEPTH {
    return Err(err(
      path,
      format!("filter nests deeper than {MAX_DEPTH} levels; flatten it"),
    ));
  }
  Ok(())
}

impl Filter {
  /// Parses a filter document; errors name the offending path, e.g. `filter.a.$gt`.
  pub fn parse(value: &Value) -> Result<Filter> {
    parse_doc(value, "filter", 1)
  }

  /// Whether a JSON document matches.
  pub fn matches(&self, doc: &Value) -> bool {
    match self {
      Filter::All(fs) | Filter::And(fs) => fs.iter().all(|f| f.matches(doc)),
      Filter::Or(fs) => fs.iter().any(|f| f.matches(doc)),
      Filter::Not(f) => !f.matches(doc),
      Filter::Field { path, cond } => cond.eval(resolve(doc, path)),
    }
  }

  /// Whether a stored event matches: only JSON payloads can.
  pub fn matches_event(&self, ev: &StoredEvent) -> bool {
    ev.kind == PayloadKind::Json && self.matches_json(&ev.payload)
  }

  /// Whether a raw JSON payload matches; text that is not JSON never matches.
  pub fn matches_json(&self, raw: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(raw) {
      Ok(doc) => self.matches(&doc),
      Err(_) => false,
    }
  }
}

fn parse_doc(value: &Value, path: &str, depth: usize) -> Result<Filter> {
  check_depth(path, depth)?;
  let Value::Object(map) = value else {
    return Err(err(
      path,
      format!("expected an object, got {}", type_name(value)),
    ));
  };
  let mut parts = Vec::with_capacity(map.len());
  for (k, v) in map {
    let sub = format!("{path}.{k}");
    if let Some(op) = k.strip_prefix('$') {
      match op {
        "and" | "or" => {
          let Value::Array(items) = v else {
            return Err(err(&sub, "expected a non-empty array of filters"));
          };
          if items.is_empty() {
            return Err(err(&sub, "expected a non-empty array of filters"));
          }
          let fs = items
            .iter()
            .enumerate()
            .map(|(i, f)| parse_doc(f, &format!("{sub}[{i}]"), depth + 1))
            .collect::<Result<Vec<_>>>()?;
          parts.push(if op == "and" {
            Filter::And(fs)
          } else {
            Filter::Or(fs)
          });
        }
        "not" => parts.push(Filter::Not(Box::new(parse_doc(v, &sub, depth + 1)?))),
        _ => {
          return Err(err(
            &sub,
            format!("unknown operator ${op}; top-level operators are $and, $or, $not"),
          ))
        }
      }
    } else {
      if k.is_empty() {
        return Err(err(&sub, "empty field name"));
      }
      parts.push(Filter::Field {
        path: k.split('.').map(str::to_owned).collect(),
        cond: parse_cond(v, &sub, depth + 1)?,
      });
    }
  }
  Ok(if parts.len() == 1 {
    parts.pop().expect("one part")
  } else {
    Filter::All(parts)
  })
}

fn is_operator_object(map: &Map<String, Value>, path: &str) -> Result<bool> {
  let ops = map.keys().filter(|k| k.starts_with('$')).count();
  if ops > 0 && ops < map.len() {
    return Err(err(
      path,
      "mixes $operators with field names; use one or the other",
    ));
  }
  Ok(ops > 0)
}

fn parse_cond(value: &Value, path: &str, depth: usize) -> Result<Cond> {
  // Levels are objects and arrays; a scalar operand adds none.
  if value.is_object() || value.is_array() {
    check_depth(path, depth)?;
  }
  if let Value::Object(map) = value {
    if is_operator_object(map, path)? {
      return parse_ops(map, path, depth);
    }
  }
  check_value_depth(value, path, depth)?;
  Ok(Cond::Eq(value.clone()))
}

fn check_value_depth(value: &Value, path: &str, depth: usize) -> Result<()> {
  match value {
    Value::Array(a) => {
      check_depth(path, depth)?;
      a.iter()
        .try_for_each(|v| check_value_depth(v, path, depth + 1))
    }
    Value::Object(m) => {
      check_depth(path, depth)?;
      m.values()
        .try_for_each(|v| check_value_depth(v, path, depth + 1))
    }
    _ => Ok(()),
  }
}

fn parse_ops(map: &Map<String, Value>, path: &str, depth: usize) -> Result<Cond> {
  let mut conds = Vec::with_capacity(map.len());
  for (k, v) in map {
    let sub = format!("{path}.{k}");
    let list = |v: &Value| -> Result<Vec<Value>> {
      match v {
        Value::Array(items) => {
          check_value_depth(v, &sub, depth + 1)?;
          Ok(items.clone())
        }
        other => Err(err(
          &sub,
          format!("expected an array, got {}", type_name(other)),
        )),
      }
    };
    let scalar = |v: &Value| -> Result<Value> {
      check_value_depth(v, &sub, depth + 1)?;
      Ok(v.clone())
    };
    conds.push(match k.as_str() {
      "$eq" => Cond::Eq(scalar(v)?),
      "$ne" => Cond::Ne(scalar(v)?),
      "$gt" => Cond::Gt(scalar(v)?),
      "$gte" => Cond::Gte(scalar(v)?),
      "$lt" => Cond::Lt(scalar(v)?),
      "$lte" => Cond::Lte(scalar(v)?),
      "$in" => Cond::In(ValueSet::new(list(v)?)),
      "$nin" => Cond::Nin(ValueSet::new(list(v)?)),
      "$exists" => match v {
        Value::Bool(b) => Cond::Exists(*b),
        other => {
          return Err(err(
            &sub,
            format!("expected true or false, got {}", type_name(other)),
          ))
        }
      },
      "$not" => match v {
        Value::Object(m) if is_operator_object(m, &sub)? => {
          Cond::Not(Box::new(parse_ops(m, &sub, depth + 1)?))
        }
        _ => {
          return Err(err(
            &sub,
            "expected an object of operators, e.g. { $gt: 5 }",
          ))
        }
      },
      other => {
        return Err(err(
          &sub,
          format!(
            "unknown operator {other}; supported: $eq $ne $gt $gte $lt $lte $in $nin $exists $not"
          ),
        ))
      }
    });
  }
  Ok(if conds.len() == 1 {
    conds.pop().expect("one cond")
  } else {
    Cond::All(conds)
  })
}

/// How a JSON value's type reads in an error ("a number", "null").
pub(crate) fn type_name(v: &Value) -> &'static str {
  match v {
    Value::Null => "null",
    Value::Bool(_) => "a boolean",
    Value::Number(_) => "a number",
    Value::String(_) => "a string",
    Value::Array(_) => "an array",
    Value::Object(_) => "an object",
  }
}

fn resolve<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
  let mut cur = doc;
  for seg in path {
    cur = match cur {
      Value::Object(m) => m.get(seg)?,
      Value::Array(a) => {
        if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_digit()) {
          return None;
        }
        a.get(seg.parse::<usize>().ok()?)?
      }
      _ => return None,
    };
  }
  Some(cur)
}

fn num_cmp(a: &serde_json::Number, b: &serde_json::Number) -> Option<Ordering> {
  if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
    return Some(x.cmp(&y));
  }
  if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
    return Some(x.cmp(&y));
  }
  a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// The operands of `$in`/`$nin`, hashed: a lookup costs the same for 5 operands or
/// 70,000, so a long list against a long array field stays linear.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueSet {
  /// Strings apart, so a lookup borrows the event's string instead of copying it.
  strings: HashSet<String>,
  scalars: HashSet<Scalar>,
  /// Arrays and objects, compared one by one (equality is structural and numeric).
  nested: Vec<Value>,
}

/// A scalar other than a string by the equality filters use: numbers by value (1 == 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scalar {
  Null,
  Bool(bool),
  Int(i128),
  Float(u64),
}

fn scalar_of(v: &Value) -> Option<Scalar> {
  Some(match v {
    Value::Null => Scalar::Null,
    Value::Bool(b) => Scalar::Bool(*b),
    Value::Number(n) => {
      if let Some(i) = n.as_i64() {
        Scalar::Int(i as i128)
      } else if let Some(u) = n.as_u64() {
        Scalar::Int(u as i128)
      } else {
        let f = n.as_f64()?;
        if f.fract() == 0.0 && f.abs() < 9.2e18 {
          Scalar::Int(f as i128)
        } else {
          Scalar::Float(f.to_bits())
        }
      }
    }
    Value::String(_) | Value::Array(_) | Value::Object(_) => return None,
  })
}

impl ValueSet {
  fn new(values: Vec<Value>) -> Self {
    let mut set = ValueSet {
      strings: HashSet::new(),
      scalars: HashSet::new(),
      nested: Vec::new(),
    };
    for v in values {
      let scalar = scalar_of(&v);
      match (v, scalar) {
        (Value::String(s), _) => {
          set.strings.insert(s);
        }
        (_, Some(k)) => {
          set.scalars.insert(k);
        }
        (v, None) => set.nested.push(v),
      }
    }
    set
  }

  fn contains(&self, v: &Value) -> bool {
    match (v, scalar_of(v)) {
      (Value::String(s), _) => self.strings.contains(s.as_str()),
      (_, Some(k)) => self.scalars.contains(&k),
      _ => self.nested.iter().any(|x| equal(v, x)),
    }
  }
}

fn equal(a: &Value, b: &Value) -> bool {
  match (a, b) {
    (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Some(Ordering::Equal),
    (Value::Array(x), Value::Array(y)) => {
      x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q))
    }
    (Value::Object(x), Value::Object(y)) => {
      x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
    }
    _ => a == b,
  }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
  match (a, b) {
    (Value::Number(x), Value::Number(y)) => num_cmp(x, y),
    (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
    _ => None,
  }
}

/// True when `pred` holds for the value, or for any element when it is an array.
fn any_elem(v: &Value, pred: &dyn Fn(&Value) -> bool) -> bool {
  pred(v) || matches!(v, Value::Array(items) if items.iter().any(pred))
}

impl Cond {
  fn eval(&self, v: Option<&Value>) -> bool {
    match self {
      Cond::Exists(want) => v.is_some() == *want,
      Cond::Eq(x) => v.is_some_and(|v| any_elem(v, &|e| equal(e, x))),
      Cond::Ne(x) => !v.is_some_and(|v| any_elem(v, &|e| equal(e, x))),
      Cond::Gt(x) => v.is_some_and(|v| any_elem(v, &|e| compare(e, x) == Some(Ordering::Greater))),
      Cond::Gte(x) => v.is_some_and(|v| {
        any_elem(v, &|e| {
          matches!(compare(e, x), Some(Ordering::Greater | Ordering::Equal))
        })
      }),
      Cond::Lt(x) => v.is_some_and(|v| any_elem(v, &|e| compare(e, x) == Some(Ordering::Less))),
      Cond::Lte(x) => v.is_some_and(|v| {
        any_elem(v, &|e| {
          matches!(compare(e, x), Some(Ordering::Less | Ordering::Equal))
        })
      }),
      Cond::In(set) => v.is_some_and(|v| any_elem(v, &|e| set.contains(e))),
      Cond::Nin(set) => !v.is_some_and(|v| any_elem(v, &|e| set.contains(e))),
      Cond::Not(c) => !c.eval(v),
      Cond::All(cs) => cs.iter().all(|c| c.eval(v)),
    }
  }
}

#[cfg(test)]
mod tests;

use super::*;
use serde_json::json;

fn m(filter: Value, doc: Value) -> bool {
  Filter::parse(&filter).unwrap().matches(&doc)
}

#[test]
fn semantics_table() {
  let doc = json!({
    "n": 5, "f": 2.5, "s": "abc", "b": true, "nil": null,
    "tags": ["x", "y"], "nums": [1, 10], "o": { "p": { "q": 7 } },
    "items": [{ "sku": "A" }, { "sku": "B" }]
  });
  let table: Vec<(Value, bool)> = vec![
    (json!({}), true),
    (json!({ "n": 5 }), true),
    (json!({ "n": 5.0 }), true),
    (json!({ "n": "5" }), false),
    (json!({ "n": { "$eq": 5 } }), true),
    (json!({ "n": { "$ne": 5 } }), false),
    (json!({ "missing": { "$ne": 5 } }), true),
    (json!({ "n": { "$gt": 4 } }), true),
    (json!({ "n": { "$gt": 5 } }), false),
    (json!({ "n": { "$gte": 5, "$lt": 6 } }), true),
    (json!({ "f": { "$lt": 3 } }), true),
    (json!({ "f": { "$lte": 2.5 } }), true),
    (json!({ "s": { "$gt": "abb" } }), true),
    (json!({ "s": { "$gt": 1 } }), false),
    (json!({ "n": { "$in": [1, 5] } }), true),
    (json!({ "n": { "$nin": [1, 5] } }), false),
    (json!({ "n": { "$nin": [1, 2] } }), true),
    (json!({ "nil": null }), true),
    (json!({ "nil": { "$exists": true } }), true),
    (json!({ "missing": null }), false),
    (json!({ "missing": { "$exists": false } }), true),
    (json!({ "tags": "x" }), true),
    (json!({ "tags": ["x", "y"] }), true),
    (json!({ "tags": ["y", "x"] }), false),
    (json!({ "nums": { "$gt": 5 } }), true),
    (json!({ "o.p.q": 7 }), true),
    (json!({ "o.p": { "q": 7 } }), true),
    (json!({ "o.p.q.r": 7 }), false),
    (json!({ "items.1.sku": "B" }), true),
    (json!({ "items.2.sku": "B" }), false),
    (json!({ "n": { "$not": { "$gt": 10 } } }), true),
    (json!({ "$and": [{ "n": 5 }, { "b": true }] }), true),
    (json!({ "$and": [{ "n": 5 }, { "b": false }] }), false),
    (json!({ "$or": [{ "n": 6 }, { "s": "abc" }] }), true),
    (json!({ "$or": [{ "n": 6 }, { "s": "x" }] }), false),
    (json!({ "$not": { "n": 5 } }), false),
    (json!({ "n": 5, "s": "zzz" }), false),
    (json!({ "b": 1 }), false),
  ];
  for (f, expected) in table {
    assert_eq!(m(f.clone(), doc.clone()), expected, "{f}");
  }
}

#[test]
fn errors_name_the_path() {
  let cases = vec![
    (json!({ "a": { "$regex": "x" } }), "filter.a.$regex"),
    (json!({ "$nor": [] }), "filter.$nor"),
    (json!({ "$and": [] }), "filter.$and"),
    (
      json!({ "$or": [{ "a": { "$in": 3 } }] }),
      "filter.$or[0].a.$in",
    ),
    (json!({ "a": { "$exists": 1 } }), "filter.a.$exists"),
    (json!({ "a": { "$gt": 1, "b": 2 } }), "filter.a"),
    (json!([1]), "filter"),
  ];
  for (f, path) in cases {
    let e = Filter::parse(&f).unwrap_err();
    assert_eq!(e.code, Code::InvalidFilter);
    assert!(e.message.starts_with(path), "{f}: {}", e.message);
  }
}

#[test]
fn depth_is_limited() {
  let mut f = json!({ "a": 1 });
  for _ in 0..40 {
    f = json!({ "$not": f });
  }
  let e = Filter::parse(&f).unwrap_err();
  assert_eq!(e.code, Code::InvalidFilter);
  assert!(e.message.contains("deeper"));
  let mut ok = json!({ "a": 1 });
  for _ in 0..20 {
    ok = json!({ "$not": ok });
  }
  assert!(Filter::parse(&ok).is_ok());
}

#[test]
fn non_json_never_matches() {
  let f = Filter::parse(&json!({ "$not": { "a": 1 } })).unwrap();
  assert!(!f.matches_json(b"\x00\x01binary"));
  assert!(f.matches_json(b"{\"a\":2}"));
}

#[test]
fn long_in_lists_against_long_arrays_stay_linear() {
  let tags: Vec<i64> = (1..=70_000).map(|i| -i).collect();
  let doc = json!({ "tags": tags, "n": 3 });
  let list: Vec<i64> = (1..=70_000).collect();
  let f = Filter::parse(&json!({ "tags": { "$in": list } })).unwrap();
  // 70,000 x 70,000 comparisons took seconds; hashed it is 70,000 lookups.
  assert!(!f.matches(&doc));
  let nin = Filter::parse(&json!({ "tags": { "$nin": list } })).unwrap();
  assert!(nin.matches(&doc));
  let hit = Filter::parse(&json!({ "tags": { "$in": [5, -69_999] } })).unwrap();
  assert!(hit.matches(&doc));
  // Numbers by value, nested values structurally.
  let f = Filter::parse(&json!({ "n": { "$in": [3.0, "x", [1, 2]] } })).unwrap();
  assert!(f.matches(&doc));
  let f = Filter::parse(&json!({ "v": { "$in": [[1, 2.0]] } })).unwrap();
  assert!(f.matches(&json!({ "v": [[1, 2]] })));
  assert!(f.matches(&json!({ "v": [1.0, 2] })));
  assert!(!f.matches(&json!({ "v": [2, 1] })));
}

#[test]
fn depth_counts_nested_objects_not_scalars() {
  let nest = |n: usize| {
    let mut f = json!({ "a": 1 });
    for _ in 0..n {
      f = json!({ "$not": f });
    }
    f
  };
  // 31 `$not` around `{ a: 1 }` are 32 nested objects: the limit, allowed.
  assert!(Filter::parse(&nest(31)).is_ok());
  let err = Filter::parse(&nest(32)).unwrap_err();
  assert_eq!(err.code, Code::InvalidFilter);
  assert!(err.message.contains("deeper than 32"), "{}", err.message);
}

//! The layer rule of ARCHITECTURE.md: a module uses only its own layer and the layers
//! listed before it. The order is read from the `layers` block of ARCHITECTURE.md, so the
//! document and this check cannot drift apart; every top-level module must be listed.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Top-level module → (layer index, layer name), from the fenced `layers` block.
fn layer_order(root: &Path) -> HashMap<String, (usize, String)> {
  let doc = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md exists");
  let start = doc
    .find("```layers\n")
    .expect("ARCHITECTURE.md has a ```layers block")
    + 10;
  let block = &doc[start..start + doc[start..].find("```").expect("the layers block ends")];
  let mut order = HashMap::new();
  for (i, line) in block.lines().filter(|l| !l.trim().is_empty()).enumerate() {
    let (name, modules) = line
      .split_once(':')
      .unwrap_or_else(|| panic!("layer line {line:?} is not `name: modules`"));
    for m in modules.split_whitespace() {
      let prior = order.insert(m.to_string(), (i, name.trim().to_string()));
      assert!(
        prior.is_none(),
        "module {m} is listed twice in the layers block"
      );
    }
  }
  order
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
  for entry in fs::read_dir(dir).unwrap() {
    let path = entry.unwrap().path();
    if path.is_dir() {
      rust_files(&path, out);
    } else if path.extension().is_some_and(|e| e == "rs") {
      out.push(path);
    }
  }
}

/// The module path of a file under src/: `adapter/redis/mod.rs` → [adapter, redis].
fn module_path(src: &Path, file: &Path) -> Vec<String> {
  let rel = file.strip_prefix(src).unwrap().with_extension("");
  let mut parts: Vec<String> = rel
    .iter()
    .map(|p| p.to_string_lossy().into_owned())
    .collect();
  if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
    parts.pop();
  }
  parts
}

/// The code without comments and without the unit-test module at the end (tests may
/// reach anywhere).
fn code_of(text: &str) -> String {
  let body = match text.find("#[cfg(test)]\nmod tests") {
    Some(at) => &text[..at],
    None => text,
  };
  body
    .lines()
    .map(|l| match l.find("//") {
      Some(at) => &l[..at],
      None => l,
    })
    .collect::<Vec<_>>()
    .join("\n")
}

fn ident_at(s: &str) -> &str {
  let end = s
    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
    .unwrap_or(s.len());
  &s[..end]
}

/// The top-level modules a file's code names through `crate::` and `super::` paths.
fn referenced(code: &str, module: &[String]) -> Vec<String> {
  let mut out = Vec::new();
  let bytes = code.as_bytes();
  let mut i = 0;
  while i < code.len() {
    let rest = &code[i..];
    let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
    if boundary && rest.starts_with("crate::") {
      let after = &rest[7..];
      if let Some(group) = after.strip_prefix('{') {
        // `use crate::{a, b::c}`: every first segment in the braces.
        let inner = &group[..group.find('}').unwrap_or(group.len())];
        out.extend(inner.split(',').map(|p| ident_at(p.trim()).to_string()));
      } else {
        out.push(ident_at(after).to_string());
      }
      i += 7;
      continue;
    }
    if boundary && rest.starts_with("super::") {
      let mut base = module.to_vec();
      let mut tail = rest;
      while let Some(t) = tail.strip_prefix("super::") {
        base.pop();
        tail = t;
      }
      // Within a top-level module, super stays inside it; from its root it names siblings.
      match base.first() {
        Some(top) => out.push(top.clone()),
        None => out.push(ident_at(tail).to_string()),
      }
      i += rest.len() - tail.len();
      continue;
    }
    i += rest.chars().next().map_or(1, char::len_utf8);
  }
  out.retain(|m| !m.is_empty() && m != "self");
  out
}

#[test]
fn modules_use_only_their_layer_and_lower_ones() {
  let root = Path::new(env!("CARGO_MANIFEST_DIR"));
  let src = root.join("src");
  let order = layer_order(root);
  let mut files = Vec::new();
  rust_files(&src, &mut files);
  files.sort();
  let mut wrong = Vec::new();
  for file in &files {
    let module = module_path(&src, file);
    let Some(top) = module.first() else {
      continue; // lib.rs only declares the modules
    };
    let Some((mine, my_layer)) = order.get(top) else {
      wrong.push(format!(
        "src/{top}: not in ARCHITECTURE.md's layers block; give it a layer"
      ));
      continue;
    };
    let code = code_of(&fs::read_to_string(file).unwrap());
    for used in referenced(&code, &module) {
      match order.get(&used) {
        Some((theirs, their_layer)) if theirs > mine => wrong.push(format!(
          "{}: uses {used} ({their_layer}), a higher layer than {top} ({my_layer})",
          file.strip_prefix(root).unwrap().display()
        )),
        Some(_) => {}
        None => wrong.push(format!(
          "{}: uses {used}, which is not in ARCHITECTURE.md's layers block",
          file.strip_prefix(root).unwrap().display()
        )),
      }
    }
  }
  wrong.sort();
  wrong.dedup();
  assert!(wrong.is_empty(), "layer rule broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_check_sees_upward_imports() {
  // The parser itself: a path to a higher layer must be found, or the check above
  // could pass while seeing nothing.
  let module = vec!["adapter".to_string(), "memory".to_string()];
  let code = "use crate::group::member::now_ms;\nuse crate::{bus::Bus, event};\nlet x = super::super::topology::X;";
  let got = referenced(code, &module);
  assert_eq!(got, vec!["group", "bus", "event", "topology"]);
  let nested = vec!["group".to_string(), "member".to_string()];
  assert_eq!(
    referenced("use super::GroupOptions;", &nested),
    vec!["group"]
  );
  assert!(referenced(&code_of("// crate::bus::Bus\nlet a = 1;"), &module).is_empty());
}

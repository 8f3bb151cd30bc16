//! Keeping passwords and tokens out of error messages and logs.

/// Removes the userinfo (`user:password@`) from a server URL for messages.
pub fn redact_url(url: &str) -> String {
  match (url.find("://"), url.rfind('@')) {
    (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
    (None, Some(at)) => format!("***@{}", &url[at + 1..]),
    _ => url.to_string(),
  }
}

/// The secrets a URL carries in its userinfo: the password and the whole `user:password`.
pub fn url_secrets(url: &str) -> Vec<String> {
  let mut out = Vec::new();
  if let (Some(s), Some(at)) = (url.find("://"), url.rfind('@')) {
    if at > s {
      let userinfo = &url[s + 3..at];
      if let Some((_, pass)) = userinfo.split_once(':') {
        out.push(pass.to_string());
      }
      out.push(userinfo.to_string());
    }
  }
  out.retain(|s| !s.is_empty());
  out
}

/// Replaces every occurrence of a secret in `msg` with `***`.
pub fn scrub(secrets: &[String], mut msg: String) -> String {
  // Longest first: `user:password` before `password`, or the user name would remain.
  let mut ordered: Vec<&String> = secrets.iter().collect();
  ordered.sort_by_key(|s| std::cmp::Reverse(s.len()));
  for s in ordered {
    if !s.is_empty() && msg.contains(s.as_str()) {
      msg = msg.replace(s.as_str(), "***");
    }
  }
  msg
}

/// `text` with the userinfo of every `scheme://userinfo@host` in it replaced by `***`, for
/// text that may quote a URL (log records of other crates).
pub fn scrub_userinfo(text: String) -> String {
  if !text.contains("://") || !text.contains('@') {
    return text;
  }
  let mut out = String::with_capacity(text.len());
  let mut rest = text.as_str();
  while let Some(i) = rest.find("://") {
    let (head, tail) = rest.split_at(i + 3);
    out.push_str(head);
    // The authority ends at the first character a URL's userinfo and host never hold.
    let end = tail
      .find(|c: char| {
        c.is_whitespace() || matches!(c, '/' | '"' | '\'' | ',' | ')' | ']' | '>' | '?' | '#')
      })
      .unwrap_or(tail.len());
    match tail[..end].rfind('@') {
      Some(at) => {
        out.push_str("***");
        rest = &tail[at..];
      }
      None => rest = tail,
    }
  }
  out.push_str(rest);
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn urls_and_secrets_are_redacted() {
    assert_eq!(
      redact_url("nats://bob:hunter2@127.0.0.1:4222"),
      "nats://***@127.0.0.1:4222"
    );
    assert_eq!(
      redact_url("redis://127.0.0.1:6379"),
      "redis://127.0.0.1:6379"
    );
    let s = url_secrets("rediss://bob:s3cret@h:1/0");
    assert_eq!(s, vec!["s3cret".to_string(), "bob:s3cret".to_string()]);
    assert_eq!(
      scrub(&s, "auth failed for bob:s3cret".into()),
      "auth failed for ***"
    );
  }

  #[test]
  fn userinfo_is_scrubbed_from_any_text() {
    assert_eq!(
      scrub_userinfo(r#"attempting connection server="nats://bob:PASS@127.0.0.1:4222" x"#.into()),
      r#"attempting connection server="nats://***@127.0.0.1:4222" x"#
    );
    assert_eq!(
      scrub_userinfo("a nats://TOKEN@h:1, b tls://u:p@h2/x".into()),
      "a nats://***@h:1, b tls://***@h2/x"
    );
    assert_eq!(
      scrub_userinfo("mail a@b, see http://h/x@y".into()),
      "mail a@b, see http://h/x@y"
    );
  }
}

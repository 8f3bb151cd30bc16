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
}

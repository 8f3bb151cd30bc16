//! The producer identity behind message ids: a random nonce and a generation.
//!
//! With `producerNoncePath`, the nonce survives restarts and the generation grows by one
//! on every start, so ids of a new run never repeat ids of an earlier one (sequences restart
//! at 0). The file is replaced atomically (temp file, fsync, rename, fsync of the directory),
//! is created with mode 0600, and a lock file held for the bus's lifetime keeps two live
//! buses from sharing it.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{BusError, Result};
use crate::event::ProducerId;
use crate::random::random_u64;

const MAGIC: &[u8; 8] = b"RBNONCE1";
const FILE_LEN: usize = 32;

/// Holds the lock on a nonce file until dropped.
#[derive(Debug)]
pub struct IdentityLock {
  _file: File,
}

/// A fresh identity that is not persisted.
pub fn ephemeral() -> ProducerId {
  ProducerId {
    nonce: random_u64(),
    generation: 0,
  }
}

fn describe(path: &Path) -> String {
  path.display().to_string()
}

fn lock_path(path: &Path) -> PathBuf {
  let mut p = path.as_os_str().to_owned();
  p.push(".lock");
  PathBuf::from(p)
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> BusError {
  BusError::config(format!(
    "producerNoncePath {}: could not {what} ({e}); check that the directory exists and is writable",
    describe(path)
  ))
}

#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
  use std::os::unix::io::AsRawFd;
  // SAFETY: flock on a descriptor we own; no memory is passed.
  let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
  if rc == 0 {
    return Ok(true);
  }
  let err = std::io::Error::last_os_error();
  if err.kind() == ErrorKind::WouldBlock {
    Ok(false)
  } else {
    Err(err)
  }
}

#[cfg(not(unix))]
fn try_lock(file: &File) -> std::io::Result<bool> {
  file.try_lock().map(|_| true).or_else(|e| match e {
    std::fs::TryLockError::WouldBlock => Ok(false),
    std::fs::TryLockError::Error(e) => Err(e),
  })
}

fn open_private(path: &Path, create_new: bool) -> std::io::Result<File> {
  let mut opts = OpenOptions::new();
  opts.read(true).write(true);
  if create_new {
    opts.create_new(true);
  } else {
    opts.create(true);
  }
  #[cfg(unix)]
  {
    use std::os::unix::fs::OpenOptionsExt;
    opts.mode(0o600);
  }
  opts.open(path)
}

fn encode(id: ProducerId) -> [u8; FILE_LEN] {
  let mut buf = [0u8; FILE_LEN];
  buf[..8].copy_from_slice(MAGIC);
  buf[8..16].copy_from_slice(&id.nonce.to_le_bytes());
  buf[16..24].copy_from_slice(&id.generation.to_le_bytes());
  let sum = xxhash_rust::xxh3::xxh3_64(&buf[..24]);
  buf[24..].copy_from_slice(&sum.to_le_bytes());
  buf
}

fn decode(buf: &[u8]) -> Option<ProducerId> {
  if buf.len() != FILE_LEN || &buf[..8] != MAGIC {
    return None;
  }
  let sum = u64::from_le_bytes(buf[24..32].try_into().ok()?);
  if sum != xxhash_rust::xxh3::xxh3_64(&buf[..24]) {
    return None;
  }
  let nonce = u64::from_le_bytes(buf[8..16].try_into().ok()?);
  let generation = u64::from_le_bytes(buf[16..24].try_into().ok()?);
  if nonce == 0 {
    return None;
  }
  Some(ProducerId { nonce, generation })
}

fn write_atomically(path: &Path, id: ProducerId) -> Result<()> {
  let dir = path
    .parent()
    .filter(|p| !p.as_os_str().is_empty())
    .unwrap_or_else(|| Path::new("."));
  let mut tmp = path.as_os_str().to_owned();
  tmp.push(format!(".tmp.{}", std::process::id()));
  let tmp = PathBuf::from(tmp);
  let _ = fs::remove_file(&tmp);
  let result = (|| -> std::io::Result<()> {
    let mut f = open_private(&tmp, true)?;
    f.write_all(&encode(id))?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    // The rename is durable only once the directory entry is synced.
    File::open(dir)?.sync_all()
  })();
  if let Err(e) = result {
    let _ = fs::remove_file(&tmp);
    return Err(io_err(path, "write the nonce file", e));
  }
  Ok(())
}

/// Loads (or creates) the nonce at `path`, bumps its generation, persists it and returns
/// the identity with the lock that must be held while the bus runs.
pub fn load_persistent(path: &Path) -> Result<(ProducerId, IdentityLock)> {
  let lock_file =
    open_private(&lock_path(path), false).map_err(|e| io_err(path, "open its lock file", e))?;
  match try_lock(&lock_file) {
    Ok(true) => {}
    Ok(false) => {
      return Err(BusError::config(format!(
        "producerNoncePath {} is in use by another live EventBus; give each process (and each bus) its own path",
        describe(path)
      )))
    }
    Err(e) => return Err(io_err(path, "lock it", e)),
  }

  let previous = match File::open(path) {
    Ok(mut f) => {
      let mut buf = Vec::with_capacity(FILE_LEN);
      f.read_to_end(&mut buf)
        .map_err(|e| io_err(path, "read it", e))?;
      match decode(&buf) {
        Some(id) => Some(id),
        None => {
          return Err(BusError::config(format!(
            "producerNoncePath {} is not a valid ringbus nonce file (corrupt or foreign); move it away to start a new producer identity",
            describe(path)
          )))
        }
      }
    }
    Err(e) if e.kind() == ErrorKind::NotFound => None,
    Err(e) => return Err(io_err(path, "read it", e)),
  };

  let id = match previous {
    Some(p) => ProducerId {
      nonce: p.nonce,
      generation: p.generation.checked_add(1).ok_or_else(|| {
        BusError::config(format!(
          "producerNoncePath {}: generation counter exhausted; move the file away",
          describe(path)
        ))
      })?,
    },
    None => ProducerId {
      nonce: random_u64(),
      generation: 1,
    },
  };
  write_atomically(path, id)?;
  Ok((id, IdentityLock { _file: lock_file }))
}

#[cfg(test)]
mod tests {
  use super::*;

  fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
      "ringbus-id-{name}-{}-{}",
      std::process::id(),
      random_u64()
    ));
    fs::create_dir_all(&d).unwrap();
    d
  }

  #[test]
  fn generation_grows_and_nonce_persists() {
    let dir = temp_dir("gen");
    let path = dir.join("nonce");
    let (a, lock) = load_persistent(&path).unwrap();
    drop(lock);
    let (b, lock) = load_persistent(&path).unwrap();
    drop(lock);
    assert_eq!(a.nonce, b.nonce);
    assert_eq!(a.generation + 1, b.generation);
    #[cfg(unix)]
    {
      use std::os::unix::fs::PermissionsExt;
      let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
      assert_eq!(mode, 0o600);
    }
    let leftovers: Vec<_> = fs::read_dir(&dir)
      .unwrap()
      .filter_map(|e| e.ok())
      .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
      .collect();
    assert!(leftovers.is_empty());
    fs::remove_dir_all(dir).unwrap();
  }

  #[test]
  fn two_live_holders_are_refused() {
    let dir = temp_dir("lock");
    let path = dir.join("nonce");
    let (_a, lock) = load_persistent(&path).unwrap();
    let err = load_persistent(&path).unwrap_err();
    assert_eq!(err.code, crate::error::Code::InvalidConfig);
    assert!(err.message.contains("in use"));
    drop(lock);
    load_persistent(&path).unwrap();
    fs::remove_dir_all(dir).unwrap();
  }

  #[test]
  fn corrupt_file_is_reported() {
    let dir = temp_dir("corrupt");
    let path = dir.join("nonce");
    fs::write(&path, b"garbage").unwrap();
    let err = load_persistent(&path).unwrap_err();
    assert!(err.message.contains("not a valid"));
    fs::remove_dir_all(dir).unwrap();
  }
}

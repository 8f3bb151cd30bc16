//! Diagnostics build only (`cargo build --release --features alloc-stats`): counts the
//! addon's live heap bytes and prints them with mimalloc's committed bytes to stderr every
//! 10 s, to tell a leak (live bytes grow) from memory the allocator keeps. Load it with
//! `NAPI_RS_NATIVE_LIBRARY_PATH=target/release/libringbus.so`.
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

/// mimalloc, counting what is allocated and freed.
pub struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: delegates every call to mimalloc unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
  unsafe fn alloc(&self, l: Layout) -> *mut u8 {
    LIVE.fetch_add(l.size() as isize, Relaxed);
    // SAFETY: same contract as ours.
    unsafe { mimalloc::MiMalloc.alloc(l) }
  }
  unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
    LIVE.fetch_add(l.size() as isize, Relaxed);
    // SAFETY: same contract as ours.
    unsafe { mimalloc::MiMalloc.alloc_zeroed(l) }
  }
  unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
    LIVE.fetch_sub(l.size() as isize, Relaxed);
    // SAFETY: same contract as ours.
    unsafe { mimalloc::MiMalloc.dealloc(p, l) }
  }
  unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
    LIVE.fetch_add(n as isize - l.size() as isize, Relaxed);
    // SAFETY: same contract as ours.
    unsafe { mimalloc::MiMalloc.realloc(p, l, n) }
  }
}

/// Starts the printing thread.
pub fn start() {
  std::thread::spawn(|| loop {
    std::thread::sleep(std::time::Duration::from_secs(10));
    let (mut elapsed, mut user, mut system, mut rss, mut peak_rss) = (0, 0, 0, 0, 0);
    let (mut commit, mut peak_commit, mut faults) = (0, 0, 0);
    // SAFETY: out-pointers to locals, valid for the call.
    unsafe {
      libmimalloc_sys::mi_process_info(
        &mut elapsed,
        &mut user,
        &mut system,
        &mut rss,
        &mut peak_rss,
        &mut commit,
        &mut peak_commit,
        &mut faults,
      )
    };
    let mib = |b: f64| b / f64::from(1u32 << 20);
    // mimalloc reports its committed bytes as RSS on Linux: only the former is printed.
    eprintln!(
      "alloc-stats: live {:.1} MiB, mimalloc committed {:.1} MiB (peak {:.1})",
      mib(LIVE.load(Relaxed) as f64),
      mib(commit as f64),
      mib(peak_commit as f64),
    );
  });
}

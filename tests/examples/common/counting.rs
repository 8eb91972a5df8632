//! A counting global allocator over the system one, for the examples that
//! measure heap by stage: live bytes and the peak since a mark, exact and
//! independent of load. Included with `#[path]` (not an example itself).
use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering::Relaxed},
};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static CALLS: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let n = LIVE.fetch_add(l.size() as isize, Relaxed) + l.size() as isize;
        PEAK.fetch_max(n, Relaxed);
        CALLS.fetch_add(1, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Bytes allocated and not freed now.
pub fn live() -> isize {
    LIVE.load(Relaxed)
}

/// Allocations made so far (a reallocation is one: the default `realloc`
/// allocates anew).
#[allow(dead_code)] // not every example counts them
pub fn allocs() -> isize {
    CALLS.load(Relaxed)
}

/// The highest `live()` since the last [`mark_peak`].
pub fn peak() -> isize {
    PEAK.load(Relaxed)
}

/// Starts a new peak from `at` (usually `live()`).
pub fn mark_peak(at: isize) {
    PEAK.store(at, Relaxed);
}

pub fn mb(n: isize) -> f64 {
    n as f64 / 1e6
}

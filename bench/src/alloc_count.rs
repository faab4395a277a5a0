//! A global allocator that counts live heap bytes when switched on (the memory scenario
//! turns it on at start; every other command leaves it off and pays one relaxed load per
//! allocation). It forwards to mimalloc, the allocator of the `agora` binary, so in-process
//! figures match the node's.

use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// Whether counting is on.
static ON: AtomicBool = AtomicBool::new(false);
/// Live bytes allocated since counting was switched on (frees of older blocks subtract too).
static LIVE: AtomicI64 = AtomicI64::new(0);

/// The node's allocator (mimalloc, as in the `agora` binary), counting.
pub struct Counting;

// SAFETY: every call is forwarded unchanged to mimalloc; the counters have no effect on
// the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ON.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

/// Switches counting on.
pub fn enable() {
    ON.store(true, Ordering::SeqCst);
}

/// Live heap bytes counted so far (meaningful as a difference between two readings).
pub fn live_bytes() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

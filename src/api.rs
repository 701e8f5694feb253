//! The entry points every `define_rpmalloc!` expansion forwards to (`GlobalAlloc`,
//! `collect()`, `statistics()`). Each forwards to the module that holds its protocol:
//! `alloc.rs`, `free.rs`, `realloc.rs`; the fast paths are inlined from there.

use crate::heap::Heap;
use crate::instance::Instance;
use crate::stats::Statistics;
use crate::thread_state::LIVE;
use core::alloc::Layout;

/// `GlobalAlloc::alloc` for configuration `C`.
///
/// # Safety
/// As `GlobalAlloc::alloc`.
#[inline(always)]
pub unsafe fn alloc<C: Instance>(layout: Layout) -> *mut u8 {
    // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
    unsafe { crate::alloc::alloc::<C>(layout) }
}

/// `GlobalAlloc::alloc_zeroed` for configuration `C`: memory fresh from the OS is not
/// cleared again.
///
/// # Safety
/// As `GlobalAlloc::alloc_zeroed`.
#[inline(always)]
pub unsafe fn alloc_zeroed<C: Instance>(layout: Layout) -> *mut u8 {
    // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
    unsafe { crate::alloc::alloc_zeroed::<C>(layout) }
}

/// `GlobalAlloc::dealloc` for configuration `C`.
///
/// # Safety
/// As `GlobalAlloc::dealloc`.
#[inline(always)]
pub unsafe fn dealloc<C: Instance>(ptr: *mut u8, layout: Layout) {
    // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
    unsafe { crate::free::dealloc::<C>(ptr, layout) }
}

/// The usable size of the live block at `ptr` of configuration `C`.
///
/// # Safety
/// `ptr` is a live block of configuration `C`, as an allocation function returned it.
#[inline]
pub unsafe fn usable_size<C: Instance>(ptr: *const u8) -> usize {
    // SAFETY: the caller's contract, which `usable::usable_size` has too.
    unsafe { crate::usable::usable_size::<C>(ptr) }
}

/// `GlobalAlloc::realloc` for configuration `C`.
///
/// # Safety
/// As `GlobalAlloc::realloc`.
#[inline(always)]
pub unsafe fn realloc<C: Instance>(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
    unsafe { crate::realloc::realloc::<C>(ptr, layout, new_size) }
}

/// Gives cached memory of configuration `C` back to the OS now: the calling thread's
/// notices are taken and its span reserve released, orphaned heaps are settled and their
/// reserves released, and every run of every thread cache and of the global cache, with
/// every spare span, is unmapped or has its pages released.
pub fn collect<C: Instance>() {
    let state = C::slot();
    if state.status.get() == LIVE {
        // SAFETY: a live slot holds this thread's heap, used by this thread only.
        unsafe { Heap::<C>::from_bins(state.heap.get()) }.collect();
    }
    Heap::<C>::collect_all();
}

/// The counters of configuration `C`, or `None` without `enable_statistics`.
pub fn statistics<C: Instance>() -> Option<Statistics> {
    C::global().statistics()
}

//! Statistics at the entry points (only with `enable_statistics`; every caller tests
//! `C::ENABLE_STATISTICS` first, so they compile out otherwise): blocks handed out,
//! freed and resized, counted in the calling thread's heap's counters, or the shared
//! counters of threads without a heap.

use crate::heap::Heap;
use crate::huge;
use crate::instance::Instance;
use crate::os::addr;
use crate::params::Params;
use crate::span::{HugeHeader, Kind, Run, SmallSpan, Span};
use crate::stats::{HeapCounters, Writer};
use crate::thread_cache::HeapShared;
use crate::thread_state::LIVE;
use core::alloc::Layout;

/// Runs `update` on the calling thread's statistics counters: its heap's, or the shared
/// ones of threads without a heap.
#[inline]
pub(crate) fn with_counters<C: Instance>(update: impl FnOnce(&HeapCounters, Writer)) {
    let state = C::slot();
    if state.status.get() == LIVE {
        // SAFETY: a live slot holds this thread's heap; only its counters are read.
        update(
            unsafe { Heap::<C>::from_bins(state.heap.get()) }.counters(),
            Writer::Owner,
        );
    } else {
        update(&C::global().stats.heapless, Writer::Shared);
    }
}

/// The size class of the live block at `ptr` (allocated with `layout`), if it has one.
///
/// # Safety
/// `ptr` is a live block of configuration `C` allocated with `layout`.
#[inline]
unsafe fn class_of_block<C: Instance>(ptr: *mut u8, layout: Layout) -> Option<usize> {
    if layout.align() >= C::SPAN_SIZE {
        return None;
    }
    let span = addr::mask::<_, Span>(ptr, C::SPAN_MASK);
    // SAFETY: per the contract the block's span header is valid.
    unsafe { (Span::kind(span) == Kind::Small).then(|| SmallSpan(span).class() as usize) }
}

/// Counts a block handed out (statistics on).
///
/// # Safety
/// `ptr` is null or a block of configuration `C` just allocated with `layout`.
#[inline(never)]
pub(crate) unsafe fn count_alloc<C: Instance>(ptr: *mut u8, layout: Layout) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: per the contract, a live block allocated with `layout`.
    let class = unsafe { class_of_block::<C>(ptr, layout) };
    with_counters::<C>(|c, w| c.allocated(layout.size(), class, w));
}

/// Counts a block about to be freed (statistics on): on its first-class heap's counters
/// if it has one (whoever frees it: the heap's drop clears what those counted), else on
/// the calling thread's.
///
/// # Safety
/// `ptr` is a live block of configuration `C` allocated with `layout`.
#[inline(never)]
pub(crate) unsafe fn count_free<C: Instance>(ptr: *mut u8, layout: Layout) {
    // SAFETY: a live block of `C` allocated with `layout` (the contract), as
    // `class_of_block` and `first_class_owner` need.
    let (class, owner) = unsafe {
        (
            class_of_block::<C>(ptr, layout),
            first_class_owner::<C>(ptr, layout),
        )
    };
    match owner {
        Some(shared) => shared.counters.freed(layout.size(), class, Writer::Shared),
        None => with_counters::<C>(|c, w| c.freed(layout.size(), class, w)),
    }
}

/// Counts a block a first-class heap (shared part `shared`) handed out (statistics on).
///
/// # Safety
/// `ptr` is null or a block of configuration `C` just allocated with `layout`.
#[inline(never)]
pub(crate) unsafe fn count_alloc_in<C: Instance>(
    shared: &HeapShared,
    ptr: *mut u8,
    layout: Layout,
) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: per the contract, a live block allocated with `layout`.
    let class = unsafe { class_of_block::<C>(ptr, layout) };
    shared
        .counters
        .allocated(layout.size(), class, Writer::Shared);
}

/// The shared part of the first-class heap the live block at `ptr` belongs to, if it
/// belongs to one.
///
/// # Safety
/// `ptr` is a live block of configuration `C` allocated with `layout`.
unsafe fn first_class_owner<C: Instance>(
    ptr: *mut u8,
    layout: Layout,
) -> Option<&'static HeapShared> {
    let span = if layout.align() >= C::SPAN_SIZE {
        huge::header::<C>(ptr, layout.align())
    } else {
        addr::mask::<_, Span>(ptr, C::SPAN_MASK)
    };
    // SAFETY: per the contract the block's header is valid; its heap, if any, is a heap
    // record, never unmapped.
    unsafe {
        let id = match Span::kind(span) {
            Kind::Small => SmallSpan(span).heap(),
            Kind::Large => Run(span).heap(),
            Kind::Huge => HugeHeader(span).heap(),
        };
        if id.is_null() {
            return None;
        }
        let shared = Heap::<C>::shared_of(id);
        shared.private.then_some(shared)
    }
}

/// Counts a block the calling thread just allocated and resized without a copy
/// (statistics on) and returns it.
#[inline(always)]
pub(crate) fn resized_in_place<C: Instance>(ptr: *mut u8, old: usize, new: usize) -> *mut u8 {
    if C::ENABLE_STATISTICS {
        with_counters::<C>(|c, w| c.resized(old, new, w));
    }
    ptr
}

/// Counts a live block resized without a copy (statistics on) — on its first-class
/// heap's counters if it has one, as [`count_free`] does, so the heap's drop clears what
/// was counted there — and returns it.
///
/// # Safety
/// `ptr` is a live block of configuration `C` allocated with `layout`.
#[inline(always)]
pub(crate) unsafe fn resized_block_in_place<C: Instance>(
    ptr: *mut u8,
    layout: Layout,
    new: usize,
) -> *mut u8 {
    if C::ENABLE_STATISTICS {
        // SAFETY: the caller's contract.
        unsafe { count_resized::<C>(ptr, layout, new) };
    }
    ptr
}

/// The counting of [`resized_block_in_place`], out of line.
///
/// # Safety
/// `ptr` is a live block of configuration `C` allocated with `layout`.
#[inline(never)]
unsafe fn count_resized<C: Instance>(ptr: *mut u8, layout: Layout, new: usize) {
    // SAFETY: a live block of `C` allocated with `layout` (the contract).
    match unsafe { first_class_owner::<C>(ptr, layout) } {
        Some(shared) => shared.counters.resized(layout.size(), new, Writer::Shared),
        None => with_counters::<C>(|c, w| c.resized(layout.size(), new, w)),
    }
}

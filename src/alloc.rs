//! Allocation: the inline fast path (a bin's free list), its slow path (thread setup,
//! bin refills, large, huge and aligned blocks, allocation after thread exit), and the
//! variant that gives a block growing by `realloc` room to grow in place.
//!
//! The fast path is one thread-local read, a table lookup and a pointer pop, with no
//! atomic read-modify-write and no read of the span header; when the bin is empty it
//! takes the blocks freed into the bin's span since the last refill, still inline.
//! Everything else is `#[cold]`.

use crate::bins::{empty_bins, Bin};
use crate::counting::count_alloc;
use crate::heap::Heap;
use crate::huge;
use crate::instance::Instance;
use crate::os;
use crate::os::addr;
use crate::params::Params;
use crate::span::{SmallSpan, Span, LARGE_CLASS_COUNT, SPAN_HEADER_SIZE};
use crate::thread::init_thread;
use crate::thread::tick;
use crate::thread_state::{DEAD, LIVE};
use core::alloc::Layout;
use core::ptr;
use core::sync::atomic::Ordering;

/// `GlobalAlloc::alloc` for configuration `C`.
///
/// # Safety
/// As `GlobalAlloc::alloc`.
#[inline(always)]
pub(crate) unsafe fn alloc<C: Instance>(layout: Layout) -> *mut u8 {
    // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
    let p = unsafe { alloc_uncounted::<C>(layout) };
    if C::ENABLE_STATISTICS {
        // SAFETY: null or a block just allocated with `layout`.
        unsafe { count_alloc::<C>(p, layout) };
    }
    p
}

/// `alloc` without the statistics.
///
/// # Safety
/// As `GlobalAlloc::alloc`.
#[inline(always)]
unsafe fn alloc_uncounted<C: Instance>(layout: Layout) -> *mut u8 {
    let size = layout.size();
    if size <= C::MEDIUM_LIMIT && layout.align() <= C::NATURAL_ALIGN {
        let bins = C::slot().heap.get();
        let class = C::CLASSES.class_of(size);
        // SAFETY: bins are a heap's or the empty bins (a read-only static: reached only
        // through raw pointers, and never written, since their lists are null); `class` is
        // below MAX_CLASS_COUNT; a bin's list holds free blocks, counted out by their span
        // already.
        unsafe {
            let bin = (&raw mut (*bins).bin).cast::<Bin>().add(class);
            let block = (*bin).free;
            if !block.is_null() {
                (*bin).free = (*block).next;
                return block.cast();
            }
            // The bin ran dry: take the blocks freed into its span since the last refill
            // (every carved block is then out), without the slow path's call. A loop that
            // frees each block right after allocating it comes here once per list length.
            // Not while notices wait: only the slow path takes them, and a thread that
            // never left this branch would never get its full spans back. Nor when the
            // thread's tick count says the clock is due (decay sweeps, see `global.rs`).
            let span = (*bin).span;
            if !span.is_null() {
                let list = SmallSpan(span).free_list();
                // Fields reached through the slot's pointer (the record's provenance), no
                // reference to the owner part: the bin is written through `bin` below.
                if !list.is_null()
                    && Heap::<C>::shared_of(bins.cast()).notices.is_empty_relaxed()
                    && Heap::<C>::ticks_of(bins).quiet_tick()
                {
                    SmallSpan(span).set_free_list(ptr::null_mut());
                    SmallSpan(span).set_used(SmallSpan(span).limit());
                    (*bin).free = (*list).next;
                    return list.cast();
                }
            }
            if bins != empty_bins() {
                // The thread has a heap: refill straight from it.
                return Heap::<C>::from_bins(bins).alloc_small_slow(class);
            }
        }
    }
    // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
    unsafe { alloc_slow::<C, false, false>(layout) }
}

/// `GlobalAlloc::alloc_zeroed` for configuration `C`: memory fresh from the OS is not
/// cleared again.
///
/// # Safety
/// As `GlobalAlloc::alloc_zeroed`.
#[inline]
pub(crate) unsafe fn alloc_zeroed<C: Instance>(layout: Layout) -> *mut u8 {
    let size = layout.size();
    if size <= C::MEDIUM_LIMIT && layout.align() <= C::NATURAL_ALIGN {
        // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
        let p = unsafe { alloc::<C>(layout) };
        if !p.is_null() {
            // SAFETY: p holds at least `size` bytes.
            unsafe { p.write_bytes(0, size) };
        }
        return p;
    }
    // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
    let p = unsafe { alloc_slow::<C, true, false>(layout) };
    if C::ENABLE_STATISTICS {
        // SAFETY: null or a block just allocated with `layout`.
        unsafe { count_alloc::<C>(p, layout) };
    }
    p
}

/// Everything the inline path does not serve: thread setup, refills, large, huge and
/// aligned blocks, allocation after thread exit. `ZERO`: the block must read as zero;
/// `GROW`: it is the new home of a block growing by `realloc`. (Constants, not arguments:
/// the inline path's tail call then passes the layout alone, and keeps its registers.)
///
/// # Safety
/// As `GlobalAlloc::alloc`.
#[cold]
#[inline(never)]
unsafe fn alloc_slow<C: Instance, const ZERO: bool, const GROW: bool>(layout: Layout) -> *mut u8 {
    #[allow(clippy::let_unit_value)]
    let () = C::VALID;
    let state = C::slot();
    loop {
        match state.status.get() {
            LIVE => {
                // SAFETY: a live slot holds this thread's heap.
                let heap = unsafe { Heap::<C>::from_bins(state.heap.get()) };
                return alloc_from::<C>(heap, layout, ZERO, GROW);
            }
            DEAD => return alloc_after_exit::<C>(layout, ZERO),
            _ => {
                // SAFETY: our own slot, not yet set up.
                if !unsafe { init_thread::<C>(state) } {
                    return ptr::null_mut();
                }
            }
        }
    }
}

/// Allocates from `heap`, zeroing unless the memory is fresh from the OS when `zero`; a
/// large block that `grow`s by `realloc` comes from the reserve when it can.
pub(crate) fn alloc_from<C: Instance>(
    heap: &mut Heap<C>,
    layout: Layout,
    zero: bool,
    grow: bool,
) -> *mut u8 {
    let size = layout.size();
    let align = layout.align();
    if align <= C::NATURAL_ALIGN && size <= C::MEDIUM_LIMIT {
        let p = heap.alloc_small(C::CLASSES.class_of(size));
        // SAFETY: null or a fresh block of the class of `size`, at least `size` bytes.
        return unsafe { zeroed(p, size, zero) };
    }
    if align >= C::SPAN_SIZE {
        tick::<C>();
        return alloc_huge::<C>(heap, size, align);
    }
    if align > C::NATURAL_ALIGN {
        if let Some(p) = alloc_small_aligned(heap, size, align) {
            // SAFETY: null or a fresh block of at least `size` bytes.
            return unsafe { zeroed(p, size, zero) };
        }
    }
    if Heap::<C>::large_span_count(size, align) <= LARGE_CLASS_COUNT {
        let (p, fresh) = heap.alloc_large(size, align, grow);
        // SAFETY: null or a fresh large block of at least `size` bytes.
        return unsafe { zeroed(p, size, zero && !fresh) };
    }
    tick::<C>();
    alloc_huge::<C>(heap, size, align)
}

/// Maps a huge block for `heap`, listed in it when it is a first-class heap (whose drop
/// unmaps it). Inline: a call of its own cost 25 instructions per huge allocation.
#[inline(always)]
fn alloc_huge<C: Instance>(heap: &mut Heap<C>, size: usize, align: usize) -> *mut u8 {
    let p = huge::alloc::<C>(size, align);
    if heap.is_private() && !p.is_null() {
        // SAFETY: the header of the huge block just mapped for this heap.
        unsafe { heap.list_huge(huge::header::<C>(p, align)) };
    }
    p
}

/// `p`, cleared first when `zero`.
///
/// # Safety
/// `p` is null or a block of at least `size` bytes the caller owns.
#[inline]
unsafe fn zeroed(p: *mut u8, size: usize, zero: bool) -> *mut u8 {
    if zero && !p.is_null() {
        // SAFETY: per the contract p holds at least `size` bytes.
        unsafe { p.write_bytes(0, size) };
    }
    p
}

/// Serves an alignment above 16 (and below the span size) from a size class when it fits:
/// directly if the class's blocks are already aligned, else from a block padded by the
/// alignment, flagging the span so frees round down to the block start. `None` when the
/// request is too big for a size class.
fn alloc_small_aligned<C: Instance>(
    heap: &mut Heap<C>,
    size: usize,
    align: usize,
) -> Option<*mut u8> {
    // Blocks start at span + 128 + i * block_size, so blocks whose size is a multiple of
    // an alignment up to 128 are all aligned to it.
    if align <= SPAN_HEADER_SIZE {
        let rounded = os::align_up_pow2(size, align);
        if rounded <= C::MEDIUM_LIMIT {
            let class = C::CLASSES.class_of(rounded);
            if (C::CLASSES.block_size[class] as usize).is_multiple_of(align) {
                return Some(heap.alloc_small(class));
            }
        }
    }
    let padded = size.checked_add(align - C::NATURAL_ALIGN)?;
    if padded > C::MEDIUM_LIMIT {
        return None;
    }
    let block = heap.alloc_small(C::CLASSES.class_of(padded));
    if block.is_null() {
        return Some(block);
    }
    let p = addr::with_addr(block, os::align_up_pow2(block.addr(), align));
    if p != block {
        let span = addr::mask::<_, Span>(block, C::SPAN_MASK);
        // SAFETY: the block's span is a small span of this heap.
        unsafe {
            SmallSpan(span)
                .aligned_blocks()
                .store(true, Ordering::Relaxed);
            Span::fast_owner(span).store(ptr::null_mut(), Ordering::Relaxed);
        }
    }
    Some(p)
}

/// Allocation after the thread's heap was orphaned (from later thread-exit work): served
/// by an orphaned heap under the orphan lock.
#[cold]
fn alloc_after_exit<C: Instance>(layout: Layout, zero: bool) -> *mut u8 {
    let global = C::global();
    let mut orphans = global.orphans.lock();
    let mut heap = (*orphans).cast::<Heap<C>>();
    if heap.is_null() {
        heap = Heap::<C>::create();
        if heap.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: a fresh heap's record; under the lock it joins the orphan list.
        unsafe { Heap::<C>::shared_of(heap.cast()) }
            .orphaned
            .store(true, Ordering::Relaxed);
        *orphans = heap.cast();
    }
    // SAFETY: orphaned heaps are used only under the orphan lock, which we hold.
    let heap = unsafe { &mut *heap };
    let block = alloc_from::<C>(heap, layout, zero, false);
    // Its active spans go back to being watched, so the (remote) frees of these blocks
    // return them without an adopter.
    heap.retire_bins();
    block
}

/// Allocates the new home of a block growing by `realloc`: as `alloc`, except that a
/// large block comes from the front of the thread's reserve when it has room, so the next
/// growth can take the spans behind it without copying (a `Vec` doubling to 1 MiB copied
/// 7.5 × the instructions when its runs came from the cache instead).
///
/// # Safety
/// As `GlobalAlloc::alloc`.
pub(crate) unsafe fn alloc_growing<C: Instance>(layout: Layout) -> *mut u8 {
    if layout.size() <= C::MEDIUM_LIMIT && layout.align() <= C::NATURAL_ALIGN {
        // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
        return unsafe { alloc::<C>(layout) };
    }
    // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
    let p = unsafe { alloc_slow::<C, false, true>(layout) };
    if C::ENABLE_STATISTICS {
        // SAFETY: null or a block just allocated with `layout`.
        unsafe { count_alloc::<C>(p, layout) };
    }
    p
}

//! `realloc`: in place when the block's class or span run already fits the new size (and
//! is not more than twice it), over the following spans of the thread's reserve for a
//! large block, `mremap` for huge blocks; else allocate (with headroom, from the front of
//! the reserve for large blocks), copy and free.

use crate::alloc::{alloc, alloc_growing};
use crate::bins::empty_bins;
use crate::counting::{resized_block_in_place, resized_in_place};
use crate::free::{block_start, dealloc};
use crate::heap::Heap;
use crate::huge;
use crate::instance::Instance;
use crate::os::addr;
use crate::params::Params;
use crate::size_class::{REALLOC_GRANULARITY, SMALL_SIZE_LIMIT};
use crate::span::{HugeHeader, Kind, Run, SmallSpan, Span, LARGE_CLASS_COUNT};
use core::alloc::Layout;
use core::ptr;

/// `GlobalAlloc::realloc` for configuration `C`: in place when the block's class or span
/// run already fits the new size (and is not more than twice it), `mremap` for huge
/// blocks, else allocate, copy and free.
///
/// # Safety
/// As `GlobalAlloc::realloc`.
#[inline]
pub(crate) unsafe fn realloc<C: Instance>(
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    let align = layout.align();
    // The block's usable size where known: the basis of the move's headroom.
    let mut usable = layout.size();
    if align < C::SPAN_SIZE {
        let span = addr::mask::<_, Span>(ptr, C::SPAN_MASK);
        // SAFETY: a live block allocated with `layout` (the contract), with alignment below
        // the span size: valid header; what `resized_block_in_place` needs too.
        unsafe {
            usable = match Span::kind(span) {
                Kind::Small => {
                    block_start(span, ptr) as usize + SmallSpan(span).block_size() as usize
                        - ptr as usize
                }
                Kind::Large => {
                    let usable = span as usize + Run(span).span_count() as usize * C::SPAN_SIZE
                        - ptr as usize;
                    if new_size > usable && grow_large_in_place::<C>(span, ptr, new_size) {
                        return resized_block_in_place::<C>(ptr, layout, new_size);
                    }
                    usable
                }
                Kind::Huge => {
                    // A first-class heap's huge block is listed by its header's address:
                    // moved, not remapped.
                    if new_size > C::LARGE_LIMIT && HugeHeader(span).heap().is_null() {
                        let moved = huge::realloc::<C>(ptr, new_size);
                        if !moved.is_null() {
                            return resized_in_place::<C>(moved, layout.size(), new_size);
                        }
                    }
                    return realloc_move::<C>(ptr, layout, layout.size(), new_size);
                }
            };
            // Shrinking to under half moves, so a small block does not pin a big one;
            // the smallest classes are not worth moving. A block that grows stays where it
            // fits, however much room is left (a growing block may have been given a whole
            // cached run to grow into).
            if new_size <= usable
                && (new_size >= layout.size()
                    || new_size >= usable / 2
                    || usable <= 2 * C::NATURAL_ALIGN)
            {
                return resized_block_in_place::<C>(ptr, layout, new_size);
            }
        }
    }
    // SAFETY: forwarded contract (the new layout is valid per GlobalAlloc::realloc).
    unsafe { realloc_move::<C>(ptr, layout, usable, new_size) }
}

/// Grows a large block over the spans that follow its run when they are the calling
/// thread's unused reserve (runs are carved from the reserve in order, so a growing buffer
/// often sits right before it): no copy.
///
/// # Safety
/// `span` is the header of the live large block at `ptr`.
#[cold]
unsafe fn grow_large_in_place<C: Instance>(span: *mut Span, ptr: *mut u8, new_size: usize) -> bool {
    let bins = C::slot().heap.get();
    if bins == empty_bins() {
        return false;
    }
    let Some(end) = (ptr as usize - span as usize).checked_add(new_size) else {
        return false;
    };
    let needed = end.div_ceil(C::SPAN_SIZE);
    if needed > LARGE_CLASS_COUNT {
        return false;
    }
    // SAFETY: a live thread's heap, used by its own thread; `span` is a live large run.
    unsafe { Heap::<C>::from_bins(bins).extend_run(span, needed) }
}

/// Moves a block. A block that grows gets at least 37.5 % headroom over its usable size
/// (rpmalloc's rule), so a buffer growing in small steps is copied O(log n) times instead
/// of once per step; the headroom is used by later in-place reallocs. A medium size is
/// then rounded up to [`REALLOC_GRANULARITY`]. Only the caller's
/// `layout.size()` bytes are copied: the rest of the usable size holds nothing it asked for.
///
/// # Safety
/// As `GlobalAlloc::realloc`; `usable >= layout.size()` is the block's usable size.
#[cold]
unsafe fn realloc_move<C: Instance>(
    ptr: *mut u8,
    layout: Layout,
    usable: usize,
    new_size: usize,
) -> *mut u8 {
    let mut new = ptr::null_mut();
    // Whether `new_size` itself was already asked for (and refused, if `new` is null).
    let mut asked_exact = false;
    if new_size > usable {
        let headroom = usable + (usable >> 2) + (usable >> 3);
        let mut padded = headroom.max(new_size);
        if padded > SMALL_SIZE_LIMIT && padded <= C::MEDIUM_LIMIT {
            padded = padded
                .next_multiple_of(REALLOC_GRANULARITY)
                .min(C::MEDIUM_LIMIT);
        }
        asked_exact = padded == new_size;
        if let Ok(padded) = Layout::from_size_align(padded, layout.align()) {
            // SAFETY: a valid non-zero layout.
            new = unsafe { alloc_growing::<C>(padded) };
            if !new.is_null() {
                // The caller holds (and will free) `new_size` bytes, not the headroom.
                resized_in_place::<C>(new, padded.size(), new_size);
            }
        }
    }
    // SAFETY: GlobalAlloc::realloc guarantees the new size with the old alignment is a
    // valid layout.
    unsafe {
        if new.is_null() && !asked_exact {
            new = alloc::<C>(Layout::from_size_align_unchecked(new_size, layout.align()));
        }
        if !new.is_null() {
            ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            dealloc::<C>(ptr, layout);
        }
        new
    }
}

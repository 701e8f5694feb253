//! Huge blocks: too big for a run of 63 spans (or aligned to a span or more), mapped
//! directly from the OS with a span header in front, and unmapped on free.
//!
//! Normally the header sits at the span-aligned start of the mapping and the pointer's
//! span mask finds it. A block aligned to the span size or more would mask to itself, so
//! for those the header sits exactly one span before the block; `dealloc` knows which from
//! the layout's alignment.

use crate::instance::Instance;
use crate::os;
use crate::os::addr;
use crate::params::Params;
use crate::span::{HugeHeader, Kind, Span, SPAN_HEADER_SIZE};
use core::ptr;

/// Maps a huge block of `size` bytes aligned to `align`. Null when the OS refuses.
#[cold]
pub(crate) fn alloc<C: Instance>(size: usize, align: usize) -> *mut u8 {
    let page = os::page_size();
    let (offset, map_align) = if align >= C::SPAN_SIZE {
        (C::SPAN_SIZE, align)
    } else {
        (align.max(SPAN_HEADER_SIZE), C::SPAN_SIZE)
    };
    let Some(len) = size.checked_add(offset).and_then(|l| os::align_up(l, page)) else {
        return ptr::null_mut();
    };
    let header_offset = if align >= C::SPAN_SIZE {
        C::SPAN_SIZE
    } else {
        0
    };
    let mapping = C::global().map_huge(len, map_align, header_offset);
    let base = mapping.start;
    if base.is_null() {
        return ptr::null_mut();
    }
    let span = base.cast::<Span>();
    if !C::global()
        .registry
        .mark(base, 2 * C::SPAN_SIZE, C::SPAN_SIZE)
    {
        // SAFETY: the whole fresh mapping, never handed out.
        unsafe {
            C::global()
                .unmap_huge_mapping(base.sub(mapping.head), mapping.head + len + mapping.tail)
        };
        return ptr::null_mut();
    }
    // SAFETY: fresh zeroed mapping; the header fits its first page.
    unsafe {
        Span::set_kind(span, Kind::Huge);
        HugeHeader(span).set_map_size(len);
        HugeHeader(span).set_map_head(mapping.head);
        HugeHeader(span).set_map_tail(mapping.tail);
        base.add(offset)
    }
}

/// The header of a huge block allocated with alignment `align`.
#[inline]
pub(crate) fn header<C: Instance>(ptr: *mut u8, align: usize) -> *mut Span {
    if align >= C::SPAN_SIZE {
        addr::with_addr(ptr, ptr.addr().wrapping_sub(C::SPAN_SIZE)).cast()
    } else {
        addr::mask::<_, Span>(ptr, C::SPAN_MASK)
    }
}

/// Unmaps the huge block at `ptr`.
///
/// # Safety
/// `ptr` is a live huge block of this configuration allocated with alignment `align`.
#[cold]
pub(crate) unsafe fn free<C: Instance>(ptr: *mut u8, align: usize) {
    let span = header::<C>(ptr, align);
    // SAFETY: per the contract the header is valid, and its block dead from here.
    unsafe { C::global().unmap_huge(span) }
}

/// Resizes a huge block (alignment below the span size) in place or by moving its pages
/// with `mremap`; null if that is not possible (the caller then copies).
///
/// # Safety
/// `ptr` is a live huge block of this configuration with alignment below the span size.
#[cold]
pub(crate) unsafe fn realloc<C: Instance>(ptr: *mut u8, new_size: usize) -> *mut u8 {
    let span = addr::mask::<_, Span>(ptr, C::SPAN_MASK);
    let offset = ptr as usize - span as usize;
    let Some(new_len) = new_size
        .checked_add(offset)
        .and_then(|l| os::align_up(l, os::page_size()))
    else {
        return ptr::null_mut();
    };
    // SAFETY: per the contract the header is valid.
    let old_len = unsafe { HugeHeader(span).map_size() };
    if new_len <= old_len && new_len >= old_len / 2 {
        return ptr;
    }
    // SAFETY: a live huge header (per the contract) whose block is not being used while
    // it is resized; after the trim, its mapping is exactly `old_len` bytes from the
    // header, one whole mapping for `remap`, and on success the block is only reached
    // through the new address returned below.
    let moved = unsafe {
        trim_slack::<C>(span);
        os::remap(span.cast(), old_len, new_len, C::SPAN_SIZE)
    };
    if moved.is_null() {
        return ptr::null_mut();
    }
    if moved != span.cast::<u8>() {
        let registry = &C::global().registry;
        // The block lives at its new address from here: the old one is no block of ours
        // (the range may be anyone's once `mremap` moved away from it). A refusal to mark
        // the new one cannot be undone (the pages moved), so the block stays unmarked:
        // the C ABI's `free` would then leak it, never corrupt anything.
        registry.unmark(span.cast(), 2 * C::SPAN_SIZE, C::SPAN_SIZE);
        let _ = registry.mark(moved, 2 * C::SPAN_SIZE, C::SPAN_SIZE);
    }
    C::global().count(|s| {
        s.unmapped(old_len);
        s.huge(old_len.wrapping_neg());
        s.mapped(new_len);
        s.huge(new_len);
    });
    // SAFETY: the header moved with the mapping.
    unsafe {
        HugeHeader(moved.cast::<Span>()).set_map_size(new_len);
        moved.add(offset)
    }
}

/// Unmaps a huge block's alignment slack, so the mapping is exactly `map_size` bytes from
/// the header (what `mremap` needs).
///
/// # Safety
/// `span` is the header of a live huge block of this configuration.
unsafe fn trim_slack<C: Instance>(span: *mut Span) {
    // SAFETY: per the contract a valid header, whose `map_head`/`map_tail` bytes around
    // the block are still mapped (zeroed below once unmapped), ours and unused.
    unsafe {
        let head = HugeHeader(span).map_head();
        let tail = HugeHeader(span).map_tail();
        if head > 0 {
            os::unmap(span.cast::<u8>().sub(head), head);
        }
        if tail > 0 {
            os::unmap(span.cast::<u8>().add(HugeHeader(span).map_size()), tail);
        }
        HugeHeader(span).set_map_head(0);
        HugeHeader(span).set_map_tail(0);
        C::global().count(|s| {
            s.unmapped(head + tail);
            s.huge((head + tail).wrapping_neg());
        });
    }
}

//! C-style entry points, for the C ABI (`capi/`): `free` and `realloc` without a layout,
//! and pointers that may not be ours.
//!
//! A C caller gives no size or alignment back, so the layout the Rust paths take is made
//! from the block: a span-aligned address is a huge block aligned to the span size or
//! more (`usable.rs`), any other is found at its span mask whatever its alignment, and
//! its size is its usable size (what it may hold, so a moving `realloc` copies all a C
//! program may have written). With statistics on, these blocks are counted at their
//! usable size throughout, so `live` stays exact.
//!
//! A pointer is checked against the configuration's registry of mappings
//! (`global/registry.rs`) before anything reads its header: one from another allocator
//! (the dynamic loader's early blocks, memory from before the library was loaded) is
//! reported as foreign and left alone.

use crate::counting::resized_in_place;
use crate::instance::Instance;
use crate::params::Params;
use core::alloc::Layout;

/// Whether `ptr` lies in memory this configuration mapped and still holds where a block
/// can start: true for every live block of `C`, false for addresses outside all of its
/// mappings (within a mapping, a freed or interior address also reads as true).
#[inline]
pub fn owns<C: Instance>(ptr: *const u8) -> bool {
    C::global().registry.owns(ptr, C::SPAN_SIZE)
}

/// The span size of configuration `C` (a block aligned to it is found by its alignment).
#[inline]
pub fn span_size<C: Instance>() -> usize {
    C::SPAN_SIZE
}

/// The alignment the Rust paths need for the block at `ptr`: the span size for a
/// span-aligned address (a huge block found by its alignment), else 1 (every other block
/// is found at its span mask, whatever its alignment).
#[inline]
fn placement_align<C: Instance>(ptr: *mut u8) -> usize {
    if ptr.addr() & !C::SPAN_MASK == 0 {
        C::SPAN_SIZE
    } else {
        1
    }
}

/// The layout the Rust paths take for the live block at `ptr`: alignment by placement,
/// size the usable size.
///
/// # Safety
/// `ptr` is a live block of `C`.
#[inline]
unsafe fn layout_of<C: Instance>(ptr: *mut u8) -> Layout {
    let align = placement_align::<C>(ptr);
    // SAFETY: a live block of `C` (the contract).
    let size = unsafe { crate::usable::usable_size::<C>(ptr) };
    // SAFETY: the usable size of a live block fits in `isize` rounded up to its alignment
    // (it lies inside one mapping), and the alignment is a power of two.
    unsafe { Layout::from_size_align_unchecked(size, align) }
}

/// The layout `free` passes for the live block at `ptr`: as [`layout_of`], but the size
/// is read from the block only when statistics count it (the free path reads nothing
/// else of it).
///
/// # Safety
/// `ptr` is a live block of `C`.
#[inline]
unsafe fn free_layout<C: Instance>(ptr: *mut u8) -> Layout {
    if C::ENABLE_STATISTICS {
        // SAFETY: the caller's contract.
        return unsafe { layout_of::<C>(ptr) };
    }
    let align = placement_align::<C>(ptr);
    // SAFETY: a power-of-two alignment and a size of one.
    unsafe { Layout::from_size_align_unchecked(1, align) }
}

/// `malloc` / `aligned_alloc`: a block of at least `size` bytes (one for zero, so every
/// call returns a distinct block) aligned to `align`; null when the OS refuses or the
/// request cannot be met. `zero`: the block reads as zero.
///
/// # Safety
/// `align` is a power of two.
#[inline]
pub unsafe fn malloc<C: Instance>(size: usize, align: usize, zero: bool) -> *mut u8 {
    let Ok(layout) = Layout::from_size_align(size.max(1), align) else {
        return core::ptr::null_mut();
    };
    // SAFETY: a valid layout of non-zero size.
    let p = unsafe {
        if zero {
            crate::alloc::alloc_zeroed::<C>(layout)
        } else {
            crate::alloc::alloc::<C>(layout)
        }
    };
    if C::ENABLE_STATISTICS && !p.is_null() {
        // Counted at its usable size, as `free` will count it.
        // SAFETY: a block just allocated.
        resized_in_place::<C>(p, layout.size(), unsafe {
            crate::usable::usable_size::<C>(p)
        });
    }
    p
}

/// `free`: frees the live block at `ptr` and returns true, or returns false and does
/// nothing for a pointer that is not in this configuration's memory. Null is a no-op
/// (true).
///
/// # Safety
/// `ptr` is null, not in this configuration's memory, or a live block of `C` (freed here).
#[inline]
pub unsafe fn free<C: Instance>(ptr: *mut u8) -> bool {
    if ptr.is_null() {
        return true;
    }
    if !owns::<C>(ptr) {
        return false;
    }
    // SAFETY: in our memory, hence (the contract) a live block of `C`.
    unsafe { crate::free::dealloc::<C>(ptr, free_layout::<C>(ptr)) };
    true
}

/// `realloc` of a non-null pointer: the block resized to `new_size` bytes (non-zero),
/// contents kept up to the smaller size, or null (the block untouched) when the OS
/// refuses; `Err(())` for a pointer not in this configuration's memory.
///
/// # Safety
/// `ptr` is not in this configuration's memory, or a live block of `C`; `new_size` is
/// non-zero.
#[inline]
#[allow(clippy::result_unit_err)]
pub unsafe fn realloc<C: Instance>(ptr: *mut u8, new_size: usize) -> Result<*mut u8, ()> {
    if !owns::<C>(ptr) {
        return Err(());
    }
    // SAFETY: in our memory, hence (the contract) a live block of `C`.
    let layout = unsafe { layout_of::<C>(ptr) };
    if new_size > isize::MAX as usize - layout.align() {
        return Ok(core::ptr::null_mut());
    }
    // SAFETY: a live block with its layout; a non-zero size that rounds up to its
    // alignment within `isize` (checked above).
    let q = unsafe { crate::realloc::realloc::<C>(ptr, layout, new_size) };
    if C::ENABLE_STATISTICS && !q.is_null() {
        // SAFETY: the block just resized.
        resized_in_place::<C>(q, new_size, unsafe { crate::usable::usable_size::<C>(q) });
    }
    Ok(q)
}

/// `malloc_usable_size`: the usable size of the live block at `ptr`, 0 for null, `None`
/// for a pointer not in this configuration's memory.
///
/// # Safety
/// `ptr` is null, not in this configuration's memory, or a live block of `C`.
#[inline]
pub unsafe fn usable_size<C: Instance>(ptr: *const u8) -> Option<usize> {
    if ptr.is_null() {
        return Some(0);
    }
    if !owns::<C>(ptr) {
        return None;
    }
    // SAFETY: in our memory, hence (the contract) a live block of `C`.
    Some(unsafe { crate::usable::usable_size::<C>(ptr) })
}

//! C rpmalloc 1.4 behind `GlobalAlloc`. A module of its own so the `iai_crpmalloc` bench
//! can include it by path without linking the other peers.

use std::alloc::{GlobalAlloc, Layout};

/// C rpmalloc 1.4 (`rpmalloc-sys`) as a `GlobalAlloc`.
///
/// Alignments up to 16 use the plain entry points (every rpmalloc block is 16-aligned);
/// larger ones use the `rpaligned_*` family. No explicit `rpmalloc_initialize` is needed:
/// with `ENABLE_PRELOAD` the library initialises itself from an ELF constructor, and its
/// `get_thread_heap` calls `rpmalloc_initialize` (which also sets up the calling thread)
/// whenever a thread has no heap yet, so every entry point initialises lazily.
///
/// C rpmalloc 1.4 cannot serve alignments of a span (64 KiB) or more (its issue #345);
/// such requests return null instead of corrupting memory. The benches never make them.
#[derive(Clone, Copy, Debug, Default)]
pub struct CRpmalloc;

/// Largest alignment every rpmalloc block already has.
const C_NATURAL_ALIGN: usize = 16;
/// C rpmalloc 1.4's span size; alignments from here on are unsupported.
const C_SPAN_SIZE: usize = 64 * 1024;

// SAFETY: forwards to rpmalloc's malloc-style API, which returns blocks of at least the
// requested size and alignment (or null) and accepts any block it returned in rpfree /
// rprealloc.
unsafe impl GlobalAlloc for CRpmalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let align = layout.align();
        if align <= C_NATURAL_ALIGN {
            rpmalloc_sys::rpmalloc(layout.size()).cast()
        } else if align < C_SPAN_SIZE {
            rpmalloc_sys::rpaligned_alloc(align, layout.size()).cast()
        } else {
            core::ptr::null_mut()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        rpmalloc_sys::rpfree(ptr.cast());
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let align = layout.align();
        if align <= C_NATURAL_ALIGN {
            rpmalloc_sys::rpcalloc(1, layout.size()).cast()
        } else if align < C_SPAN_SIZE {
            rpmalloc_sys::rpaligned_calloc(align, 1, layout.size()).cast()
        } else {
            core::ptr::null_mut()
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        if align <= C_NATURAL_ALIGN {
            rpmalloc_sys::rprealloc(ptr.cast(), new_size).cast()
        } else if align < C_SPAN_SIZE {
            rpmalloc_sys::rpaligned_realloc(ptr.cast(), align, new_size, layout.size(), 0).cast()
        } else {
            core::ptr::null_mut()
        }
    }
}

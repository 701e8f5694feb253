//! Which addresses are this configuration's: one bit per span-sized granule of the
//! address space, set while a mapping of ours that may hold a block's start covers it.
//! It answers `owns(ptr)` — whether `ptr` can be a block of this allocator — which the C
//! ABI needs before it trusts a pointer handed to `free` (one from another allocator:
//! the dynamic loader's early blocks, memory allocated before the library was loaded).
//! Nothing on the Rust API's paths reads it: `GlobalAlloc` callers promise their
//! pointers.
//!
//! Every mapping of ours starts span-aligned (span mappings at their master, huge blocks
//! at their header), so a granule is never shared between two of our mappings. A span
//! mapping marks all its granules (a run, hence a block, may start in any span of it); a
//! huge block only the two where its start can be (the header's span, and the next for
//! a block aligned to the span size or more), since nothing else in it is a block start.
//! Bits are set before a mapping's memory is handed out and cleared before it is
//! unmapped, so a live block always reads as ours.
//!
//! Two levels, as mimalloc's segment map: a table of [`TOP_ENTRIES`] pointers (one per
//! 4 GiB of a 48-bit address space) to leaves of one byte per granule of those 4 GiB,
//! each mapped from the OS when first needed (a mapping is never marked in a leaf that
//! could not be made: the mapping is refused instead). A byte rather than a bit: `owns`
//! tests it with one compare (no shift and mask: it runs on every C `free`), and marks
//! are plain stores that never race with a neighbour's; a leaf is 64 KiB of address
//! space for 64 KiB spans, of which the pages around our mappings get touched.
//!
//! The table is mapped on first mark (512 KiB of address space, of which the pages
//! touched are a few). Until then `top` points at [`NO_LEAVES`], a shared table that is
//! never written, so `owns` needs no test for a missing table. Both are reached through
//! raw pointers, one entry at a time: a reference to a whole table would make Miri retag
//! 512 KiB at each use.

use crate::os;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// The address bits the registry covers: user addresses on x86-64 and AArch64 (without
/// 5-level paging, which Linux gives only to programs that ask for addresses above).
const ADDRESS_BITS: u32 = 48;
/// The address bits one leaf covers (4 GiB).
const LEAF_BITS: u32 = 32;
/// Leaves in the table.
const TOP_ENTRIES: usize = 1 << (ADDRESS_BITS - LEAF_BITS);

/// The table of every registry before its first mark: no leaves. Never written (a mark
/// maps a table of the registry's own first).
static NO_LEAVES: [AtomicPtr<AtomicU8>; TOP_ENTRIES] =
    [const { AtomicPtr::new(ptr::null_mut()) }; TOP_ENTRIES];

/// [`NO_LEAVES`] as the pointer `top` holds.
const fn no_leaves() -> *mut AtomicPtr<AtomicU8> {
    (&raw const NO_LEAVES).cast_mut().cast()
}

/// The granules of this configuration's mappings (see the module doc).
pub(crate) struct Registry {
    /// The table of [`TOP_ENTRIES`] leaf pointers ([`NO_LEAVES`] until the first mark).
    top: AtomicPtr<AtomicPtr<AtomicU8>>,
}

impl Registry {
    /// An empty registry (no table mapped yet).
    pub(crate) const fn new() -> Self {
        Registry {
            top: AtomicPtr::new(no_leaves()),
        }
    }

    /// The bytes of one leaf for granules of `span_size` bytes (whole pages).
    fn leaf_bytes(span_size: usize) -> usize {
        ((1usize << LEAF_BITS) / span_size).next_multiple_of(os::page_size())
    }

    /// The registry's own table, mapped on first use; null when the OS refuses.
    fn table(&self) -> *mut AtomicPtr<AtomicU8> {
        let top = self.top.load(Ordering::Acquire);
        if top != no_leaves() {
            return top;
        }
        let bytes = TOP_ENTRIES * size_of::<AtomicPtr<AtomicU8>>();
        let fresh = os::map_aligned(bytes, os::page_size(), 0, false).cast::<AtomicPtr<AtomicU8>>();
        if fresh.is_null() {
            return ptr::null_mut();
        }
        match self
            .top
            .compare_exchange(no_leaves(), fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => fresh,
            Err(theirs) => {
                // SAFETY: our own fresh mapping of `bytes`, never published.
                unsafe { os::unmap(fresh.cast(), bytes) };
                theirs
            }
        }
    }

    /// The leaf of the granule at address `addr`, made if `create`; null when absent (or
    /// refused).
    fn leaf(&self, addr: usize, span_size: usize, create: bool) -> *mut AtomicU8 {
        let index = addr >> LEAF_BITS;
        if index >= TOP_ENTRIES {
            return ptr::null_mut();
        }
        let top = if create {
            self.table()
        } else {
            self.top.load(Ordering::Acquire)
        };
        if top.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: `index < TOP_ENTRIES`, inside a table of that many entries (the shared
        // empty one, or ours: mapped zeroed, null pointers), never unmapped.
        let slot = unsafe { &*top.add(index) };
        let leaf = slot.load(Ordering::Acquire);
        if !leaf.is_null() || !create {
            return leaf;
        }
        // `create`: `top` is this registry's own table, not `NO_LEAVES`.
        let bytes = Self::leaf_bytes(span_size);
        let fresh = os::map_aligned(bytes, os::page_size(), 0, false).cast::<AtomicU8>();
        if fresh.is_null() {
            return ptr::null_mut();
        }
        match slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fresh,
            Err(theirs) => {
                // SAFETY: our own fresh mapping of `bytes`, never published.
                unsafe { os::unmap(fresh.cast(), bytes) };
                theirs
            }
        }
    }

    /// Sets (`on`) or clears the bytes of the granules of `[start, start + len)`; false
    /// (nothing left changed) when a leaf could not be made. `start` is span-aligned;
    /// `span_size` a power of two.
    #[cold]
    fn update(&self, start: usize, len: usize, span_size: usize, on: bool) -> bool {
        let shift = span_size.trailing_zeros();
        let leaf_shift = LEAF_BITS - shift;
        let first = start >> shift;
        let end = (start + len + span_size - 1) >> shift;
        let mut granule = first;
        while granule < end {
            let leaf_end = ((granule >> leaf_shift) + 1) << leaf_shift;
            let stop = end.min(leaf_end);
            let leaf = self.leaf(granule << shift, span_size, on);
            if leaf.is_null() {
                if on {
                    // Undo what this call marked: a refused mapping leaves no trace.
                    self.update(start, (granule - first) << shift, span_size, false);
                    return false;
                }
                // Clearing where no leaf was ever made: nothing was marked there.
                granule = stop;
                continue;
            }
            let mask = (1 << leaf_shift) - 1;
            // SAFETY: the granules `granule..stop` are all in this leaf, which has a byte
            // for each of its granules and is never unmapped.
            unsafe { Self::store(leaf, granule & mask, (stop - 1) & mask, on) };
            granule = stop;
        }
        true
    }

    /// Stores `on` in the bytes `first..=last` of `leaf`.
    ///
    /// # Safety
    /// `leaf` is a live leaf and `last` below its granule count.
    #[inline]
    unsafe fn store(leaf: *mut AtomicU8, first: usize, last: usize, on: bool) {
        for byte in first..=last {
            // SAFETY: the contract.
            unsafe { &*leaf.add(byte) }.store(u8::from(on), Ordering::Release);
        }
    }

    /// Stores `on` for `[start, start + len)` when its granules are in one existing leaf
    /// (every span mapping but one that crosses a 4 GiB line, every huge block's two
    /// granules): the common case, in a few loads and a store per granule. False when not.
    #[inline]
    fn store_in_one_leaf(&self, start: usize, len: usize, span_size: usize, on: bool) -> bool {
        let index = start >> LEAF_BITS;
        if len == 0 || index != (start + len - 1) >> LEAF_BITS || index >= TOP_ENTRIES {
            return false;
        }
        let top = self.top.load(Ordering::Acquire);
        // SAFETY: `index < TOP_ENTRIES`, inside the table (as in `leaf`).
        let leaf = unsafe { &*top.add(index) }.load(Ordering::Acquire);
        if leaf.is_null() {
            return false;
        }
        let shift = span_size.trailing_zeros();
        let mask = (1usize << LEAF_BITS) - 1;
        // SAFETY: a live leaf; both ends are granules of its 4 GiB.
        unsafe {
            Self::store(
                leaf,
                (start & mask) >> shift,
                ((start + len - 1) & mask) >> shift,
                on,
            )
        };
        true
    }

    /// Marks `[start, start + len)` (span-aligned `start`) as ours; false when the OS
    /// refused memory for the registry (the caller then gives the mapping back and fails).
    #[inline]
    pub(crate) fn mark(&self, start: *mut u8, len: usize, span_size: usize) -> bool {
        self.store_in_one_leaf(start.addr(), len, span_size, true)
            || self.update(start.addr(), len, span_size, true)
    }

    /// Unmarks `[start, start + len)` (span-aligned `start`), before it is unmapped.
    #[inline]
    pub(crate) fn unmark(&self, start: *mut u8, len: usize, span_size: usize) {
        if !self.store_in_one_leaf(start.addr(), len, span_size, false) {
            self.update(start.addr(), len, span_size, false);
        }
    }

    /// Whether `ptr` lies in a granule one of our live mappings marked.
    #[inline]
    pub(crate) fn owns(&self, ptr: *const u8, span_size: usize) -> bool {
        // Three loads (table, leaf, byte), inline: this runs on every C `free`.
        let addr = ptr.addr();
        let index = addr >> LEAF_BITS;
        if index >= TOP_ENTRIES {
            return false;
        }
        let top = self.top.load(Ordering::Acquire);
        // SAFETY: `index < TOP_ENTRIES`, inside the table (as in `leaf`).
        let leaf = unsafe { &*top.add(index) }.load(Ordering::Acquire);
        if leaf.is_null() {
            return false;
        }
        let byte = (addr & ((1usize << LEAF_BITS) - 1)) >> span_size.trailing_zeros();
        // SAFETY: as in `update`: a byte inside a live leaf.
        unsafe { &*leaf.add(byte) }.load(Ordering::Acquire) != 0
    }
}

//! The primitives under Miri, which has no `madvise`, no `mremap`, and whose `munmap`
//! takes only a whole region one `mmap` returned: mappings are allocations of
//! [`std::alloc::System`] (page-aligned, zeroed), with a table of regions so that parts of
//! one can be "unmapped" separately; the allocation is freed when every byte of it is.
//! Everything above this layer runs unchanged. Decommitted pages are zeroed, as
//! `MADV_DONTNEED` leaves them. Huge pages are refused (the callers fall back), and
//! `remap` always refuses (the callers copy).

use super::Primitives;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;

/// Page size reported (and mapping alignment).
const PAGE: usize = 4096;

/// Regions live at once; tests under Miri are scaled to stay far below.
const MAX_REGIONS: usize = 4096;

/// The largest mapping granted, as an OS with a small address space would: Miri aborts
/// (it does not return null) on an allocation it cannot make, and the tests' 64 TiB
/// requests must be refused, not abort the run.
const MAX_MAP: usize = 1 << 32;

/// One `map`ped allocation: its base pointer (with the allocation's provenance), its
/// length (0: a free slot) and how many of its bytes were unmapped since.
///
/// Written only under [`WRITER`]; `base` and `len` are read without it by [`root_at`].
/// Relaxed atomics: a lookup is for an address the caller obtained through the
/// allocator's own synchronization, which orders the region's entry before it, and a lock
/// on the lookup would add happens-before edges between every two frees that would hide
/// real data races from Miri.
struct Region {
    base: AtomicPtr<u8>,
    len: AtomicUsize,
    unmapped: AtomicUsize,
}

impl Region {
    /// The region's base if it is live and holds `addr`.
    fn holding(&self, addr: usize) -> Option<*mut u8> {
        let len = self.len.load(Ordering::Relaxed);
        let base = self.base.load(Ordering::Relaxed);
        (len != 0 && base.addr() <= addr && addr < base.addr() + len).then_some(base)
    }
}

/// The table of regions: [`MAX_REGIONS`] slots in one `System` allocation that the first
/// `map` makes (zeroed: every slot free) and that lives for the process.
///
/// Not a `static` array: under Miri each use of a static costs in proportion to its size
/// (a reference to the whole static is retagged, and a Tree Borrows retag visits every
/// `UnsafeCell` of the type), so with a 4096-slot static every lookup took about 13 ms,
/// paid on every free (70 of the 90 s a unit test allocating and freeing 1000 small blocks
/// took; 64 slots or this pointer: 5 s). Through the pointer only the slot used is retagged.
///
/// Written once, under [`WRITER`] (release); read with acquire, which orders only that one
/// initialization before the reader (no edges between frees, see [`Region`]).
static TABLE: AtomicPtr<Region> = AtomicPtr::new(ptr::null_mut());

/// Slot `i` of the table, if the table exists.
fn region(i: usize) -> Option<&'static Region> {
    assert!(i < MAX_REGIONS, "region slot out of range");
    let table = TABLE.load(Ordering::Acquire);
    // SAFETY: a non-null `TABLE` points to `MAX_REGIONS` initialized slots that are never
    // freed (`i` is in range), and slots are only accessed through atomics.
    (!table.is_null()).then(|| unsafe { &*table.add(i) })
}

/// Slots of the table ever used (lookups scan these).
static REGIONS_USED: AtomicUsize = AtomicUsize::new(0);

/// Entries of the lookup hints.
const HINTS: usize = 1024;

/// Bytes of address space one hint covers (a granule: the smallest span size).
const HINT_GRANULE: usize = 4096 * 4;

/// Lookup hints: for each granule of the address space (hashed into [`HINTS`] entries), the
/// slot that last held an address in it, in one `System` allocation made with the table
/// (zeroed) and reached the same way. Only a hint, checked with [`Region::holding`], so a
/// stale or clashing entry costs a scan, never a wrong answer: with one span per mapping a
/// program frees into hundreds of regions, and a scan of them per free (Miri interprets
/// every step) took most of such a test's run time.
static HINT_TABLE: AtomicPtr<AtomicUsize> = AtomicPtr::new(ptr::null_mut());

/// The hint entry for `addr`'s granule, if the table exists.
fn hint(addr: usize) -> Option<&'static AtomicUsize> {
    let hints = HINT_TABLE.load(Ordering::Acquire);
    let i = (addr / HINT_GRANULE) % HINTS;
    // SAFETY: a non-null `HINT_TABLE` points to `HINTS` initialized atomics that are never
    // freed (`i` is in range).
    (!hints.is_null()).then(|| unsafe { &*hints.add(i) })
}

/// Serializes `map` and `unmap` (the writers of the table).
static WRITER: Mutex<()> = Mutex::new(());

/// The slot of the live region holding `addr`, if any.
fn slot_of(addr: usize) -> Option<usize> {
    let hint = hint(addr)?;
    let guess = hint.load(Ordering::Relaxed);
    if region(guess)?.holding(addr).is_some() {
        return Some(guess);
    }
    let table = TABLE.load(Ordering::Acquire);
    let used = REGIONS_USED.load(Ordering::Relaxed);
    // A plain loop over the slots (each step of an iterator chain is a call under Miri).
    let mut i = 0;
    while i < used {
        // SAFETY: `hint` found the tables made, so `table` points to `MAX_REGIONS`
        // initialized slots, never freed; `used <= MAX_REGIONS`.
        if unsafe { &*table.add(i) }.holding(addr).is_some() {
            hint.store(i, Ordering::Relaxed);
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The base pointer of the live mapping holding `addr`, as `map` returned it (with the
/// allocation's own provenance), if `addr` is in one.
///
/// The allocator finds a span header by masking a block's address. The block pointer a
/// program frees carries the program's provenance — under Tree Borrows a tag of the
/// program's own references, which other frees' writes to the header may have disabled —
/// so the header must be reached with the mapping's provenance instead (in other builds
/// the same comes from exposed provenance, see `addr.rs`).
pub(crate) fn root_at(addr: usize) -> Option<*mut u8> {
    region(slot_of(addr)?)?.holding(addr)
}

/// Mappings as `System` allocations.
pub(crate) struct Miri;

impl Primitives for Miri {
    fn map(len: usize, huge_pages: bool) -> *mut u8 {
        if huge_pages || len == 0 || len > MAX_MAP {
            return ptr::null_mut();
        }
        let Ok(layout) = Layout::from_size_align(len, PAGE) else {
            return ptr::null_mut();
        };
        let _writer = WRITER.lock().unwrap_or_else(|e| e.into_inner());
        if TABLE.load(Ordering::Relaxed).is_null() {
            let table = Layout::array::<Region>(MAX_REGIONS).expect("table layout");
            // SAFETY: a non-zero size. Zeroed bytes are a valid `Region` (null base, zero
            // lengths: a free slot), as atomics of pointers and integers allow.
            let p = unsafe { System.alloc_zeroed(table) }.cast::<Region>();
            let hints = Layout::array::<AtomicUsize>(HINTS).expect("hints layout");
            // SAFETY: a non-zero size; zeroed bytes are valid atomics (hints of slot 0).
            let h = unsafe { System.alloc_zeroed(hints) }.cast::<AtomicUsize>();
            if p.is_null() || h.is_null() {
                return ptr::null_mut();
            }
            TABLE.store(p, Ordering::Release);
            HINT_TABLE.store(h, Ordering::Release);
        }
        // The first free slot (a plain loop: each step of an iterator chain is a call
        // under Miri).
        let table = TABLE.load(Ordering::Relaxed);
        let mut i = 0;
        // SAFETY: `table` points to `MAX_REGIONS` initialized slots, never freed.
        while i < MAX_REGIONS && unsafe { &*table.add(i) }.len.load(Ordering::Relaxed) != 0 {
            i += 1;
        }
        if i == MAX_REGIONS {
            return ptr::null_mut();
        }
        // SAFETY: a non-zero size.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            let region = region(i).expect("the table exists");
            region.base.store(p, Ordering::Relaxed);
            region.unmapped.store(0, Ordering::Relaxed);
            region.len.store(len, Ordering::Relaxed);
            REGIONS_USED.fetch_max(i + 1, Ordering::Relaxed);
        }
        p
    }

    fn map_record(len: usize) -> *mut u8 {
        Self::map(len.next_multiple_of(PAGE), false)
    }

    unsafe fn unmap(p: *mut u8, len: usize) {
        let start = p.addr();
        let _writer = WRITER.lock().unwrap_or_else(|e| e.into_inner());
        let i = slot_of(start).expect("unmap of memory that was not mapped");
        let region = region(i).expect("the table exists");
        let base = region.base.load(Ordering::Relaxed);
        let region_len = region.len.load(Ordering::Relaxed);
        assert!(
            start + len <= base.addr() + region_len,
            "unmap beyond a mapping"
        );
        let unmapped = region.unmapped.load(Ordering::Relaxed) + len;
        assert!(unmapped <= region_len, "a range unmapped twice");
        region.unmapped.store(unmapped, Ordering::Relaxed);
        if unmapped == region_len {
            let layout = Layout::from_size_align(region_len, PAGE).expect("mapped layout");
            region.len.store(0, Ordering::Relaxed);
            // SAFETY: the allocation `map` made with this layout; every byte of it is
            // unmapped now, so nothing uses it.
            unsafe { System.dealloc(base, layout) };
        }
    }

    unsafe fn decommit(p: *mut u8, len: usize) {
        // SAFETY: by the contract (`Primitives::decommit`) the range is whole pages of a
        // live mapping of ours that nothing uses, so writing it races with nothing; zeroes
        // are what `MADV_DONTNEED` leaves.
        unsafe { p.write_bytes(0, len) };
    }

    fn advise_huge(_p: *mut u8, _len: usize) {}

    unsafe fn remap(_p: *mut u8, _old_len: usize, _new_len: usize, _align: usize) -> *mut u8 {
        ptr::null_mut()
    }

    fn page_size() -> usize {
        PAGE
    }

    fn now_ms() -> u64 {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_millis() as u64
    }
}

//! Unit tests of the allocator core through hand-written configurations.

use crate::api;
use crate::instance::Instance;
use crate::params::Params;
use crate::test_config::{span_counting_config, test_config};
use crate::Config;
use core::alloc::Layout;

mod c_style;
mod classes;
mod exit;
mod faults;
mod memory;
mod realloc;
mod remote;

test_config!(Default64k, typenum::U65536, ENABLE_STATISTICS: bool = true);
test_config!(
    NoCache16k,
    typenum::U16384,
    ENABLE_THREAD_CACHE: bool = false,
    ENABLE_GLOBAL_CACHE: bool = false,
    ENABLE_STATISTICS: bool = true,
    SPAN_MAP_COUNT: usize = 4,
);
// Used by one test only, so its counters see nothing else.
test_config!(
    NoCacheAlone,
    typenum::U16384,
    ENABLE_THREAD_CACHE: bool = false,
    ENABLE_GLOBAL_CACHE: bool = false,
    ENABLE_STATISTICS: bool = true,
    SPAN_MAP_COUNT: usize = 4,
);

/// `n` in a normal build; under Miri, which interprets every instruction (a few hundred
/// times slower), `n / 500` (at least 1). Tests scale their counts with it, not their logic.
pub(crate) const fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        if n / 500 > 0 {
            n / 500
        } else {
            1
        }
    } else {
        n
    }
}

/// A block's address sent to another thread (`*mut u8` is not `Send`), keeping its
/// provenance (an integer would lose it; Miri checks that).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut u8);
// SAFETY: only an address handed over with the block's ownership.
unsafe impl Send for SendPtr {}

/// Bytes of a block `roundtrip` writes and checks: under Miri, enough to see blocks do not
/// overlap their neighbours' first bytes, not whole pages byte by byte.
const FILL_LIMIT: usize = if cfg!(miri) { 32 } else { 4096 };

/// Bytes 0 to 255 twice: any run of up to 256 bytes of the pattern `fill` writes is one
/// slice of it, so blocks are filled and checked with one copy or comparison per 256 bytes
/// (Miri interprets a loop over the bytes step by step).
static RAMP: [u8; 512] = {
    let mut t = [0u8; 512];
    let mut i = 0;
    while i < 512 {
        t[i] = i as u8;
        i += 1;
    }
    t
};

/// The pieces of the pattern of `seed` over `size` bytes: (offset, expected bytes).
fn ramp_pieces(size: usize, seed: u8) -> impl Iterator<Item = (usize, &'static [u8])> {
    (0..size).step_by(256).map(move |i| {
        let start = (seed as usize + i) % 256;
        (i, &RAMP[start..start + (size - i).min(256)])
    })
}

/// Writes `seed + i` (wrapping) at byte `i` of the `size` bytes at `p`.
fn fill(p: *mut u8, size: usize, seed: u8) {
    for (i, want) in ramp_pieces(size, seed) {
        // SAFETY: p holds size bytes, and i + want.len() <= size.
        unsafe { core::ptr::copy_nonoverlapping(want.as_ptr(), p.add(i), want.len()) };
    }
}

/// Checks what [`fill`] wrote; panics naming the first wrong byte.
fn check(p: *mut u8, size: usize, seed: u8) {
    for (i, want) in ramp_pieces(size, seed) {
        // SAFETY: p holds size bytes, and i + want.len() <= size.
        let got = unsafe { core::slice::from_raw_parts(p.add(i), want.len()) };
        if got != want {
            let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap();
            panic!(
                "byte {} of {size}: {} (expected {})",
                i + at,
                got[at],
                want[at]
            );
        }
    }
}

fn roundtrip<C: Instance>(sizes: &[usize], align: usize) {
    let mut live = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: non-zero layout.
        let p = unsafe { api::alloc::<C>(layout) };
        assert!(!p.is_null(), "size {size} align {align}");
        assert_eq!(p as usize % align, 0, "size {size} align {align}");
        fill(p, size.min(FILL_LIMIT), i as u8);
        live.push((p, layout, i as u8));
    }
    for &(p, layout, seed) in &live {
        check(p, layout.size().min(FILL_LIMIT), seed);
    }
    for (p, layout, _) in live {
        // SAFETY: allocated above with this layout.
        unsafe { api::dealloc::<C>(p, layout) };
    }
}

/// Sizes for `every_size_class_and_kind_roundtrips`: each class's block size (under Miri,
/// at the natural alignment) or sizes 7 bytes apart up to 2 KiB (which meet every class
/// below it; under Miri, at the other alignments, 193 bytes apart), then medium, large and
/// huge sizes.
fn sizes_of_every_kind<C: Instance>(every_class: bool) -> Vec<usize> {
    let mut sizes: Vec<usize> = if every_class {
        let mut classes: Vec<usize> = C::CLASSES
            .block_size
            .iter()
            .map(|&s| s as usize)
            .filter(|&s| s > 0 && s <= C::MEDIUM_LIMIT)
            .collect();
        classes.dedup();
        classes
    } else if cfg!(miri) {
        (1..=2048).step_by(193).collect()
    } else {
        (1..=2048).step_by(7).collect()
    };
    sizes.extend([
        4096,
        16384,
        32512,
        32513,
        65536,
        200_000,
        1 << 20,
        4 << 20,
        9 << 20,
    ]);
    sizes
}

/// Spans the remote-free tests fill (fewer under Miri).
pub(super) const REMOTE_SPANS: usize = if cfg!(miri) { 5 } else { 40 };

/// Allocates `n` filled 1000-byte blocks of `C` (about 64 per 64 KiB span), as addresses.
pub(super) fn filled_blocks<C: Instance>(n: usize) -> Vec<usize> {
    let layout = Layout::from_size_align(1000, 16).unwrap();
    (0..n)
        .map(|i| {
            // SAFETY: valid layout.
            let p = unsafe { api::alloc::<C>(layout) };
            assert!(!p.is_null());
            fill(p, FILL_LIMIT.min(1000), i as u8);
            p as usize
        })
        .collect()
}

/// Checks and frees blocks from [`filled_blocks`] on a new thread (remote frees).
pub(super) fn free_on_other_thread<C: Instance>(blocks: Vec<usize>) {
    std::thread::spawn(move || {
        let layout = Layout::from_size_align(1000, 16).unwrap();
        for (i, &p) in blocks.iter().enumerate() {
            check(p as *mut u8, FILL_LIMIT.min(1000), i as u8);
            // SAFETY: allocated by another thread with this layout.
            unsafe { api::dealloc::<C>(p as *mut u8, layout) };
        }
    })
    .join()
    .unwrap();
}

/// Bytes `C` mapped between the two snapshots beyond the heap records it created.
pub(super) fn mapped_beyond_heap_records<C: Instance>(
    before: &crate::Statistics,
    after: &crate::Statistics,
) -> usize {
    let record =
        core::mem::size_of::<crate::heap::HeapRecord<C>>().next_multiple_of(crate::os::page_size());
    after.mapped - before.mapped - (after.heaps - before.heaps) * record
}

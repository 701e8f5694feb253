//! First-class heaps (`A::heap()`, `rpmalloc::Heap`): containers live in a heap; its drop
//! with live blocks releases every span (mapped bytes and counters back to where they
//! were); blocks freed one by one, through the heap and from other threads, before the
//! drop; many heaps at once; a heap made on one thread and dropped on another; blocks of
//! every kind; two configurations in one binary.
#![cfg(feature = "allocator-api2")]

mod common;

use common::{all_bytes_are, layout, scaled, XorShift};
use rpmalloc::allocator_api2::alloc::Allocator;
use rpmalloc::allocator_api2::boxed::Box;
use rpmalloc::allocator_api2::vec::Vec;
use rpmalloc::{define_rpmalloc, Statistics};
use std::alloc::GlobalAlloc;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard};

define_rpmalloc!(FastAlloc, < enable_statistics: true >);
define_rpmalloc!(LeanAlloc, <
    enable_thread_cache: false,
    enable_global_cache: false,
    span_size: 16384,
    enable_statistics: true,
>);

/// Tests of this file run one at a time: each compares its allocators' counters before
/// and after, which another test's blocks would spoil.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a heap's drop must bring back: no bytes live, in use or mapped beyond the
/// baseline (heap records are kept for reuse: they are `heap_records`, not `mapped`
/// growth once the first heap exists).
fn assert_back(before: &Statistics, after: &Statistics, what: &str) {
    assert_eq!(after.live, before.live, "{what}: live");
    assert_eq!(after.in_use, before.in_use, "{what}: in use");
    assert_eq!(
        after.mapped - after.heap_records,
        before.mapped - before.heap_records,
        "{what}: mapped beyond heap records"
    );
}

/// Makes and drops one heap first, so its record exists before a test's baseline (a
/// dropped heap's record is reused, not unmapped).
fn warm<A: rpmalloc::__private::Rpmalloc + GlobalAlloc>() {
    let heap = rpmalloc::Heap::<A>::new();
    let l = layout(8, 8);
    // SAFETY: a non-zero size; freed below with the same layout.
    unsafe { heap.dealloc(heap.alloc(l), l) };
}

#[test]
fn dropping_a_heap_with_live_blocks_releases_everything() {
    let _serial = serial();
    warm::<FastAlloc>();
    warm::<LeanAlloc>();
    let fast_before = FastAlloc.statistics().unwrap();
    let lean_before = LeanAlloc.statistics().unwrap();
    {
        let fast = FastAlloc::heap();
        let lean = LeanAlloc::heap();
        let mut rng = XorShift::new(7);
        let mut kept_fast = Vec::new_in(&fast);
        let mut kept_lean = Vec::new_in(&lean);
        // Every kind of block: small and medium classes, large runs, huge mappings.
        for i in 0..scaled(20_000) {
            // (Under Miri, with fewer blocks, the big ones come more often: some of each
            // kind still.)
            let size = match i % if cfg!(miri) { 10 } else { 100 } {
                0 => rng.range(100_000..3_000_000),
                1..=5 => rng.range(5_000..60_000),
                _ => rng.range(1..2_000),
            };
            let mut v: Vec<u8, _> = Vec::with_capacity_in(size, &fast);
            // One `write_bytes`, not allocator-api2's `resize` or `extend_from_slice`,
            // which write a byte at a time (no specialisation on stable) and which Miri
            // interprets byte by byte: 35 s for one 75 KB block.
            // SAFETY: the capacity is at least `size` bytes, all written here before
            // `set_len` makes them the vector's.
            unsafe {
                v.as_mut_ptr().write_bytes(i as u8, size);
                v.set_len(size);
            }
            let w = Box::new_in([i as u64; 4], &lean);
            if i % 3 == 0 {
                drop(v); // freed one by one, back to the heap
            } else {
                kept_fast.push(v);
            }
            kept_lean.push(w);
        }
        // A huge block aligned to more than the span size.
        let big = layout(3 << 20, 1 << 20);
        let p = fast.allocate(big).unwrap();
        assert_eq!(p.cast::<u8>().as_ptr() as usize % (1 << 20), 0);
        for (i, v) in kept_fast.iter().enumerate() {
            assert!(all_bytes_are(v, v[0]), "block {i} intact");
        }
        assert!(FastAlloc.statistics().unwrap().mapped > fast_before.mapped);
        // Nothing is freed block by block from here: the heaps' drops release it all.
        std::mem::forget(kept_fast);
        std::mem::forget(kept_lean);
    }
    assert_back(&fast_before, &FastAlloc.statistics().unwrap(), "FastAlloc");
    assert_back(&lean_before, &LeanAlloc.statistics().unwrap(), "LeanAlloc");
}

#[test]
fn blocks_freed_on_other_threads_before_the_drop() {
    let _serial = serial();
    warm::<FastAlloc>();
    let before = FastAlloc.statistics().unwrap();
    let heap = FastAlloc::heap();
    let n = scaled(5_000);
    // Raw blocks of every kind, handed to another thread that frees them through the
    // allocator's `GlobalAlloc` (a heap is not `Sync`: `&heap` stays here).
    let sizes = [24usize, 700, 9_000, 70_000, 300_000, 2 << 20];
    /// A block handed to another thread (with its provenance, not as an address).
    struct Sent(*mut u8, usize);
    // SAFETY: the block is handed over whole: the receiving thread alone uses it.
    unsafe impl Send for Sent {}
    let blocks: std::vec::Vec<Sent> = (0..n)
        .map(|i| {
            let size = sizes[i % sizes.len()];
            let p = heap.allocate(layout(size, 16)).unwrap().cast::<u8>();
            // SAFETY: a fresh block of `size` bytes.
            unsafe { p.as_ptr().write_bytes(i as u8, size) };
            Sent(p.as_ptr(), size)
        })
        .collect();
    std::thread::spawn(move || {
        for (i, &Sent(p, size)) in blocks.iter().enumerate() {
            // SAFETY: a live block of `FastAlloc`'s heap with this layout, freed once.
            unsafe {
                assert_eq!(*p.add(size - 1), i as u8);
                FastAlloc.dealloc(p, layout(size, 16));
            }
        }
    })
    .join()
    .unwrap();
    // The heap takes the runs and spans back and serves new blocks from them.
    let mut again = Vec::new_in(&heap);
    for i in 0..n {
        again.push(Box::new_in([i; 8], &heap));
    }
    assert!(again.iter().enumerate().all(|(i, b)| b[7] == i));
    drop(again);
    assert_eq!(
        FastAlloc.statistics().unwrap().live,
        before.live,
        "every block counted back"
    );
    drop(heap);
    assert_back(&before, &FastAlloc.statistics().unwrap(), "after drop");
}

#[test]
fn many_heaps_at_once_and_across_threads() {
    let _serial = serial();
    warm::<LeanAlloc>();
    let before = LeanAlloc.statistics().unwrap();
    let heaps: std::vec::Vec<_> = (0..8).map(|_| LeanAlloc::heap()).collect();
    let mut maps = std::vec::Vec::new();
    for (h, heap) in heaps.iter().enumerate() {
        let mut m = hashbrown::HashMap::new_in(heap);
        for i in 0..scaled(2_000) as u64 {
            m.insert(i, (h as u64, i.to_string()));
        }
        maps.push(m);
    }
    let key = (scaled(2_000) as u64 - 1).min(17);
    for (h, m) in maps.iter().enumerate() {
        assert_eq!(m.len(), scaled(2_000));
        assert_eq!(m[&key].0, h as u64);
        assert_eq!(m[&key].1, key.to_string());
    }
    drop(maps);
    // Heaps move to other threads (they are `Send`) and are used and dropped there.
    let handles: std::vec::Vec<_> = heaps
        .into_iter()
        .map(|heap| {
            std::thread::spawn(move || {
                let mut v: Vec<u32, _> = Vec::new_in(&heap);
                v.extend(0..scaled(50_000) as u32);
                assert_eq!(v[v.len() - 1] as usize, v.len() - 1);
                std::mem::forget(v);
                drop(heap);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_back(
        &before,
        &LeanAlloc.statistics().unwrap(),
        "after eight heaps",
    );
}

#[test]
fn a_dropped_heap_record_is_reused_and_starts_empty() {
    let _serial = serial();
    warm::<FastAlloc>();
    let before = FastAlloc.statistics().unwrap();
    for round in 0..4u8 {
        let heap = FastAlloc::heap();
        let n = scaled(100_000);
        let mut v: Vec<u8, _> = Vec::new_in(&heap);
        v.extend((0..n).map(|i| (i as u8) ^ round));
        assert_eq!(v[n - 1], ((n - 1) as u8) ^ round);
        std::mem::forget(v);
    }
    let after = FastAlloc.statistics().unwrap();
    assert_eq!(after.heap_records, before.heap_records, "records reused");
    assert_back(&before, &after, "after four heaps");
}

#[test]
fn grow_and_shrink_in_a_heap_keep_contents() {
    let _serial = serial();
    let heap = LeanAlloc::heap();
    for (size, align) in [(10usize, 8usize), (3000, 64), (40_000, 16), (500_000, 4096)] {
        let old = layout(size, align);
        let p = heap.allocate(old).unwrap().cast::<u8>();
        // SAFETY: a fresh block of `size` bytes.
        unsafe { p.as_ptr().write_bytes(0x3C, size) };
        let new = layout(size * 5, align);
        // SAFETY: `p` is live with `old`; `new` is larger.
        let q = unsafe { heap.grow_zeroed(p, old, new) }
            .unwrap()
            .cast::<u8>();
        assert_eq!(q.as_ptr() as usize % align, 0);
        // SAFETY: `q` holds `new.size()` bytes.
        unsafe {
            assert_eq!(*q.as_ptr().add(size - 1), 0x3C);
            assert_eq!(*q.as_ptr().add(size), 0);
            assert_eq!(*q.as_ptr().add(new.size() - 1), 0);
        }
        let small = layout(size / 2 + 1, align);
        // SAFETY: `q` is live with `new`; `small` is smaller.
        let r: NonNull<u8> = unsafe { heap.shrink(q, new, small) }.unwrap().cast();
        // SAFETY: `r` holds `small.size()` bytes, the first ones kept.
        unsafe {
            assert_eq!(*r.as_ptr(), 0x3C);
            heap.deallocate(r, small);
        }
    }
}

/// A heap's block resized through the allocator's `GlobalAlloc::realloc`: in place (a
/// class with room, a run shrunk), its live bytes move on the heap's counters, which the
/// drop clears — so the allocator's total comes back exactly; moved, the new block is
/// the calling thread's and the old one goes back to the heap.
#[test]
fn heap_blocks_resized_through_the_allocator_are_counted_where_they_live() {
    let _serial = serial();
    warm::<FastAlloc>();
    // The thread's span of the class the moved block lands in, made before the baseline.
    // SAFETY: a fresh block, resized with its layout and freed with the new one.
    unsafe {
        let p = FastAlloc.alloc(layout(100, 16));
        FastAlloc.dealloc(
            FastAlloc.realloc(p, layout(100, 16), 5_000),
            layout(5_000, 16),
        );
    }
    let before = FastAlloc.statistics().unwrap();
    let heap = FastAlloc::heap();
    // 100 → 110 bytes stays in its 112-byte class; 300 000 → 200 000 stays in its run.
    let mut moved = None;
    for (size, new_size) in [(100usize, 110usize), (300_000, 200_000), (100, 5_000)] {
        let old = layout(size, 16);
        let p = heap.allocate(old).unwrap().cast::<u8>().as_ptr();
        // SAFETY: a fresh block of `size` bytes.
        unsafe { p.write_bytes(0x5A, size) };
        // SAFETY: a live block of `FastAlloc`'s heap with layout `old`.
        let q = unsafe { FastAlloc.realloc(p, old, new_size) };
        assert!(!q.is_null());
        // SAFETY: `q` holds `new_size` bytes, the first `size.min(new_size)` kept.
        unsafe { assert_eq!(*q.add(size.min(new_size) - 1), 0x5A) };
        if q == p {
            // Left in the heap: its drop releases it.
        } else {
            moved = Some((q, new_size));
        }
    }
    let (q, size) = moved.expect("the 100 → 5000 resize moves");
    drop(heap);
    // SAFETY: the moved block is the calling thread's, live with this layout.
    unsafe { FastAlloc.dealloc(q, layout(size, 16)) };
    assert_back(&before, &FastAlloc.statistics().unwrap(), "after the drop");
}

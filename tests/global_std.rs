//! A `define_rpmalloc!` allocator installed as `#[global_allocator]` serves the standard
//! library: growing `Vec`s, `HashMap`, `BTreeMap`, string formatting and boxed slices of
//! many sizes keep their contents, on the test thread and in scoped and spawned worker
//! threads. A second, differently configured instance (`LeanAlloc`: caches off, 256 KiB
//! spans) used directly through `GlobalAlloc` in the same process never hands out memory
//! overlapping the global instance's, and blocks of each go back to their own instance.
//!
//! Under Miri the element, entry, block, size and worker counts are scaled down
//! (`common::scaled`, `common::thinned`, or smaller constants under `cfg(miri)`).

mod common;

use common::{assert_disjoint, check, fill, layout, scaled, thinned, XorShift};
use rpmalloc::define_rpmalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{mpsc, Arc};
use std::thread;

define_rpmalloc!(FastAlloc, < enable_thread_cache: true >);
define_rpmalloc!(LeanAlloc, <
    enable_thread_cache: false,
    enable_global_cache: false,
    span_size: 262144,
    enable_statistics: true,
>);
define_rpmalloc!(pub Plain);

#[global_allocator]
static GLOBAL: FastAlloc = FastAlloc;

/// Builds and checks a set of std collections; `salt` makes each thread's data distinct.
fn exercise_collections(salt: u64) {
    // Entries per collection, and the keys the range query below finds (N >= 2 * Q).
    const N: usize = if cfg!(miri) { 20 } else { 20_000 };
    const Q: u64 = if cfg!(miri) { 5 } else { 100 };
    // Vec growth through many reallocations, from small to huge.
    let mut v: Vec<u64> = Vec::new();
    for i in 0..scaled(300_000) as u64 {
        v.push(i ^ salt);
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 ^ salt));
    v.truncate(scaled(1000));
    v.shrink_to_fit();
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 ^ salt));

    // HashMap with heap-allocated keys and values.
    let mut map: HashMap<String, Vec<u32>> = HashMap::new();
    for i in 0..N as u32 {
        map.insert(format!("key-{salt}-{i}"), (0..i % 37).collect());
    }
    for i in (0..N as u32).step_by(2) {
        assert!(map.remove(&format!("key-{salt}-{i}")).is_some());
    }
    assert_eq!(map.len(), N / 2);
    for i in (1..N as u32).step_by(2) {
        let value = &map[&format!("key-{salt}-{i}")];
        assert_eq!(value.len() as u32, i % 37);
        assert!(value.iter().enumerate().all(|(j, &x)| x == j as u32));
    }

    // BTreeMap: many node allocations, range queries, removals.
    let mut tree: BTreeMap<u64, Box<[u8]>> = BTreeMap::new();
    for i in 0..N as u64 {
        let len = (i % 97) as usize + 1;
        tree.insert(i * 3 + salt, vec![(i % 251) as u8; len].into_boxed_slice());
    }
    let in_range: Vec<_> = tree
        .range(3 * Q + salt..6 * Q + salt)
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(in_range.len() as u64, Q);
    tree.retain(|k, _| (k - salt).is_multiple_of(2));
    for (k, v) in &tree {
        let i = (k - salt) / 3;
        assert_eq!(v.len(), (i % 97) as usize + 1);
        assert!(common::all_bytes_are(v, (i % 251) as u8));
    }

    // String formatting and growth.
    let mut s = String::new();
    for i in 0..N {
        write!(s, "{i:05}|").unwrap();
    }
    assert_eq!(s.len(), N * 6);
    for (i, field) in s.split('|').take(N).enumerate() {
        assert_eq!(field, format!("{i:05}"));
    }
    let big = "abc".repeat(scaled(3 << 20));
    assert_eq!(big.len(), 3 * scaled(3 << 20));
    assert!(big.as_bytes().chunks(3).all(|c| c == b"abc"));
}

#[test]
fn std_collections_keep_their_contents() {
    exercise_collections(0);
}

#[test]
fn boxed_slices_of_many_sizes() {
    let mut sizes: Vec<usize> = (1..=2048)
        .step_by(if cfg!(miri) { 127 } else { 13 })
        .collect();
    for shift in thinned(&(4..=25).collect::<Vec<_>>(), 3) {
        let p = 1usize << shift;
        sizes.extend([p - 1, p, p + 1, p + p / 2]);
    }
    let boxes: Vec<(Box<[u8]>, u64)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let mut b = vec![0u8; size].into_boxed_slice();
            // SAFETY: the box holds `size` bytes.
            unsafe { fill(b.as_mut_ptr(), size, i as u64) };
            (b, i as u64)
        })
        .collect();
    for (b, seed) in &boxes {
        // SAFETY: the box holds b.len() bytes.
        unsafe { check(b.as_ptr(), b.len(), *seed, "boxed slice") };
    }
    // Over-aligned element types get their alignment from the global allocator.
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    #[repr(align(128))]
    struct Line(#[allow(dead_code)] u8);
    let pages: Vec<Page> = (0..9).map(|i| Page([i as u8; 4096])).collect();
    assert_eq!(pages.as_ptr() as usize % 4096, 0);
    assert!(pages
        .iter()
        .enumerate()
        .all(|(i, p)| common::all_bytes_are(&p.0, i as u8)));
    let lines: Vec<Box<Line>> = (0..scaled(1000)).map(|i| Box::new(Line(i as u8))).collect();
    assert!(lines
        .iter()
        .all(|l| (&**l as *const Line as usize).is_multiple_of(128)));
}

#[test]
fn scoped_workers_build_and_share_collections() {
    const SHARED: usize = scaled(1000);
    let shared: Vec<String> = (0..SHARED).map(|i| format!("shared-{i}")).collect();
    let mut out = vec![Vec::<u64>::new(); if cfg!(miri) { 2 } else { 4 }];
    thread::scope(|s| {
        for (w, slot) in out.iter_mut().enumerate() {
            let shared = &shared;
            s.spawn(move || {
                exercise_collections(w as u64 + 1);
                // Fill a slot owned by the scope's caller: freed later on another thread.
                *slot = (0..scaled(50_000) as u64)
                    .map(|i| i * 4 + w as u64)
                    .collect();
                assert_eq!(shared[SHARED - 1], format!("shared-{}", SHARED - 1));
            });
        }
    });
    for (w, v) in out.iter().enumerate() {
        assert_eq!(v.len(), scaled(50_000));
        assert!(v
            .iter()
            .enumerate()
            .all(|(i, &x)| x == i as u64 * 4 + w as u64));
    }
}

#[test]
fn spawned_workers_return_and_receive_data() {
    const STRINGS: usize = if cfg!(miri) { 5 } else { 500 };
    const WORKERS: usize = if cfg!(miri) { 2 } else { 4 };
    let (tx, rx) = mpsc::channel::<Vec<String>>();
    let base = Arc::new((0..STRINGS).map(|i| i.to_string()).collect::<Vec<_>>());
    let handles: Vec<_> = (0..WORKERS)
        .map(|w| {
            let tx = tx.clone();
            let base = Arc::clone(&base);
            thread::spawn(move || {
                let strings: Vec<String> = base.iter().map(|s| format!("{w}:{s}")).collect();
                tx.send(strings.clone()).unwrap();
                let mut map = HashMap::new();
                for (i, s) in strings.into_iter().enumerate() {
                    map.insert(i, s);
                }
                map
            })
        })
        .collect();
    drop(tx);
    let mut maps = Vec::new();
    for (w, h) in handles.into_iter().enumerate() {
        let map = h.join().unwrap();
        assert_eq!(map.len(), STRINGS);
        assert!(map.iter().all(|(i, s)| *s == format!("{w}:{i}")));
        maps.push(map);
    }
    let mut received: Vec<Vec<String>> = rx.iter().collect();
    assert_eq!(received.len(), WORKERS);
    received.sort_by(|a, b| a[0].cmp(&b[0]));
    for (w, strings) in received.iter().enumerate() {
        assert!(strings
            .iter()
            .enumerate()
            .all(|(i, s)| *s == format!("{w}:{i}")));
    }
    // Dropped here on the test thread: frees of blocks of exited threads' heaps.
    drop(maps);
    drop(received);
}

/// One live block and the instance that owns it.
struct Owned {
    ptr: *mut u8,
    layout: Layout,
    seed: u64,
    from: &'static str,
}

fn alloc_from(a: &dyn GlobalAlloc, from: &'static str, layout: Layout, seed: u64) -> Owned {
    // SAFETY: every layout used here has a non-zero size.
    let ptr = unsafe { a.alloc(layout) };
    assert!(!ptr.is_null(), "{from}: {layout:?} refused");
    assert_eq!(ptr as usize % layout.align(), 0, "{from}: {layout:?}");
    // SAFETY: the block holds layout.size() bytes.
    unsafe { fill(ptr, layout.size(), seed) };
    Owned {
        ptr,
        layout,
        seed,
        from,
    }
}

fn check_all(blocks: &[Owned]) {
    for b in blocks {
        // SAFETY: live blocks of b.layout.size() bytes.
        unsafe { check(b.ptr, b.layout.size(), b.seed, b.from) };
    }
}

#[test]
fn instances_never_share_memory_and_free_their_own_blocks() {
    let mut rng = XorShift::new(0x5eed);
    let lean_before = LeanAlloc.statistics().expect("statistics are enabled");
    let mut fast = Vec::new();
    let mut lean = Vec::new();
    let mut plain = Vec::new();
    let mut seed = 0;
    for round in 0..if cfg!(miri) { 10 } else { 600 } {
        let size = match round % 10 {
            0 => rng.log_size(32 << 10, 3 << 20),
            _ => rng.log_size(1, 32 << 10),
        };
        let align = 1 << rng.range(0..8);
        let l = layout(size, align);
        seed += 1;
        fast.push(alloc_from(&GLOBAL, "FastAlloc", l, seed));
        seed += 1;
        lean.push(alloc_from(&LeanAlloc, "LeanAlloc", l, seed));
        seed += 1;
        plain.push(alloc_from(&Plain, "Plain", l, seed));
    }
    // Huge blocks of LeanAlloc (beyond 63 spans of 256 KiB) are mapped for themselves.
    let huge = [20 << 20, 33 << 20];
    for (i, &size) in huge.iter().enumerate() {
        lean.push(alloc_from(
            &LeanAlloc,
            "LeanAlloc",
            layout(size, 16),
            1000 + i as u64,
        ));
    }

    let mut ranges: Vec<(usize, usize, &'static str)> = fast
        .iter()
        .chain(&lean)
        .chain(&plain)
        .map(|b| (b.ptr as usize, b.layout.size(), b.from))
        .collect();
    assert_disjoint(&mut ranges);
    check_all(&fast);
    check_all(&lean);
    check_all(&plain);

    // Free FastAlloc's blocks (every other one first): the others must be untouched.
    for b in fast.iter().step_by(2) {
        // SAFETY: allocated by GLOBAL with this layout, freed once.
        unsafe { GLOBAL.dealloc(b.ptr, b.layout) };
    }
    fast = fast.into_iter().skip(1).step_by(2).collect();
    check_all(&fast);
    check_all(&lean);
    check_all(&plain);
    for b in fast.drain(..) {
        // SAFETY: allocated by GLOBAL with this layout, freed once.
        unsafe { GLOBAL.dealloc(b.ptr, b.layout) };
    }
    // Plain's blocks go back to Plain; LeanAlloc's are still intact afterwards.
    for b in plain.drain(..) {
        // SAFETY: allocated by Plain with this layout, freed once.
        unsafe { Plain.dealloc(b.ptr, b.layout) };
    }
    check_all(&lean);

    // LeanAlloc's huge blocks are unmapped by LeanAlloc on free.
    let before_free = LeanAlloc.statistics().unwrap();
    assert!(before_free.mapped >= lean_before.mapped + huge.iter().sum::<usize>());
    let huge_blocks = lean.split_off(lean.len() - huge.len());
    for b in huge_blocks {
        // SAFETY: allocated by LeanAlloc with this layout, freed once.
        unsafe { LeanAlloc.dealloc(b.ptr, b.layout) };
    }
    let after_huge = LeanAlloc.statistics().unwrap();
    assert!(
        before_free.mapped - after_huge.mapped >= huge.iter().sum::<usize>(),
        "freeing LeanAlloc's huge blocks did not unmap them: {before_free:?} -> {after_huge:?}"
    );
    assert!(after_huge.unmapped_total - before_free.unmapped_total >= huge.iter().sum::<usize>());
    check_all(&lean);
    for b in lean.drain(..) {
        // SAFETY: allocated by LeanAlloc with this layout, freed once.
        unsafe { LeanAlloc.dealloc(b.ptr, b.layout) };
    }
}

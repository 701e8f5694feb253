//! Unit tests of the allocator core through hand-written configurations.

use crate::api;
use crate::instance::Instance;
use crate::params::Params;
use crate::test_config::{span_counting_config, test_config};
use crate::Config;
use core::alloc::Layout;

mod memory;

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
/// times slower), `n / 50` (at least 1). Tests scale their counts with it, not their logic.
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

fn fill(p: *mut u8, size: usize, seed: u8) {
    for i in 0..size {
        // SAFETY: p holds size bytes.
        unsafe { *p.add(i) = seed.wrapping_add(i as u8) };
    }
}

fn check(p: *mut u8, size: usize, seed: u8) {
    for i in 0..size {
        // SAFETY: p holds size bytes.
        assert_eq!(
            unsafe { *p.add(i) },
            seed.wrapping_add(i as u8),
            "byte {i} of {size}"
        );
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

/// Sizes for `every_size_class_and_kind_roundtrips`: each class's block size (under Miri)
/// or sizes 7 bytes apart up to 2 KiB (which meet every class below it), then medium,
/// large and huge sizes.
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
        (1..=2048).step_by(97).collect()
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

#[test]
fn every_size_class_and_kind_roundtrips() {
    for align in [1, 8, 16, 32, 64, 128, 256, 4096, 32768, 65536, 1 << 20] {
        // Under Miri every class once at the natural alignment, samples at the others.
        let every_class = cfg!(miri) && align == 16;
        roundtrip::<Default64k>(&sizes_of_every_kind::<Default64k>(every_class), align);
        roundtrip::<NoCache16k>(&sizes_of_every_kind::<NoCache16k>(every_class), align);
    }
}

#[test]
fn many_blocks_of_one_class_fill_several_spans() {
    let layout = Layout::from_size_align(48, 8).unwrap();
    // Under Miri three spans' worth (1365 blocks per 64 KiB span).
    let ptrs: Vec<_> = (0..if cfg!(miri) { 4000 } else { 100_000 })
        .map(|i| {
            // SAFETY: valid layout.
            let p = unsafe { api::alloc::<Default64k>(layout) };
            fill(p, 48, i as u8);
            p
        })
        .collect();
    let mut sorted = ptrs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ptrs.len(), "no block handed out twice");
    for (i, &p) in ptrs.iter().enumerate() {
        check(p, 48, i as u8);
    }
    for p in ptrs.into_iter().rev() {
        // SAFETY: allocated above.
        unsafe { api::dealloc::<Default64k>(p, layout) };
    }
}

#[test]
fn cacheless_config_unmaps_what_it_frees() {
    let warm = Layout::from_size_align(16, 16).unwrap();
    // SAFETY: valid layout; sets up this thread's heap before the baseline.
    unsafe { api::dealloc::<NoCacheAlone>(api::alloc::<NoCacheAlone>(warm), warm) };
    let before = api::statistics::<NoCacheAlone>().unwrap().mapped;
    let mut blocks = Vec::new();
    let count = if cfg!(miri) { 400 } else { 4000 };
    for i in 0..count {
        let size = 16 + (i * 977) % 300_000;
        let layout = Layout::from_size_align(size, 16).unwrap();
        // SAFETY: valid layout.
        blocks.push((unsafe { api::alloc::<NoCacheAlone>(layout) }, layout));
    }
    let peak = api::statistics::<NoCacheAlone>().unwrap().mapped;
    assert!(peak > before + count * (25 << 10), "mapped {peak}");
    for (p, layout) in blocks {
        // SAFETY: allocated above.
        unsafe { api::dealloc::<NoCacheAlone>(p, layout) };
    }
    let after = api::statistics::<NoCacheAlone>().unwrap().mapped;
    // What may stay mapped: the heap record, the span reserve, and each size class's
    // active span (kept for the next allocation), which pins its mapping's address range
    // although its pages were released.
    let classes = 64;
    let slack = (classes + 1) * NoCacheAlone::SPAN_MAP_COUNT * NoCacheAlone::SPAN_SIZE;
    assert!(after <= before + slack, "before {before} after {after}");
}

#[test]
fn realloc_grows_and_shrinks_keeping_contents() {
    let mut layout = Layout::from_size_align(8, 8).unwrap();
    // SAFETY: valid layout; each realloc passes the current layout.
    unsafe {
        let mut p = api::alloc::<Default64k>(layout);
        fill(p, 8, 3);
        let mut size = 8;
        while size < (16 << 20) {
            let new = size * 2;
            p = api::realloc::<Default64k>(p, layout, new);
            assert!(!p.is_null());
            check(p, size.min(8), 3);
            layout = Layout::from_size_align(new, 8).unwrap();
            size = new;
        }
        fill(p, 4096, 9);
        let q = api::realloc::<Default64k>(p, layout, 100);
        check(q, 100, 9);
        api::dealloc::<Default64k>(q, Layout::from_size_align(100, 8).unwrap());
    }
}

#[test]
fn refused_memory_returns_null() {
    let layout = Layout::from_size_align(1 << 46, 16).unwrap();
    // SAFETY: valid layout.
    assert!(unsafe { api::alloc::<Default64k>(layout) }.is_null());
    let layout = Layout::from_size_align(1 << 46, 1 << 20).unwrap();
    // SAFETY: valid layout.
    assert!(unsafe { api::alloc_zeroed::<Default64k>(layout) }.is_null());
    roundtrip::<Default64k>(&[16, 5000, 100_000, 3 << 20], 16);
}

#[test]
fn cross_thread_frees_return_to_owner() {
    let layout = Layout::from_size_align(100, 16).unwrap();
    let blocks: Vec<SendPtr> = (0..scaled(50_000))
        .map(|i| {
            // SAFETY: valid layout.
            let p = unsafe { api::alloc::<Default64k>(layout) };
            fill(p, 100, i as u8);
            SendPtr(p)
        })
        .collect();
    let handle = std::thread::spawn(move || {
        for (i, &SendPtr(p)) in blocks.iter().enumerate() {
            check(p, 100, i as u8);
            // SAFETY: allocated by the main thread with this layout.
            unsafe { api::dealloc::<Default64k>(p, layout) };
        }
    });
    handle.join().unwrap();
    // The owner collects the deferred frees and reuses the blocks.
    roundtrip::<Default64k>(&vec![100; scaled(60_000)], 16);
}

test_config!(
    Faulty,
    typenum::U16384,
    ENABLE_STATISTICS: bool = true,
    ENABLE_THREAD_CACHE: bool = false,
    ENABLE_GLOBAL_CACHE: bool = false,
    SPAN_MAP_COUNT: usize = 8,
);

#[test]
fn mapping_failures_return_null_keep_blocks_and_recover() {
    use crate::os::fault;
    // Run on a fresh thread so the plan and the heap are this test's alone.
    std::thread::spawn(|| {
        let sizes = [24usize, 700, 3000, 40_000, 200_000, 2 << 20];
        let mut live = Vec::new();
        for (i, &size) in sizes.iter().cycle().take(60).enumerate() {
            let layout = Layout::from_size_align(size, 16).unwrap();
            // SAFETY: valid layout.
            let p = unsafe { api::alloc::<Faulty>(layout) };
            assert!(!p.is_null());
            fill(p, size.min(512), i as u8);
            live.push((p, layout, i as u8));
        }
        let mapped_before = api::statistics::<Faulty>().unwrap().mapped;

        // Every mapping refused: whatever needs new memory returns null.
        fault::fail_after(0);
        let mut nulls = 0;
        let mut extra = Vec::new();
        let attempts = if cfg!(miri) { 200 } else { 2000 };
        for i in 0..attempts {
            let size = [48usize, 5000, 100_000, 1 << 20, 8 << 20][i % 5];
            let align = [8usize, 64, 4096, 1 << 16, 1 << 20][i / 5 % 5];
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: valid layout.
            let p = unsafe { api::alloc::<Faulty>(layout) };
            if p.is_null() {
                nulls += 1;
            } else {
                assert_eq!(p as usize % align, 0);
                extra.push((p, layout));
            }
        }
        assert!(
            nulls > attempts / 2,
            "refused mappings must surface as null ({nulls})"
        );
        // Growing a live block past what can be mapped fails and leaves it intact.
        let (p0, l0, s0) = live[5];
        // SAFETY: p0 is live with layout l0.
        assert!(unsafe { api::realloc::<Faulty>(p0, l0, 64 << 20) }.is_null());
        for &(p, layout, seed) in &live {
            check(p, layout.size().min(512), seed);
        }
        check(p0, 512, s0);

        // Only large mappings refused: small ones still work.
        fault::fail_above(1 << 20);
        let layout = Layout::from_size_align(16 << 20, 16).unwrap();
        // SAFETY: valid layout.
        assert!(unsafe { api::alloc_zeroed::<Faulty>(layout) }.is_null());
        fault::reset();

        for (p, layout) in extra {
            // SAFETY: allocated above.
            unsafe { api::dealloc::<Faulty>(p, layout) };
        }
        // Failures leaked no mapping.
        let mapped_after = api::statistics::<Faulty>().unwrap().mapped;
        assert!(
            mapped_after <= mapped_before,
            "{mapped_after} > {mapped_before}"
        );
        // And the allocator works again.
        roundtrip::<Faulty>(&sizes, 16);
        for (p, layout, seed) in live {
            check(p, layout.size().min(512), seed);
            // SAFETY: allocated above.
            unsafe { api::dealloc::<Faulty>(p, layout) };
        }
    })
    .join()
    .unwrap();
}

test_config!(
    HugePages,
    typenum::U65536,
    ENABLE_HUGE_PAGES: bool = true,
    SPAN_MAP_COUNT: usize = 32,
);
test_config!(
    Unlimited,
    typenum::U8192,
    ENABLE_UNLIMITED_CACHE: bool = true,
    ENABLE_ADAPTIVE_THREAD_CACHE: bool = true,
    ENABLE_STATISTICS: bool = true,
);

#[test]
fn huge_pages_option_falls_back_quietly_and_works() {
    // 32 spans of 64 KiB = 2 MiB mappings: MAP_HUGETLB is tried, and without reserved huge
    // pages the allocator falls back to normal pages with THP advice.
    roundtrip::<HugePages>(&[16, 3000, 70_000, 1 << 20, 5 << 20], 16);
    roundtrip::<HugePages>(&[100, 5 << 20], 1 << 21);
}

#[test]
fn unlimited_and_adaptive_caches_keep_spans_for_reuse() {
    let layout = Layout::from_size_align(20_000, 16).unwrap();
    let run = move || {
        let blocks: Vec<usize> = (0..scaled(2000).max(100))
            // SAFETY: valid layout.
            .map(|_| unsafe { api::alloc::<Unlimited>(layout) } as usize)
            .collect();
        for &p in &blocks {
            // SAFETY: allocated above.
            unsafe { api::dealloc::<Unlimited>(p as *mut u8, layout) };
        }
    };
    std::thread::spawn(run).join().unwrap();
    let after_first = api::statistics::<Unlimited>().unwrap();
    assert!(after_first.global_cache > 0, "{after_first:?}");
    // Unlimited caches never unmap: a second thread reuses the cached spans.
    std::thread::spawn(run).join().unwrap();
    let after_second = api::statistics::<Unlimited>().unwrap();
    assert_eq!(after_second.unmapped_total, 0, "{after_second:?}");
    assert_eq!(
        after_second.mapped_total, after_first.mapped_total,
        "{after_second:?}"
    );
}

#[test]
fn statistics_are_compiled_out_unless_enabled() {
    assert!(api::statistics::<HugePages>().is_none());
    assert!(api::statistics::<Default64k>().is_some());
}

// Used by one test only, so its heap starts with a fresh mapping.
test_config!(GrowInPlace, typenum::U65536);

/// Bytes of the growing block written and checked (fewer under Miri).
const GROW_FILL: usize = if cfg!(miri) { 4096 } else { 100_000 };

#[test]
fn large_blocks_grow_in_place_over_the_reserve() {
    std::thread::spawn(|| {
        let layout = Layout::from_size_align(100_000, 16).unwrap();
        // SAFETY: valid layouts; each realloc passes the block's current layout.
        unsafe {
            let p = api::alloc::<GrowInPlace>(layout);
            fill(p, GROW_FILL, 5);
            // The run was cut from the front of a fresh mapping; the spans after it are
            // this thread's reserve, so growing takes them without moving.
            let q = api::realloc::<GrowInPlace>(p, layout, 1 << 20);
            assert_eq!(q, p, "grown in place");
            check(q, GROW_FILL, 5);
            q.add((1 << 20) - 1).write(7);
            let grown = Layout::from_size_align(1 << 20, 16).unwrap();
            // Another block now follows it: the next growth has to move, keeping contents.
            let other = api::alloc::<GrowInPlace>(layout);
            let r = api::realloc::<GrowInPlace>(q, grown, 3 << 20);
            assert_ne!(r, q);
            check(r, GROW_FILL, 5);
            assert_eq!(*r.add((1 << 20) - 1), 7);
            api::dealloc::<GrowInPlace>(r, Layout::from_size_align(3 << 20, 16).unwrap());
            api::dealloc::<GrowInPlace>(other, layout);
        }
    })
    .join()
    .unwrap();
}

// Each used by one test only (see `span_counting_config!`).
span_counting_config!(RemoteLive, typenum::U65536);
span_counting_config!(RemoteOrphan, typenum::U65536);

/// Spans the remote-free tests fill (fewer under Miri).
const REMOTE_SPANS: usize = if cfg!(miri) { 5 } else { 40 };

/// Allocates `n` filled 1000-byte blocks of `C` (about 64 per 64 KiB span), as addresses.
fn filled_blocks<C: Instance>(n: usize) -> Vec<usize> {
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
fn free_on_other_thread<C: Instance>(blocks: Vec<usize>) {
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

#[test]
fn remote_frees_bring_full_spans_back_to_a_live_owner() {
    // A fresh thread, so its heap is this test's alone.
    std::thread::spawn(|| {
        let span = RemoteLive::SPAN_SIZE;
        let small = Layout::from_size_align(16, 16).unwrap();
        // SAFETY: valid layout; sets up the heap (and the 16-byte class) before the baseline.
        unsafe { api::dealloc::<RemoteLive>(api::alloc::<RemoteLive>(small), small) };
        let before = api::statistics::<RemoteLive>().unwrap().mapped;
        let blocks = filled_blocks::<RemoteLive>(64 * REMOTE_SPANS);
        let peak = api::statistics::<RemoteLive>().unwrap().mapped;
        assert!(
            peak >= before + (REMOTE_SPANS - 1) * span,
            "before {before} peak {peak}"
        );
        // Every span but the active one is full: in no list, reachable only through the
        // notice each one's first remote free sends.
        free_on_other_thread::<RemoteLive>(blocks);
        // A refill takes the notices: the emptied spans are released.
        let medium = Layout::from_size_align(2000, 16).unwrap();
        // SAFETY: valid layout; freed right away.
        unsafe { api::dealloc::<RemoteLive>(api::alloc::<RemoteLive>(medium), medium) };
        let after = api::statistics::<RemoteLive>().unwrap().mapped;
        // Left: the active spans of the 1000- and 2000-byte classes.
        assert!(
            after <= before + 2 * span,
            "before {before} peak {peak} after {after}"
        );
        // The blocks came back for reuse, contents intact.
        let again = filled_blocks::<RemoteLive>(64 * REMOTE_SPANS);
        for (i, &p) in again.iter().enumerate() {
            check(p as *mut u8, FILL_LIMIT.min(1000), i as u8);
        }
        free_on_other_thread::<RemoteLive>(again);
    })
    .join()
    .unwrap();
}

// Used by one test only (see `span_counting_config!`).
span_counting_config!(RemoteThenLarge, typenum::U65536);

#[test]
fn a_thread_that_then_allocates_only_large_blocks_gets_its_full_spans_back() {
    std::thread::spawn(|| {
        let span = RemoteThenLarge::SPAN_SIZE;
        let before = api::statistics::<RemoteThenLarge>().unwrap().mapped;
        let blocks = filled_blocks::<RemoteThenLarge>(64 * REMOTE_SPANS);
        // Other threads free every block: the full spans send notices.
        free_on_other_thread::<RemoteThenLarge>(blocks);
        let large = Layout::from_size_align(100 << 10, 16).unwrap();
        // SAFETY: valid layout; freed right away (its run is unmapped: no caches).
        unsafe { api::dealloc::<RemoteThenLarge>(api::alloc::<RemoteThenLarge>(large), large) };
        let after = api::statistics::<RemoteThenLarge>().unwrap().mapped;
        // Left: the heap record and the 1000-byte class's active span.
        assert!(
            after <= before + 2 * span,
            "{} spans more than before",
            (after - before) / span
        );
    })
    .join()
    .unwrap();
}

// Used by one test only (see `span_counting_config!`).
span_counting_config!(RemotePingPong, typenum::U65536);

#[test]
fn a_thread_that_only_recycles_one_class_still_gets_its_full_spans_back() {
    std::thread::spawn(|| {
        let span = RemotePingPong::SPAN_SIZE;
        let small = Layout::from_size_align(16, 16).unwrap();
        // SAFETY: valid layout; sets up the heap and the 16-byte class.
        unsafe { api::dealloc::<RemotePingPong>(api::alloc::<RemotePingPong>(small), small) };
        let before = api::statistics::<RemotePingPong>().unwrap().mapped;
        let blocks = filled_blocks::<RemotePingPong>(64 * REMOTE_SPANS);
        free_on_other_thread::<RemotePingPong>(blocks);
        // Only alloc+free pairs of one class from here on: the bin refills from its own
        // span's list without the slow path — except that waiting notices send it there.
        for _ in 0..2000 {
            // SAFETY: valid layout; freed right away.
            unsafe {
                let p = api::alloc::<RemotePingPong>(small);
                assert!(!p.is_null());
                p.write(1);
                api::dealloc::<RemotePingPong>(p, small);
            }
        }
        let after = api::statistics::<RemotePingPong>().unwrap().mapped;
        // Left: the 1000-byte class's active span.
        assert!(after <= before + span, "before {before} after {after}");
    })
    .join()
    .unwrap();
}

#[test]
fn remote_frees_release_an_exited_threads_spans() {
    let before = api::statistics::<RemoteOrphan>().unwrap().mapped;
    // The owner allocates and exits: its heap is orphaned with full, partial (the retired
    // active span) and no empty spans, all armed.
    let blocks = std::thread::spawn(|| filled_blocks::<RemoteOrphan>(64 * REMOTE_SPANS + 10))
        .join()
        .unwrap();
    let held = api::statistics::<RemoteOrphan>().unwrap().mapped;
    assert!(
        held >= before + REMOTE_SPANS * RemoteOrphan::SPAN_SIZE,
        "held {held}"
    );
    // Other threads free everything: the notices are settled on the orphan's behalf.
    free_on_other_thread::<RemoteOrphan>(blocks);
    let after = api::statistics::<RemoteOrphan>().unwrap().mapped;
    // Left: the orphaned heap's record only.
    assert!(
        after <= before + RemoteOrphan::SPAN_SIZE,
        "before {before} held {held} after {after}"
    );
}

// Used by one test only.
test_config!(CarveOrder, typenum::U16384, ENABLE_STATISTICS: bool = true);

#[test]
fn freed_blocks_are_reused_before_fresh_pages_are_carved() {
    std::thread::spawn(|| {
        let layout = Layout::from_size_align(16, 16).unwrap();
        let span_of = |p: *mut u8| p as usize & !(CarveOrder::SPAN_SIZE - 1);
        // SAFETY (all calls below): valid layout; every block is freed once at the end.
        let first = unsafe { api::alloc::<CarveOrder>(layout) };
        let mut live = vec![first];
        // Fill the first span and start a second one.
        let second = loop {
            let p = unsafe { api::alloc::<CarveOrder>(layout) };
            live.push(p);
            if span_of(p) != span_of(first) {
                break span_of(p);
            }
        };
        // A hole in the first (full) span.
        let hole = live[7];
        // SAFETY: a live block of this configuration with this layout, freed once.
        unsafe { api::dealloc::<CarveOrder>(hole, layout) };
        // The second span serves its carved first page; when that runs out, the hole must
        // come before any block from a fresh page of the second span.
        loop {
            // SAFETY: a valid layout.
            let p = unsafe { api::alloc::<CarveOrder>(layout) };
            if p == hole {
                live[7] = p;
                break;
            }
            assert_eq!(span_of(p), second);
            assert!(
                p as usize - second < 4096,
                "carved a fresh page before reusing the hole"
            );
            live.push(p);
        }
        for p in live {
            // SAFETY: a live block of this configuration with this layout, freed once.
            unsafe { api::dealloc::<CarveOrder>(p, layout) };
        }
    })
    .join()
    .unwrap();
}

// Used by one test only (see `span_counting_config!`).
span_counting_config!(RemotePartial, typenum::U65536);

#[test]
fn partial_spans_emptied_by_other_threads_are_released_to_a_live_owner() {
    std::thread::spawn(|| {
        let span = RemotePartial::SPAN_SIZE;
        let other = Layout::from_size_align(3000, 16).unwrap();
        // SAFETY (all calls below): valid layouts; each block is freed once.
        unsafe { api::dealloc::<RemotePartial>(api::alloc::<RemotePartial>(other), other) };
        let before = api::statistics::<RemotePartial>().unwrap().mapped;
        let per_span = 64; // 1000-byte blocks in a 64 KiB span
        let blocks = filled_blocks::<RemotePartial>(per_span * REMOTE_SPANS);
        // One remote free per span: each full span sends a notice ...
        let (first, rest): (Vec<_>, Vec<_>) = blocks
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % per_span == 0);
        let strip = |v: Vec<(usize, usize)>| v.into_iter().map(|(_, p)| p).collect::<Vec<_>>();
        let first = strip(first);
        let rest = strip(rest);
        std::thread::spawn(move || {
            let layout = Layout::from_size_align(1000, 16).unwrap();
            for p in first {
                // SAFETY: a live block of this configuration with this layout, freed once.
                unsafe { api::dealloc::<RemotePartial>(p as *mut u8, layout) };
            }
        })
        .join()
        .unwrap();
        // ... which refills of another class take: the spans become partial.
        let mut keep: Vec<*mut u8> = (0..100)
            // SAFETY: a valid layout.
            .map(|_| unsafe { api::alloc::<RemotePartial>(other) })
            .collect();
        // Now another thread frees all the other blocks: the spans are empty, and the owner
        // (still allocating, but not this class) must release them.
        std::thread::spawn(move || {
            let layout = Layout::from_size_align(1000, 16).unwrap();
            for p in rest {
                // SAFETY: a live block of this configuration with this layout, freed once.
                unsafe { api::dealloc::<RemotePartial>(p as *mut u8, layout) };
            }
        })
        .join()
        .unwrap();
        // SAFETY: a valid layout.
        keep.extend((0..100).map(|_| unsafe { api::alloc::<RemotePartial>(other) }));
        let after = api::statistics::<RemotePartial>().unwrap().mapped;
        for p in keep {
            // SAFETY: a live block of this configuration with this layout, freed once.
            unsafe { api::dealloc::<RemotePartial>(p, other) };
        }
        // Left: the 1000-byte class's active span and the 3000-byte class's spans (200
        // blocks of 21 per span).
        assert!(
            after <= before + 12 * span,
            "before {before} after {after}: {} spans",
            (after - before) / span
        );
    })
    .join()
    .unwrap();
}

// Used by one test only (see `span_counting_config!`).
span_counting_config!(RemoteChurn, typenum::U16384);

#[test]
fn blocks_passed_between_exiting_threads_leave_only_heap_records_mapped() {
    use std::sync::{Arc, Mutex};
    const SIZES: [usize; 7] = [16, 48, 128, 496, 1000, 2048, 5000];
    let layout = |k: u64| Layout::from_size_align(SIZES[k as usize % SIZES.len()], 16).unwrap();
    let before = api::statistics::<RemoteChurn>().unwrap();
    // Blocks anyone may free, with the seed their first byte holds.
    let pool: Arc<Mutex<Vec<(usize, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    // Under Miri, fewer waves and operations: the same churn, smaller.
    let (waves, ops) = if cfg!(miri) {
        (4u64, 150)
    } else {
        (40u64, 3000)
    };
    for wave in 0..waves {
        let threads: Vec<_> = (0..6u64)
            .map(|t| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    let mut x = (wave * 6 + t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let mut next = move || {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x
                    };
                    let mut mine: Vec<(usize, u64)> = Vec::new();
                    for _ in 0..ops {
                        let r = next();
                        let k = r >> 8;
                        match r % 5 {
                            0 | 1 => {
                                // SAFETY: valid layout; the block holds at least one byte.
                                let p = unsafe { api::alloc::<RemoteChurn>(layout(k)) };
                                assert!(!p.is_null());
                                unsafe { *p = k as u8 };
                                mine.push((p as usize, k));
                            }
                            2 => {
                                if let Some(b) = mine.pop() {
                                    pool.lock().unwrap().push(b);
                                }
                            }
                            3 => {
                                let taken = {
                                    let mut pool = pool.lock().unwrap();
                                    let n = pool.len();
                                    (n > 0).then(|| pool.swap_remove(k as usize % n))
                                };
                                if let Some((p, k)) = taken {
                                    // SAFETY: a live block of this layout, freed once.
                                    unsafe {
                                        assert_eq!(*(p as *mut u8), k as u8);
                                        api::dealloc::<RemoteChurn>(p as *mut u8, layout(k));
                                    }
                                }
                            }
                            _ => {
                                if !mine.is_empty() {
                                    let (p, k) = mine.swap_remove(k as usize % mine.len());
                                    // SAFETY: our live block, freed once.
                                    unsafe { api::dealloc::<RemoteChurn>(p as *mut u8, layout(k)) };
                                }
                            }
                        }
                    }
                    // The rest outlives this thread.
                    pool.lock().unwrap().extend(mine);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
    // A thread that never allocates frees what is left: remote frees only.
    let rest = core::mem::take(&mut *pool.lock().unwrap());
    std::thread::spawn(move || {
        for (p, k) in rest {
            // SAFETY: live blocks of these layouts, freed once.
            unsafe {
                assert_eq!(*(p as *mut u8), k as u8);
                api::dealloc::<RemoteChurn>(p as *mut u8, layout(k));
            }
        }
    })
    .join()
    .unwrap();
    let after = api::statistics::<RemoteChurn>().unwrap();
    let extra = mapped_beyond_heap_records::<RemoteChurn>(&before, &after);
    assert_eq!(
        extra,
        0,
        "{} heap records and {} spans mapped",
        after.heaps - before.heaps,
        extra / RemoteChurn::SPAN_SIZE
    );
}

/// Bytes `C` mapped between the two snapshots beyond the heap records it created.
fn mapped_beyond_heap_records<C: Instance>(
    before: &crate::Statistics,
    after: &crate::Statistics,
) -> usize {
    let record =
        core::mem::size_of::<crate::heap::HeapRecord<C>>().next_multiple_of(crate::os::page_size());
    after.mapped - before.mapped - (after.heaps - before.heaps) * record
}

// Used by one test only.
test_config!(WarmFirst, typenum::U65536, ENABLE_STATISTICS: bool = true);

#[test]
fn cached_runs_serve_large_blocks_before_the_reserve_and_new_mappings() {
    let two_spans = Layout::from_size_align(100 << 10, 16).unwrap();
    // A thread frees 40 two-span runs (the thread cache passes what exceeds its bounds to
    // the global cache) and exits: its heap, with the reserve of its last mapping, waits
    // for the next thread, its runs in the global cache.
    let freed: Vec<usize> = std::thread::spawn(move || {
        // SAFETY: valid layout; every block is freed once.
        let blocks: Vec<*mut u8> = (0..40)
            .map(|_| unsafe { api::alloc::<WarmFirst>(two_spans) })
            .collect();
        for &p in &blocks {
            // SAFETY: allocated above with this layout.
            unsafe { api::dealloc::<WarmFirst>(p, two_spans) };
        }
        blocks.into_iter().map(|p| p as usize).collect()
    })
    .join()
    .unwrap();
    let before = WarmFirst::global().statistics().unwrap();
    std::thread::spawn(move || {
        // The cached runs' pages are resident, the reserve's untouched: the runs come
        // first (the reserve first kept a pipeline's producers touching fresh pages while
        // the runs their consumer freed waited in the global cache).
        for _ in 0..40 {
            // SAFETY: valid layout; the block is kept (freed with the process).
            let p = unsafe { api::alloc::<WarmFirst>(two_spans) };
            assert!(
                freed.contains(&(p as usize)),
                "a two-span block came from fresh memory while freed runs were cached"
            );
        }
    })
    .join()
    .unwrap();
    let after = WarmFirst::global().statistics().unwrap();
    assert_eq!(after.mapped, before.mapped, "nothing new was mapped");
}

// Used by one test only, so its orphan list holds only that test's heap.
test_config!(SpareSpan, typenum::U65536);

#[test]
fn a_class_gets_back_its_own_part_carved_span_before_other_classes_take_it() {
    let small = Layout::from_size_align(16, 16).unwrap();
    let medium = Layout::from_size_align(16 * 1024, 16).unwrap();
    let span_of = |p: *mut u8| p as usize & !(SpareSpan::SPAN_SIZE - 1);
    // Medium blocks over several spans must not land in `spare`; then the small class's
    // next block must.
    let churn_then_small = move |spare: usize| {
        // SAFETY (all calls): valid layouts; every block is freed once.
        let blocks: Vec<*mut u8> = (0..12)
            .map(|_| unsafe { api::alloc::<SpareSpan>(medium) })
            .collect();
        for &p in &blocks {
            assert!(!p.is_null());
            assert_ne!(
                span_of(p),
                spare,
                "a medium block took the small class's span"
            );
            // SAFETY: a live 16 KiB block.
            unsafe { p.write_bytes(0xA5, medium.size()) };
        }
        for p in blocks {
            // SAFETY: a live block of this layout, freed once.
            unsafe { api::dealloc::<SpareSpan>(p, medium) };
        }
        // SAFETY: a valid layout.
        let p = unsafe { api::alloc::<SpareSpan>(small) };
        assert_eq!(
            span_of(p),
            spare,
            "the small class did not get its span back"
        );
        p
    };
    // A thread frees its only small block and exits: its active span, part-carved and
    // empty, is retired into the class's spare. (While the thread lives, an emptied active
    // span stays in its bin; a spare comes from a span that had left it.)
    let spare = std::thread::spawn(move || {
        // SAFETY: a valid layout; the block is freed right away, emptying its span.
        let p = unsafe { api::alloc::<SpareSpan>(small) };
        // SAFETY: the live block just allocated.
        unsafe { api::dealloc::<SpareSpan>(p, small) };
        span_of(p)
    })
    .join()
    .unwrap();
    // The next thread adopts the exited thread's heap, spare span included.
    std::thread::spawn(move || {
        let p = churn_then_small(spare);
        // SAFETY: the live block just allocated.
        unsafe { api::dealloc::<SpareSpan>(p, small) };
    })
    .join()
    .unwrap();
}

// Used by one test only (see `span_counting_config!`).
span_counting_config!(LateAlloc, typenum::U65536);

/// Whether the thread's heap was already retired when the late destructor ran, and the
/// blocks it allocated, as addresses (`None` if it panicked).
static LATE_BLOCKS: std::sync::Mutex<Option<(bool, Vec<usize>)>> = std::sync::Mutex::new(None);

/// A pthread key destructor that runs after `LateAlloc`'s own thread-exit key retired the
/// thread's heap, so its allocations are served by an orphaned heap.
unsafe extern "C" fn allocate_after_exit(_: *mut libc::c_void) {
    // SAFETY: the configuration's thread slot, valid for the whole thread.
    let retired = unsafe { (*LateAlloc::thread_state()).status.get() } == crate::thread_state::DEAD;
    // A panic must not unwind out of an `extern "C"` function.
    let blocks = std::panic::catch_unwind(|| filled_blocks::<LateAlloc>(64 * 3 + 10)).ok();
    *LATE_BLOCKS.lock().unwrap_or_else(|e| e.into_inner()) = blocks.map(|b| (retired, b));
}

#[test]
fn blocks_allocated_after_thread_exit_go_back_when_other_threads_free_them() {
    let before = api::statistics::<LateAlloc>().unwrap();
    std::thread::spawn(|| {
        // The first heap of the configuration creates its thread-exit key, so ours comes
        // later and (glibc runs keys in order) its destructor runs after the retirement.
        let layout = Layout::from_size_align(16, 16).unwrap();
        // SAFETY: valid layout; freed once.
        unsafe { api::dealloc::<LateAlloc>(api::alloc::<LateAlloc>(layout), layout) };
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: a valid out pointer and destructor; a non-null value makes it run.
        unsafe {
            assert_eq!(
                libc::pthread_key_create(&mut key, Some(allocate_after_exit)),
                0
            );
            assert_eq!(
                libc::pthread_setspecific(key, core::ptr::dangling::<libc::c_void>()),
                0
            );
        }
    })
    .join()
    .unwrap();
    let (retired, blocks) = LATE_BLOCKS
        .lock()
        .unwrap()
        .take()
        .expect("the late destructor ran and did not panic");
    // (glibc runs key destructors in key order; a key freed meanwhile by a concurrent test
    // could give ours a lower slot.)
    assert!(
        retired,
        "the late destructor ran before the heap was retired"
    );
    let held = api::statistics::<LateAlloc>().unwrap().mapped;
    assert!(
        held >= before.mapped + 3 * LateAlloc::SPAN_SIZE,
        "held {held}"
    );
    // Another thread frees them all: every span must go back, as for blocks allocated
    // before the exit.
    free_on_other_thread::<LateAlloc>(blocks);
    let after = api::statistics::<LateAlloc>().unwrap();
    let extra = mapped_beyond_heap_records::<LateAlloc>(&before, &after);
    assert_eq!(
        extra,
        0,
        "{} spans still mapped",
        extra / LateAlloc::SPAN_SIZE
    );
}

#[test]
fn a_buffer_growing_in_small_steps_moves_a_logarithmic_number_of_times() {
    // From 1 KiB to the top medium class in 64-byte steps: 492 reallocs. Each move leaves
    // 37.5 % headroom, rounded up to 512 bytes, so the block moves at most about
    // log₁.₃₇₅(32) ≈ 11 times (8 here, 9 without the rounding); without headroom it would
    // move at every distinct medium class (25 times).
    let mut size = 1024;
    let mut layout = Layout::from_size_align(size, 8).unwrap();
    // SAFETY: non-zero layout; every realloc passes the block's current layout.
    let mut p = unsafe { api::alloc::<Default64k>(layout) };
    fill(p, size, 7);
    let mut moves = 0;
    while size + 64 <= Default64k::MEDIUM_LIMIT {
        // SAFETY: as above.
        let q = unsafe { api::realloc::<Default64k>(p, layout, size + 64) };
        assert!(!q.is_null());
        if q != p {
            moves += 1;
            // A move copied the contents (in place, nothing touched them).
            check(q, size, 7);
        }
        fill(q.wrapping_add(size), 64, 7u8.wrapping_add(size as u8));
        p = q;
        size += 64;
        layout = Layout::from_size_align(size, 8).unwrap();
    }
    assert!((8..=12).contains(&moves), "{moves} moves");
    check(p, size, 7);
    // SAFETY: the live block with its layout.
    unsafe { api::dealloc::<Default64k>(p, layout) };
}

#[test]
fn a_growing_medium_block_is_rounded_up_to_the_coarser_realloc_step() {
    // 1280 bytes is a class of its own. Growing it by one byte moves it with 37.5 %
    // headroom (1760 bytes), rounded up to 512: a 2048-byte block, so growing on to 2048
    // stays in place. Without the rounding it would move into the 1792-byte class.
    let small = Layout::from_size_align(1280, 8).unwrap();
    // SAFETY: non-zero layouts; each realloc passes the block's current layout.
    unsafe {
        let p = api::alloc::<Default64k>(small);
        fill(p, 1280, 3);
        let q = api::realloc::<Default64k>(p, small, 1281);
        assert!(!q.is_null());
        assert_ne!(q, p, "1281 bytes do not fit the 1280-byte class");
        check(q, 1280, 3);
        let grown = Layout::from_size_align(1281, 8).unwrap();
        let r = api::realloc::<Default64k>(q, grown, 2048);
        assert_eq!(r, q, "the moved block has room for 2048 bytes");
        check(r, 1280, 3);
        api::dealloc::<Default64k>(r, Layout::from_size_align(2048, 8).unwrap());
    }
}

// Used by one test only.
test_config!(ForkGate, typenum::U65536);

#[test]
#[cfg_attr(miri, ignore = "sleeps to let a blocked thread show it is blocked")]
fn fork_waits_for_notices_in_flight_and_holds_new_ones_back() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;
    let global = ForkGate::global();
    // A remote free between taking a span's notify flag and delivering its notice.
    global.enter_notice_window();
    let prepared = Arc::new(AtomicBool::new(false));
    let (finish_tx, finish_rx) = mpsc::channel::<()>();
    let forker = {
        let prepared = Arc::clone(&prepared);
        std::thread::spawn(move || {
            ForkGate::global().prepare_fork();
            prepared.store(true, Ordering::SeqCst);
            finish_rx.recv().unwrap();
            // SAFETY: this thread ran prepare_fork.
            unsafe { ForkGate::global().parent_after_fork() };
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !prepared.load(Ordering::SeqCst),
        "fork prepared while a notice was in flight"
    );
    // A second sender arriving now waits for the fork.
    let entered = Arc::new(AtomicBool::new(false));
    let sender = {
        let entered = Arc::clone(&entered);
        std::thread::spawn(move || {
            ForkGate::global().enter_notice_window();
            entered.store(true, Ordering::SeqCst);
            ForkGate::global().leave_notice_window();
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !entered.load(Ordering::SeqCst),
        "a sender entered a fork's prepare"
    );
    // The notice lands: the fork goes ahead (and holds every lock) ...
    global.leave_notice_window();
    while !prepared.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    assert!(
        !entered.load(Ordering::SeqCst),
        "a sender entered during the fork"
    );
    // ... and once it is done, the waiting sender goes on.
    finish_tx.send(()).unwrap();
    forker.join().unwrap();
    sender.join().unwrap();
    assert!(entered.load(Ordering::SeqCst));
}

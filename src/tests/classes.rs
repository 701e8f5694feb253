//! Size classes and spans: every class and kind round-trips, blocks are never handed out
//! twice, freed blocks are reused before fresh pages, spans and cached runs are reused
//! before new mappings, the cacheless configuration unmaps what it frees.

use super::*;

#[test]
fn every_size_class_and_kind_roundtrips() {
    for align in [1, 8, 16, 32, 64, 128, 256, 4096, 32768, 65536, 1 << 20] {
        // Under Miri every class once at the natural alignment, samples at the others.
        let every_class = cfg!(miri) && align == 16;
        roundtrip::<Default64k>(&sizes_of_every_kind::<Default64k>(every_class), align);
        roundtrip::<NoCache16k>(&sizes_of_every_kind::<NoCache16k>(every_class), align);
    }
}

// 16 KiB spans, so few blocks fill several (about 340 of 48 bytes each).
test_config!(Fill16k, typenum::U16384);

#[test]
fn many_blocks_of_one_class_fill_several_spans() {
    let layout = Layout::from_size_align(48, 8).unwrap();
    // Under Miri 1000 blocks: two full 16 KiB spans and part of a third.
    let ptrs: Vec<_> = (0..if cfg!(miri) { 1000 } else { 100_000 })
        .map(|i| {
            // SAFETY: valid layout.
            let p = unsafe { api::alloc::<Fill16k>(layout) };
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
        unsafe { api::dealloc::<Fill16k>(p, layout) };
    }
}

#[test]
fn cacheless_config_unmaps_what_it_frees() {
    let warm = Layout::from_size_align(16, 16).unwrap();
    // SAFETY: valid layout; sets up this thread's heap before the baseline.
    unsafe { api::dealloc::<NoCacheAlone>(api::alloc::<NoCacheAlone>(warm), warm) };
    let before = api::statistics::<NoCacheAlone>().unwrap().mapped;
    let mut blocks = Vec::new();
    // Fewer blocks under Miri (its time grows faster than linearly with the mappings
    // alive at once), spread over the same sizes.
    let count = if cfg!(miri) { 40 } else { 4000 };
    for i in 0..count {
        let size = 16 + (i * 977 * (4000 / count)) % 300_000;
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
            // SAFETY: as above.
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

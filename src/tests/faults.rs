//! Refusal: the OS refusing memory (injected) gives null, never a panic or a lost block.

use super::*;

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

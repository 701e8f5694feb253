//! Cross-thread frees: blocks return to their owner, full and partial spans emptied by
//! other threads come back to a live owner, an exited thread's spans are released, and
//! `fork` waits for notices in flight.

use super::*;

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

// Each used by one test only (see `span_counting_config!`).
span_counting_config!(RemoteLive, typenum::U65536);
span_counting_config!(RemoteOrphan, typenum::U65536);

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
        // (Under Miri 600 pairs: still more than the 256 blocks of the first carved page,
        // after which every pair refills.)
        for _ in 0..if cfg!(miri) { 600 } else { 2000 } {
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

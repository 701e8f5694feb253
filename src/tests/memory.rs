//! Where memory goes: decay of cached runs (driven by each configuration's test clock,
//! `Global::advance_clock`, never by sleeping), `collect()`, and statistics that add up.
//! Each test has configurations of its own, so its counters see nothing else.

use super::{check, fill};
use crate::api;
use crate::instance::Instance;
use crate::params::Params;
use crate::test_config::test_config;
use crate::Statistics;
use core::alloc::Layout;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};

/// `mapped` is the sum of the places a mapped byte can be.
fn assert_adds_up(s: &Statistics) {
    assert_eq!(
        s.mapped,
        s.in_use + s.thread_cache + s.global_cache + s.reserve + s.released + s.heap_records,
        "{s:#?}"
    );
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).unwrap()
}

/// Bytes of a block `filled` writes and `check_free` checks (fewer under Miri).
const FILL: usize = if cfg!(miri) { 32 } else { 8192 };

/// Allocates a filled block of `C`.
fn filled<C: Instance>(size: usize, seed: u8) -> (usize, Layout) {
    let l = layout(size);
    // SAFETY: a non-zero layout.
    let p = unsafe { api::alloc::<C>(l) };
    assert!(!p.is_null(), "{size} bytes refused");
    fill(p, size.min(FILL), seed);
    (p as usize, l)
}

/// Checks and frees blocks made by [`filled`].
fn check_free<C: Instance>(blocks: Vec<(usize, Layout)>, seed: u8) {
    for (p, l) in blocks {
        check(p as *mut u8, l.size().min(FILL), seed);
        // SAFETY: allocated by `filled` with this layout, freed once.
        unsafe { api::dealloc::<C>(p as *mut u8, l) };
    }
}

/// Allocator events on the calling thread until it has read the clock at least once:
/// huge blocks tick on every allocation and free and are not cached.
fn tick_clock<C: Instance>() {
    for _ in 0..2 * crate::params::TICKS_PER_CLOCK_READ {
        let (p, l) = filled::<C>(C::LARGE_LIMIT + 1, 1);
        // SAFETY: just allocated with this layout.
        unsafe { api::dealloc::<C>(p as *mut u8, l) };
    }
}

/// Sizes that fill the caches: single spans (40 KiB runs and medium spans) and runs of
/// 2–16 spans (under Miri 60 medium blocks, 15 spans, instead of 200: the caches' bytes
/// are mostly the runs').
fn cache_filling_sizes() -> Vec<usize> {
    let mut sizes = vec![40 << 10; 40];
    sizes.extend((2..=16).map(|spans| spans * (64 << 10) - 4096));
    sizes.extend(vec![16 << 10; if cfg!(miri) { 60 } else { 200 }]);
    sizes
}

test_config!(Decaying, typenum::U65536, ENABLE_STATISTICS: bool = true, DECAY_MS: u64 = 1000);

#[test]
fn decay_gives_back_what_nobody_reused_once_the_delay_passed_and_nothing_in_use() {
    // A thread frees a working set (into its thread cache and the global cache), keeps a
    // few blocks of each kind live, then stays alive and idle.
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let idle = std::thread::spawn(move || {
        let sizes = cache_filling_sizes();
        let blocks: Vec<_> = sizes.iter().map(|&s| filled::<Decaying>(s, 5)).collect();
        let kept: Vec<_> = [100, 3000, 20_000, 200_000, 2 << 20]
            .iter()
            .map(|&s| filled::<Decaying>(s, 9))
            .collect();
        check_free::<Decaying>(blocks, 5);
        ready_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        // The blocks it kept are intact, whatever the sweeps gave back meanwhile.
        check_free::<Decaying>(kept, 9);
    });
    ready_rx.recv().unwrap();
    let before = Decaying::global().statistics().unwrap();
    assert_adds_up(&before);
    assert!(
        before.thread_cache >= 4 << 20 && before.global_cache >= 4 << 20,
        "the working set went to the caches: {before:#?}"
    );

    // Half the delay later, another thread's allocations read the clock: nothing is old
    // enough yet.
    Decaying::global().advance_clock(500);
    tick_clock::<Decaying>();
    let half = Decaying::global().statistics().unwrap();
    assert!(
        half.cached() >= before.cached() - (1 << 20),
        "runs went back before the delay: {} KiB cached, {} KiB before",
        half.cached() >> 10,
        before.cached() >> 10
    );

    // Past the delay (plus a sweep period): everything the idle thread and the global
    // cache held goes back, though that thread is alive; what holds blocks stays.
    Decaying::global().advance_clock(800);
    tick_clock::<Decaying>();
    let after = Decaying::global().statistics().unwrap();
    assert_adds_up(&after);
    assert_eq!(after.cached(), 0, "{after:#?}");
    assert_eq!(after.in_use, before.in_use, "spans in use stay: {after:#?}");
    assert!(after.mapped < before.mapped, "{after:#?}");
    done_tx.send(()).unwrap();
    idle.join().unwrap();
}

test_config!(NeverDecays, typenum::U65536, ENABLE_STATISTICS: bool = true, DECAY_MS: u64 = crate::config::DECAY_NEVER);

#[test]
fn with_decay_never_cached_runs_stay_however_long() {
    std::thread::spawn(|| {
        let blocks: Vec<_> = cache_filling_sizes()
            .iter()
            .map(|&s| filled::<NeverDecays>(s, 2))
            .collect();
        check_free::<NeverDecays>(blocks, 2);
    })
    .join()
    .unwrap();
    let before = NeverDecays::global().statistics().unwrap();
    NeverDecays::global().advance_clock(3_600_000);
    tick_clock::<NeverDecays>();
    NeverDecays::global().advance_clock(3_600_000);
    tick_clock::<NeverDecays>();
    let after = NeverDecays::global().statistics().unwrap();
    assert!(before.global_cache >= 4 << 20, "{before:#?}");
    assert_eq!(after.global_cache, before.global_cache, "{after:#?}");
}

test_config!(Prompt, typenum::U65536, ENABLE_STATISTICS: bool = true, DECAY_MS: u64 = 0);

#[test]
fn with_decay_zero_nothing_is_cached() {
    let blocks: Vec<_> = cache_filling_sizes()
        .iter()
        .map(|&s| filled::<Prompt>(s, 4))
        .collect();
    check_free::<Prompt>(blocks, 4);
    let s = Prompt::global().statistics().unwrap();
    assert_adds_up(&s);
    assert_eq!(s.cached(), 0, "{s:#?}");
}

test_config!(Collected, typenum::U65536, ENABLE_STATISTICS: bool = true, DECAY_MS: u64 = crate::config::DECAY_NEVER);

#[test]
fn collect_gives_back_every_cached_span_and_the_reserves() {
    // Two threads fill the caches; one exits (its heap, with its reserve and spares, is
    // orphaned), one stays alive and idle.
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let idle = std::thread::spawn(move || {
        let blocks: Vec<_> = cache_filling_sizes()
            .iter()
            .map(|&s| filled::<Collected>(s, 6))
            .collect();
        check_free::<Collected>(blocks, 6);
        ready_tx.send(()).unwrap();
        done_rx.recv().unwrap();
    });
    std::thread::spawn(|| {
        let blocks: Vec<_> = cache_filling_sizes()
            .iter()
            .map(|&s| filled::<Collected>(s, 7))
            .collect();
        check_free::<Collected>(blocks, 7);
    })
    .join()
    .unwrap();
    ready_rx.recv().unwrap();
    // This thread holds blocks while it collects.
    let kept: Vec<_> = [64, 5000, 300_000]
        .iter()
        .map(|&s| filled::<Collected>(s, 8))
        .collect();
    let before = Collected::global().statistics().unwrap();
    // (The two threads ran side by side: one may have reused what the other freed.)
    assert!(before.cached() >= 8 << 20, "{before:#?}");
    api::collect::<Collected>();
    let after = Collected::global().statistics().unwrap();
    assert_adds_up(&after);
    assert_eq!(after.cached(), 0, "{after:#?}");
    // Only the idle thread's reserve is out of reach (address space, never touched).
    assert!(
        after.reserve <= 64 * Collected::SPAN_SIZE,
        "one live thread's reserve at most: {after:#?}"
    );
    assert_eq!(after.in_use, before.in_use);
    assert!(after.mapped < before.mapped, "{after:#?}");
    check_free::<Collected>(kept, 8);
    done_tx.send(()).unwrap();
    idle.join().unwrap();
}

test_config!(CollectRace, typenum::U16384, ENABLE_STATISTICS: bool = true, MAX_THREAD_SPAN_CACHE: usize = 4);

#[test]
fn collect_while_other_threads_allocate_and_free_loses_and_corrupts_nothing() {
    const THREADS: usize = 3;
    let start = Arc::new(Barrier::new(THREADS + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let mut x = 0x2545_f491_4f6c_dd1du64 ^ t as u64;
                let mut live: Vec<(usize, Layout, u8)> = Vec::new();
                for i in 0..super::scaled(20_000) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let size = match x % 16 {
                        0 => 20_000 + (x >> 8) as usize % 300_000,
                        1..=4 => 1025 + (x >> 8) as usize % 8000,
                        _ => 1 + (x >> 8) as usize % 1024,
                    };
                    let seed = i as u8;
                    let (p, l) = filled::<CollectRace>(size, seed);
                    live.push((p, l, seed));
                    if live.len() > 300 || x.is_multiple_of(3) {
                        let (p, l, seed) = live.swap_remove((x >> 20) as usize % live.len());
                        check(p as *mut u8, l.size().min(FILL), seed);
                        // SAFETY: a live block with this layout, freed once.
                        unsafe { api::dealloc::<CollectRace>(p as *mut u8, l) };
                    }
                }
                for (p, l, seed) in live {
                    check(p as *mut u8, l.size().min(FILL), seed);
                    // SAFETY: as above.
                    unsafe { api::dealloc::<CollectRace>(p as *mut u8, l) };
                }
            })
        })
        .collect();
    start.wait();
    let mut collections = 0;
    while !workers.iter().all(|w| w.is_finished()) {
        api::collect::<CollectRace>();
        collections += 1;
    }
    for w in workers {
        w.join().unwrap();
    }
    api::collect::<CollectRace>();
    let s = CollectRace::global().statistics().unwrap();
    assert!(collections > 0);
    assert_adds_up(&s);
    assert_eq!((s.live, s.cached()), (0, 0), "{s:#?}");
}

test_config!(Accounted, typenum::U65536, ENABLE_STATISTICS: bool = true);

#[test]
fn statistics_add_up_after_random_workloads() {
    // Threads allocate blocks of every kind, free some, hand others to the next thread to
    // free and exit; at each quiet point the counters must add up, and `live` and the
    // class counts must equal what the test holds.
    let mut held: Vec<(usize, Layout)> = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    // Under Miri three rounds: each still frees the previous exited thread's blocks.
    for round in 0..if cfg!(miri) { 3 } else { 6 } {
        let (tx, rx) = mpsc::channel::<Vec<(usize, Layout)>>();
        let handed: Vec<(usize, Layout)> = std::mem::take(&mut held);
        let seed = x;
        let worker = std::thread::spawn(move || {
            // Frees what the previous round left (remote frees of an exited thread's
            // blocks), then works.
            check_free::<Accounted>(handed, 3);
            let mut x = seed;
            let mut mine = Vec::new();
            for _ in 0..super::scaled(3000).max(100) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let size = match x % 32 {
                    0 => 9 << 20,
                    1..=3 => 40_000 + (x >> 8) as usize % 2_000_000,
                    4..=9 => 1025 + (x >> 8) as usize % 31_000,
                    _ => 1 + (x >> 8) as usize % 1024,
                };
                mine.push(filled::<Accounted>(size, 3));
                if x.is_multiple_of(4) {
                    let victim = mine.swap_remove((x >> 16) as usize % mine.len());
                    check_free::<Accounted>(vec![victim], 3);
                }
            }
            tx.send(mine).unwrap();
        });
        worker.join().unwrap();
        held = rx.recv().unwrap();
        x = x.wrapping_mul(0x2545_f491_4f6c_dd1d).wrapping_add(round);
        let s = Accounted::global().statistics().unwrap();
        assert_adds_up(&s);
        let live: usize = held.iter().map(|(_, l)| l.size()).sum();
        assert_eq!(s.live, live, "round {round}");
        let small = held
            .iter()
            .filter(|(_, l)| l.size() <= Accounted::MEDIUM_LIMIT)
            .count();
        let counted: usize = s.classes.iter().map(|c| c.blocks).sum();
        assert_eq!(counted, small, "round {round}: {:?}", s.classes);
        assert!(s.classes.bytes() <= s.in_use);
        assert!(s.live <= s.in_use, "{s:#?}");
    }
    check_free::<Accounted>(held, 3);
    let s = Accounted::global().statistics().unwrap();
    assert_adds_up(&s);
    assert_eq!(s.live, 0);
}

test_config!(PhaseChange, typenum::U65536, ENABLE_STATISTICS: bool = true, DECAY_MS: u64 = crate::config::DECAY_NEVER);

#[test]
fn cached_long_runs_serve_later_shorter_requests_without_new_mappings() {
    // Under Miri a quarter of each phase (the same proportions).
    let (bigs, singles, triples) = if cfg!(miri) {
        (5, 150, 25)
    } else {
        (20, 600, 100)
    };
    std::thread::spawn(move || {
        // A phase of 3 MiB blocks (49-span runs)...
        let big: Vec<_> = (0..bigs)
            .map(|i| filled::<PhaseChange>(3 << 20, i as u8))
            .collect();
        for (i, block) in big.into_iter().enumerate() {
            check_free::<PhaseChange>(vec![block], i as u8);
        }
        let before = PhaseChange::global().statistics().unwrap();
        assert!(before.cached() >= (2 * bigs) << 20, "{before:#?}");
        // ... then one of single spans (40 KiB blocks) and 3-span runs: the cached runs
        // are cut up for them, and nothing new is mapped.
        let mut small: Vec<_> = (0..singles)
            .map(|_| filled::<PhaseChange>(40 << 10, 1))
            .collect();
        small.extend((0..triples).map(|_| filled::<PhaseChange>(150 << 10, 1)));
        let after = PhaseChange::global().statistics().unwrap();
        assert_eq!(after.mapped_total, before.mapped_total, "{after:#?}");
        // Each block took a run of at most twice its length (longer ones were cut, the
        // rest cached).
        let spans = (after.in_use - before.in_use) / PhaseChange::SPAN_SIZE;
        assert!(
            (singles + 3 * triples..=singles + 2 * 3 * triples).contains(&spans),
            "{spans} spans: {after:#?}"
        );
        check_free::<PhaseChange>(small, 1);
    })
    .join()
    .unwrap();
}

test_config!(WholeRuns, typenum::U65536, ENABLE_STATISTICS: bool = true, DECAY_MS: u64 = crate::config::DECAY_NEVER);

#[test]
fn a_run_up_to_twice_the_request_is_taken_whole_a_longer_one_is_split() {
    std::thread::spawn(|| {
        let span = WholeRuns::SPAN_SIZE;
        // Blocks that need 10 spans, cached.
        let tens: Vec<_> = (0..4)
            .map(|_| filled::<WholeRuns>(10 * span - 4096, 2))
            .collect();
        check_free::<WholeRuns>(tens, 2);
        let s0 = WholeRuns::global().statistics().unwrap();
        // 6 spans: 10 ≤ 2 × 6, the run is taken whole (its rest would be a crumb).
        let six = filled::<WholeRuns>(6 * span - 4096, 3);
        let s1 = WholeRuns::global().statistics().unwrap();
        assert_eq!(s1.in_use - s0.in_use, 10 * span, "{s1:#?}");
        // 4 spans: 10 > 2 × 4, the run is split; 6 spans go back to the cache.
        let four = filled::<WholeRuns>(4 * span - 4096, 4);
        let s2 = WholeRuns::global().statistics().unwrap();
        assert_eq!(s2.in_use - s1.in_use, 4 * span, "{s2:#?}");
        assert_eq!(s2.mapped_total, s0.mapped_total);
        check_free::<WholeRuns>(vec![six], 3);
        check_free::<WholeRuns>(vec![four], 4);
    })
    .join()
    .unwrap();
}

/// Small blocks the idle producer hands over (61 spans' worth; 12 under Miri).
/// Under Miri 1000: three full spans of 327 blocks, more than the two the sweep may leave.
const IDLE_PRODUCER_BLOCKS: usize = if cfg!(miri) { 1000 } else { 20_000 };
/// Large blocks (two spans each) the producer hands over beside the small ones.
const IDLE_PRODUCER_LARGE: usize = if cfg!(miri) { 6 } else { 40 };

test_config!(IdleProducer, typenum::U65536, ENABLE_STATISTICS: bool = true, DECAY_MS: u64 = 1000);

#[test]
fn spans_emptied_by_a_consumer_go_back_though_their_producer_idles() {
    // A producer allocates 20 000 small blocks (about 70 full spans, each armed for a
    // notice) and 40 large ones, hands them all to a consumer, and idles; the consumer frees
    // them all, sending the small spans back to the idle producer's heap as notices (the
    // large runs go to the global cache).
    let (to_consumer, from_producer) = mpsc::channel::<Vec<(usize, Layout)>>();
    let (freed_tx, freed_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let producer = std::thread::spawn(move || {
        let mut blocks: Vec<_> = (0..IDLE_PRODUCER_BLOCKS)
            .map(|_| filled::<IdleProducer>(200, 6))
            .collect();
        blocks.extend((0..IDLE_PRODUCER_LARGE).map(|_| filled::<IdleProducer>(100_000, 6)));
        to_consumer.send(blocks).unwrap();
        done_rx.recv().unwrap();
    });
    let consumer = std::thread::spawn(move || {
        check_free::<IdleProducer>(from_producer.recv().unwrap(), 6);
        freed_tx.send(()).unwrap();
    });
    freed_rx.recv().unwrap();
    consumer.join().unwrap();
    let before = IdleProducer::global().statistics().unwrap();
    // 200-byte blocks, 327 to a 64 KiB span.
    let spans = IDLE_PRODUCER_BLOCKS / 327;
    assert!(
        before.in_use >= spans * IdleProducer::SPAN_SIZE,
        "{before:#?}"
    );
    // A sweep (another thread's allocations read the clock once a period has passed)
    // settles the idle heap's notices: the emptied spans leave `in_use`...
    IdleProducer::global().advance_clock(200);
    tick_clock::<IdleProducer>();
    let swept = IdleProducer::global().statistics().unwrap();
    assert_adds_up(&swept);
    assert_eq!(swept.live, 0);
    assert!(
        swept.in_use <= 2 * IdleProducer::SPAN_SIZE,
        "the idle producer still pins {} spans: {swept:#?}",
        swept.in_use / IdleProducer::SPAN_SIZE
    );
    // ... and once nobody reused them for the decay time, they go back to the OS.
    IdleProducer::global().advance_clock(1300);
    tick_clock::<IdleProducer>();
    let decayed = IdleProducer::global().statistics().unwrap();
    assert_eq!(decayed.cached(), 0, "{decayed:#?}");
    assert!(
        decayed.resident_estimate() < before.resident_estimate() / 4,
        "{decayed:#?}"
    );
    done_tx.send(()).unwrap();
    producer.join().unwrap();
}

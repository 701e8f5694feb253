//! Freed memory goes back to the OS. With both caches off, a 512 MiB working set of
//! 4 KiB .. 1 MiB blocks that was touched page by page and then freed leaves resident
//! memory within 64 MiB of where it started. With the default cache limits (and
//! `decay_ms: never`, so that only the limits are at work; decay is tested on a test clock
//! in `src/tests/memory.rs`), what a thread keeps after freeing its working set and exiting
//! is bounded by the documented cache limits: at most `max_global_span_cache` (3200)
//! single 64 KiB spans end up in the global cache, everything beyond that is released, and
//! a later thread reuses the cached spans instead of mapping new ones.
//!
//! Resident memory is process-wide, so the tests take a lock and run one at a time; the
//! test harness itself uses the system allocator.
//!
//! Under Miri the tests that read resident memory (`/proc/self/statm`) are ignored; the
//! one that checks only the allocator's statistics runs with fewer blocks.

mod common;

use common::{layout, XorShift};
use rpmalloc::define_rpmalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::Mutex;
use std::thread;

define_rpmalloc!(NoCache, < enable_thread_cache: false, enable_global_cache: false >);
// Default caches (64 KiB spans, 32 single spans per thread, 3200 in the global cache),
// but no decay: these tests are about the caches' bounds and ageing, and must not depend on
// how fast the machine runs them (the decay tests drive a clock of their own).
define_rpmalloc!(Cached, < enable_statistics: true, decay_ms: never >);

const MIB: usize = 1 << 20;
/// Default span size and `max_global_span_cache`.
const SPAN: usize = 64 << 10;
const MAX_GLOBAL_SPAN_CACHE: usize = 3200;
/// Most bytes of single spans the global cache may keep with the defaults.
const GLOBAL_SINGLE_SPAN_LIMIT: usize = MAX_GLOBAL_SPAN_CACHE * SPAN;
/// Allowance for what is resident for other reasons: heap records, span headers, the
/// size classes' active spans, the test harness.
const SLACK: usize = 32 * MIB;
/// How long runs over the global cache's limit may wait: `CACHE_AGING_MS` (250 ms) in
/// `src/params.rs`, plus up to one sweep period (125 ms) before the sweep that finds them
/// old, plus slack for the machine.
const AGING_MS: u64 = 250 + 125 + 100;

static SERIAL: Mutex<()> = Mutex::new(());

fn page_size() -> usize {
    common::page_size()
}

/// Resident set size in bytes: the second field of `/proc/self/statm`, in pages.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm has a resident field");
    pages * page_size()
}

/// Allocates blocks of the given sizes from `a`, writing to every page of each.
fn allocate_touched(a: &dyn GlobalAlloc, sizes: &[usize]) -> Vec<(*mut u8, Layout)> {
    let page = page_size();
    sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let l = layout(size, 16);
            // SAFETY: non-zero size.
            let p = unsafe { a.alloc(l) };
            assert!(!p.is_null(), "{l:?} refused");
            let mut off = 0;
            while off < size {
                // SAFETY: off < size.
                unsafe { p.add(off).write(i as u8 | 1) };
                off += page;
            }
            // SAFETY: size - 1 < size.
            unsafe { p.add(size - 1).write(i as u8 | 1) };
            (p, l)
        })
        .collect()
}

/// Checks a byte per page of each block and frees it with `a`.
fn check_and_free(a: &dyn GlobalAlloc, blocks: Vec<(*mut u8, Layout)>) {
    let page = page_size();
    for (i, (p, l)) in blocks.into_iter().enumerate() {
        let mut off = 0;
        while off < l.size() {
            // SAFETY: off < l.size(), a live block.
            assert_eq!(unsafe { p.add(off).read() }, i as u8 | 1, "block {i}");
            off += page;
        }
        // SAFETY: allocated by `a` with layout l, freed once.
        unsafe { a.dealloc(p, l) };
    }
}

/// Random sizes of 4 KiB .. 1 MiB adding up to at least `total` bytes.
fn random_sizes(seed: u64, total: usize) -> Vec<usize> {
    let mut rng = XorShift::new(seed);
    let mut sizes = Vec::new();
    let mut sum = 0;
    while sum < total {
        let size = rng.range(4096..MIB + 1);
        sizes.push(size);
        sum += size;
    }
    sizes
}

#[test]
#[cfg_attr(
    any(miri, not(target_os = "linux")),
    ignore = "reads resident memory from /proc/self/statm: Linux only, and Miri does not provide it"
)]
fn without_caches_freed_memory_leaves_the_process() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Set the thread's heap up before the baseline.
    let warm = layout(64, 16);
    // SAFETY: valid layout; freed once.
    unsafe { NoCache.dealloc(NoCache.alloc(warm), warm) };

    let sizes = random_sizes(1, 512 * MIB);
    let before = rss();
    let blocks = allocate_touched(&NoCache, &sizes);
    let peak = rss();
    assert!(
        peak >= before + 448 * MIB,
        "touching 512 MiB raised RSS only from {before} to {peak}"
    );
    check_and_free(&NoCache, blocks);
    let after = rss();
    assert!(
        after <= before + 64 * MIB,
        "caches off: RSS {} MiB before, {} MiB with 512 MiB live, {} MiB after freeing it all",
        before / MIB,
        peak / MIB,
        after / MIB
    );
}

#[test]
#[cfg_attr(
    any(miri, not(target_os = "linux")),
    ignore = "reads resident memory from /proc/self/statm: Linux only, and Miri does not provide it"
)]
fn with_caches_an_exited_thread_leaves_at_most_the_global_cache() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());

    // Blocks of 40 KiB are above the medium size classes (32 KiB) and fit one 64 KiB span
    // with its header: each takes a run of exactly one span. 8000 of them are 500 MiB of
    // spans, well beyond the thread cache (32) plus the global cache (3200).
    let before = rss();
    thread::spawn(|| {
        let blocks = allocate_touched(&Cached, &[40 << 10; 8000]);
        check_and_free(&Cached, blocks);
    })
    .join()
    .unwrap();
    let after = rss();
    let stats = Cached.statistics().expect("statistics are enabled");
    // Right after the burst the global cache may also hold as many runs again, ageing.
    assert!(
        stats.global_cache <= 2 * GLOBAL_SINGLE_SPAN_LIMIT,
        "global cache holds {} bytes of single spans, above 2 × 3200 × 64 KiB: {stats:?}",
        stats.global_cache
    );
    assert!(
        after <= before + stats.global_cache + SLACK,
        "RSS {} MiB before, {} MiB after a thread freed 500 MiB and exited, with {} MiB in \
         the global cache: {stats:?}",
        before / MIB,
        after / MIB,
        stats.global_cache / MIB
    );

    // Once the ageing runs are older than the ageing time, the next clock read (here: a
    // new thread's setup) finds them old, and its sweep sends them back to the OS.
    thread::sleep(std::time::Duration::from_millis(AGING_MS));
    thread::spawn(|| {
        let blocks = allocate_touched(&Cached, &[40 << 10]);
        check_and_free(&Cached, blocks);
    })
    .join()
    .unwrap();
    let aged = rss();
    let stats = Cached.statistics().unwrap();
    // That thread took one batch (8 runs) from the global cache and gave it back as a
    // new, young ageing batch.
    let young = 8 * SPAN;
    assert!(
        stats.global_cache <= GLOBAL_SINGLE_SPAN_LIMIT + young,
        "after ageing the global cache still holds {} bytes of single spans, above \
         3200 × 64 KiB plus one batch: {stats:?}",
        stats.global_cache
    );
    assert!(
        aged <= before + GLOBAL_SINGLE_SPAN_LIMIT + young + SLACK,
        "RSS {} MiB before, {} MiB after the ageing runs went back: {stats:?}",
        before / MIB,
        aged / MIB
    );

    // A later thread is served from the global cache, not from new mappings.
    let mapped_total = stats.mapped_total;
    thread::spawn(|| {
        let blocks = allocate_touched(&Cached, &[40 << 10; 3000]);
        check_and_free(&Cached, blocks);
    })
    .join()
    .unwrap();
    let reused = Cached.statistics().unwrap();
    assert!(
        reused.mapped_total - mapped_total <= 16 * MIB,
        "3000 single spans with {} MiB in the global cache mapped {} MiB more: {reused:?}",
        stats.global_cache / MIB,
        (reused.mapped_total - mapped_total) / MIB
    );

    // A mixed working set of 4 KiB .. 1 MiB blocks (512 MiB): whatever the thread does not
    // leave in the global cache is released.
    let before = rss();
    let cached_before = Cached.statistics().unwrap().global_cache;
    thread::spawn(|| {
        let sizes = random_sizes(2, 512 * MIB);
        let blocks = allocate_touched(&Cached, &sizes);
        check_and_free(&Cached, blocks);
    })
    .join()
    .unwrap();
    let after = rss();
    let stats = Cached.statistics().unwrap();
    let grown = stats.global_cache.saturating_sub(cached_before);
    assert!(
        after <= before + grown + SLACK,
        "RSS {} MiB before, {} MiB after a thread freed a mixed 512 MiB and exited, with the \
         global cache grown by {} MiB: {stats:?}",
        before / MIB,
        after / MIB,
        grown / MIB
    );
}

// Its own configuration, so the runs the other tests leave cached do not count here.
define_rpmalloc!(AgedElsewhere, < enable_statistics: true, decay_ms: never >);

#[test]
#[cfg_attr(
    any(miri, not(target_os = "linux")),
    ignore = "reads resident memory from /proc/self/statm: Linux only, and Miri does not provide it"
)]
fn ageing_runs_go_back_when_a_live_thread_uses_other_span_counts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());

    // An exiting thread frees 8000 single-span runs (40 KiB blocks): the global cache keeps
    // its limit (200 MiB) and ages up to as many again.
    thread::spawn(|| {
        let blocks = allocate_touched(&AgedElsewhere, &[40 << 10; 8000]);
        check_and_free(&AgedElsewhere, blocks);
    })
    .join()
    .unwrap();
    let ageing = AgedElsewhere.statistics().expect("statistics are enabled");
    let aged_bytes = ageing.global_cache.saturating_sub(GLOBAL_SINGLE_SPAN_LIMIT);
    assert!(
        aged_bytes >= 64 * MIB,
        "expected single spans ageing beyond the global cache's limit: {ageing:?}"
    );
    let before = rss();

    // Past the ageing time, this thread — alive, so no thread-exit clock read — touches only
    // runs of 3 spans (150 KiB blocks): its allocations tick, a tick reads the clock, and
    // the sweep gives back the expired single spans though no thread touches that count.
    thread::sleep(std::time::Duration::from_millis(AGING_MS));
    let blocks = allocate_touched(&AgedElsewhere, &[150 << 10; 120]);
    check_and_free(&AgedElsewhere, blocks);
    let stats = AgedElsewhere.statistics().unwrap();
    assert!(
        stats.global_cache <= GLOBAL_SINGLE_SPAN_LIMIT + 120 * 3 * SPAN,
        "the expired single spans are still cached: {} MiB before, {} MiB after: {stats:?}",
        ageing.global_cache / MIB,
        stats.global_cache / MIB
    );
    let after = rss();
    assert!(
        after + aged_bytes / 2 <= before,
        "RSS {} MiB before, {} MiB after {} MiB of aged runs should have gone back",
        before / MIB,
        after / MIB,
        aged_bytes / MIB
    );
}

// Its own configuration, so only this test's spans are counted.
define_rpmalloc!(SharedSpans, < enable_statistics: true, decay_ms: never >);

#[test]
fn spans_one_live_thread_frees_serve_another_live_thread() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use std::sync::mpsc;

    // Blocks of 32 000 bytes: the largest medium class, two to a span. 400 of them fill
    // 200 spans; when freed, all but the thread cache's 32 spans go to the global cache.
    // (Under Miri 100: 50 spans, still more than the thread cache keeps.)
    const BLOCKS: usize = if cfg!(miri) { 100 } else { 400 };
    let sizes = [32_000; BLOCKS];
    let (freed_tx, freed_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let keeper = thread::spawn(move || {
        let blocks = allocate_touched(&SharedSpans, &sizes);
        check_and_free(&SharedSpans, blocks);
        freed_tx.send(()).unwrap();
        // Stay alive: what this thread's cache holds is not shared until it exits.
        done_rx.recv().unwrap();
    });
    freed_rx.recv().unwrap();
    let before = SharedSpans.statistics().unwrap();
    assert!(
        // All but the 32-span buffer, less one batch of slack.
        before.global_cache >= (BLOCKS / 2 - 32 - 8) * SPAN,
        "{} KiB of single spans in the global cache after a live thread freed {} spans: \
         {before:?}",
        before.global_cache >> 10,
        BLOCKS / 2
    );
    thread::spawn(move || {
        let blocks = allocate_touched(&SharedSpans, &sizes);
        check_and_free(&SharedSpans, blocks);
    })
    .join()
    .unwrap();
    let after = SharedSpans.statistics().unwrap();
    // The second thread needs 200 spans: it takes the global cache's and maps one run of
    // 64 spans at most for the rest (plus its heap record), not 200 new spans.
    let mapped = after.mapped_total - before.mapped_total;
    assert!(
        mapped <= 64 * SPAN + MIB,
        "a thread needing {} spans mapped {} KiB with {} KiB in the global cache: {after:?}",
        BLOCKS / 2,
        mapped >> 10,
        before.global_cache >> 10
    );
    done_tx.send(()).unwrap();
    keeper.join().unwrap();
}

//! Producer → consumer hand-off, at test size: the pattern that once mapped gigabytes.
//!
//! Producers allocate blocks and send them in batches over a bounded channel to a consumer
//! thread that frees them (and allocates a small record of its own per batch, so it has a
//! heap, as any consumer doing work does). Mapped memory must stay near what is in flight,
//! and once everything is freed and the threads are gone, `collect()` must leave nothing
//! but the heap records mapped, with and without caches.
//!
//! Under Miri the block counts and batch sizes are scaled down (constants under
//! `cfg(miri)`).

use rpmalloc::define_rpmalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc::sync_channel;
use std::thread;

define_rpmalloc!(Piped, < enable_statistics: true >);
define_rpmalloc!(PipedMixed, < enable_statistics: true >);
define_rpmalloc!(PipedNoCache, < enable_statistics: true, enable_thread_cache: false, enable_global_cache: false >);

const KIB: usize = 1024;
const MIB: usize = 1 << 20;

/// A block in flight: address and layout.
struct Block(usize, Layout);

/// xorshift64
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Runs the hand-off through `a`: `producers` threads, `blocks` each, sizes from `size`,
/// batches of `batch`, a channel of `queue` batches. Every block's first and last byte are
/// written by its producer and checked by the consumer (one byte for 1-byte blocks).
fn hand_off(
    a: &'static (dyn GlobalAlloc + Sync),
    producers: usize,
    blocks: usize,
    batch: usize,
    queue: usize,
    size: fn(&mut u64) -> usize,
) {
    let (tx, rx) = sync_channel::<Vec<Block>>(queue);
    let workers: Vec<_> = (0..producers)
        .map(|p| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut x = 0x9e37_79b9 ^ ((p as u64 + 1) * 0x1234_5678_9abc);
                let mut out = Vec::with_capacity(batch);
                for _ in 0..blocks {
                    let l = Layout::from_size_align(size(&mut x), 16).unwrap();
                    // SAFETY: a non-zero size.
                    let ptr = unsafe { a.alloc(l) };
                    assert!(!ptr.is_null());
                    // SAFETY: the block holds `l.size()` bytes.
                    unsafe {
                        ptr.add(l.size() - 1).write(0xA5);
                        ptr.write(l.size() as u8);
                    }
                    out.push(Block(ptr as usize, l));
                    if out.len() == batch {
                        tx.send(std::mem::replace(&mut out, Vec::with_capacity(batch)))
                            .unwrap();
                    }
                }
                tx.send(out).unwrap();
            })
        })
        .collect();
    drop(tx);
    let consumer = thread::spawn(move || {
        let record = Layout::from_size_align(64, 8).unwrap();
        for batch in rx {
            // SAFETY: a non-zero size; freed below.
            let r = unsafe { a.alloc(record) };
            for Block(ptr, l) in batch {
                let ptr = ptr as *mut u8;
                // SAFETY: a live block the producer wrote; freed once.
                unsafe {
                    assert_eq!(ptr.read(), l.size() as u8);
                    if l.size() > 1 {
                        assert_eq!(ptr.add(l.size() - 1).read(), 0xA5);
                    }
                    a.dealloc(ptr, l);
                }
            }
            // SAFETY: allocated above.
            unsafe { a.dealloc(r, record) };
        }
    });
    for w in workers {
        w.join().unwrap();
    }
    consumer.join().unwrap();
}

fn large(x: &mut u64) -> usize {
    64 * KIB + 1 + (next(x) >> 8) as usize % (3 * MIB - 64 * KIB)
}

fn mixed(x: &mut u64) -> usize {
    let r = next(x);
    let v = (r >> 16) as usize;
    match r % 100 {
        0..=84 => 1 + v % KIB,
        85..=97 => KIB + 1 + v % (63 * KIB),
        _ => large(x),
    }
}

#[test]
fn a_consumer_keeps_none_of_the_large_blocks_it_frees() {
    // 2000 blocks of 64 KiB – 3 MiB, 16 to a batch, at most 2 batches queued: at most
    // 4 batches (192 MiB) in flight. The consumer's thread cache once kept every run it
    // freed (it never allocates large blocks), and the producer mapped afresh: gigabytes.
    static A: Piped = Piped;
    let (blocks, batch) = if cfg!(miri) { (40, 4) } else { (2000, 16) };
    hand_off(&A, 1, blocks, batch, 2, large);
    let s = Piped.statistics().unwrap();
    assert!(
        s.mapped_peak <= 400 * MIB,
        "mapped {} MiB at the peak for at most 192 MiB in flight: {s:#?}",
        s.mapped_peak / MIB
    );
    // Whatever stays cached is within the caches' byte budgets.
    assert!(s.thread_cache <= 2 * 8 * MIB + 128 * 64 * KIB, "{s:#?}");
    assert!(s.global_cache <= 512 * MIB, "{s:#?}");
}

/// Blocks each producer of a mixed hand-off sends, and how many to a batch.
const MIXED_BLOCKS: usize = if cfg!(miri) { 30 } else { 20_000 };
const MIXED_BATCH: usize = if cfg!(miri) { 5 } else { 200 };

/// `mapped` once every thread is gone, every block freed and `collect()` ran: the heap
/// records only.
fn assert_only_heap_records_stay(s: rpmalloc::Statistics) {
    assert_eq!(
        (s.live, s.in_use, s.cached(), s.reserve, s.released),
        (0, 0, 0, 0, 0),
        "{s:#?}"
    );
    assert_eq!(s.mapped, s.heap_records, "{s:#?}");
}

#[test]
fn after_a_mixed_hand_off_collect_leaves_only_the_heap_records() {
    static A: PipedMixed = PipedMixed;
    hand_off(&A, 2, MIXED_BLOCKS, MIXED_BATCH, 4, mixed);
    PipedMixed.collect();
    assert_only_heap_records_stay(PipedMixed.statistics().unwrap());
}

#[test]
fn without_caches_a_mixed_hand_off_leaves_only_the_heap_records() {
    static A: PipedNoCache = PipedNoCache;
    hand_off(&A, 2, MIXED_BLOCKS, MIXED_BATCH, 4, mixed);
    // Nothing is cached; `collect()` gives back the exited threads' reserves.
    PipedNoCache.collect();
    assert_only_heap_records_stay(PipedNoCache.statistics().unwrap());
}

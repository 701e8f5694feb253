//! Blocks allocated on one thread and freed on another (sent through `std::sync::mpsc`)
//! keep their contents until the free, whatever their size (8 B .. 300 KiB) and whatever
//! the instance's configuration; memory freed remotely goes back to the allocating
//! thread's heap, so a producer whose every block is freed by a consumer keeps reusing
//! that memory instead of mapping more.
//!
//! Under Miri the block, message and round counts are scaled down (`common::scaled`, or
//! constants under `cfg(miri)`).

mod common;

use common::{check, fill, layout, scaled, XorShift};
use rpmalloc::define_rpmalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use std::thread;

define_rpmalloc!(FastAlloc, < enable_thread_cache: true >);
define_rpmalloc!(LeanAlloc, <
    enable_thread_cache: false,
    enable_global_cache: false,
    span_size: 262144,
>);
define_rpmalloc!(Small16k, < span_size: 16384, span_map_count: 4 >);
define_rpmalloc!(Adaptive, <
    enable_adaptive_thread_cache: true,
    max_thread_span_cache: 16,
    max_thread_span_large_cache: 4,
    max_global_span_cache: 16,
    global_cache_multiplier: 1,
    span_map_count: 1,
>);
// Used only by `producer_reuses_memory_freed_by_consumer`, so its counters see nothing else.
define_rpmalloc!(Tracked, < enable_statistics: true >);

#[global_allocator]
static GLOBAL: FastAlloc = FastAlloc;

/// A block in flight between threads.
struct Msg {
    addr: usize,
    layout: Layout,
    seed: u64,
}

const THREADS: usize = 4;
const PER_THREAD: usize = scaled(3000);

/// `THREADS` threads in a ring: each allocates `PER_THREAD` blocks of 8 B .. 300 KiB from
/// `a`, sends them to the next thread and checks and frees what the previous one sent,
/// interleaving the two so frees race with the owner's allocations.
fn ring<A: GlobalAlloc + Sync>(a: &'static A, name: &'static str) {
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel::<Msg>()).unzip();
    thread::scope(|s| {
        for (t, rx) in receivers.into_iter().enumerate() {
            let tx = senders[(t + 1) % THREADS].clone();
            s.spawn(move || {
                let mut rng = XorShift::new(t as u64 * 7919 + 1);
                let mut received = 0;
                let take = |m: Msg| {
                    let p = m.addr as *mut u8;
                    // SAFETY: a live block of m.layout.size() bytes, handed over to us.
                    unsafe {
                        check(p, m.layout.size(), m.seed, name);
                        a.dealloc(p, m.layout);
                    }
                };
                for i in 0..PER_THREAD {
                    let size = rng.log_size(8, 300 << 10);
                    let align = if i % 7 == 0 { 64 } else { 8 };
                    let l = layout(size, align);
                    // SAFETY: non-zero size.
                    let p = unsafe { a.alloc(l) };
                    assert!(!p.is_null(), "{name}: {l:?}");
                    assert_eq!(p as usize % align, 0);
                    let seed = (t * PER_THREAD + i) as u64;
                    // SAFETY: p holds `size` bytes.
                    unsafe { fill(p, size, seed) };
                    tx.send(Msg {
                        addr: p as usize,
                        layout: l,
                        seed,
                    })
                    .unwrap();
                    while let Ok(m) = rx.try_recv() {
                        take(m);
                        received += 1;
                    }
                }
                while received < PER_THREAD {
                    take(rx.recv().unwrap());
                    received += 1;
                }
            });
        }
    });
}

#[test]
fn ring_through_the_global_allocator() {
    ring(&GLOBAL, "global FastAlloc");
}

#[test]
fn ring_with_caches_off_and_256k_spans() {
    ring(&LeanAlloc, "LeanAlloc");
}

#[test]
fn ring_with_16k_spans() {
    ring(&Small16k, "Small16k");
}

#[test]
fn ring_with_adaptive_small_caches_and_single_span_mappings() {
    ring(&Adaptive, "Adaptive");
}

#[test]
fn std_values_dropped_on_other_threads() {
    const MESSAGES: usize = scaled(3000);
    let (tx, rx) = mpsc::channel::<(usize, Vec<u8>, String)>();
    let consumer = thread::spawn(move || {
        let mut n = 0;
        for (i, bytes, text) in rx {
            assert_eq!(bytes.len(), i * 37 % 70_000 + 1);
            assert!(common::all_bytes_are(&bytes, i as u8));
            assert_eq!(text, format!("message {i}"));
            n += 1;
        }
        n
    });
    let producers: Vec<_> = (0..3)
        .map(|p| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in (p..MESSAGES).step_by(3) {
                    tx.send((
                        i,
                        vec![i as u8; i * 37 % 70_000 + 1],
                        format!("message {i}"),
                    ))
                    .unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(consumer.join().unwrap(), MESSAGES);
}

/// The same sizes on every run.
fn sizes(n: usize) -> Vec<usize> {
    let mut rng = XorShift::new(42);
    (0..n)
        .map(|i| {
            if i % 50 == 0 {
                rng.log_size(33 << 10, 300 << 10)
            } else {
                rng.log_size(8, 4096)
            }
        })
        .collect()
}

#[test]
fn producer_reuses_memory_freed_by_consumer() {
    const ROUNDS: usize = if cfg!(miri) { 3 } else { 4 };
    let sizes = sizes(if cfg!(miri) { 20 } else { 20_000 });
    let total: usize = sizes.iter().sum();
    let (tx, rx) = mpsc::channel::<Option<Msg>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    // The consumer never allocates from `Tracked`: every free it makes is remote. It
    // frees a round only once it has received all of it, so each round's working set is
    // live at once.
    let consumer = thread::spawn(move || {
        for _ in 0..ROUNDS {
            let mut round = Vec::new();
            while let Some(m) = rx.recv().unwrap() {
                round.push(m);
            }
            for m in round {
                let p = m.addr as *mut u8;
                // SAFETY: a live Tracked block of m.layout.size() bytes, handed over to us.
                unsafe {
                    check(p, m.layout.size(), m.seed, "Tracked");
                    Tracked.dealloc(p, m.layout);
                }
            }
            done_tx.send(()).unwrap();
        }
    });
    let producer = thread::spawn(move || {
        let mut mapped_after = Vec::new();
        for round in 0..ROUNDS {
            for (i, &size) in sizes.iter().enumerate() {
                let l = layout(size, 16);
                // SAFETY: non-zero size.
                let p = unsafe { Tracked.alloc(l) };
                assert!(!p.is_null());
                let seed = (round * sizes.len() + i) as u64;
                // SAFETY: p holds `size` bytes.
                unsafe { fill(p, size, seed) };
                tx.send(Some(Msg {
                    addr: p as usize,
                    layout: l,
                    seed,
                }))
                .unwrap();
            }
            tx.send(None).unwrap();
            // Wait until the consumer freed the whole round before allocating again.
            done_rx.recv().unwrap();
            mapped_after.push(Tracked.statistics().unwrap().mapped_total);
        }
        mapped_after
    });
    let mapped_after = producer.join().unwrap();
    consumer.join().unwrap();
    // The first round maps the working set; later rounds reuse the remotely freed blocks
    // and spans (slack: reserve refills and a span or two per size class).
    let first = mapped_after[0];
    assert!(first >= total, "round 1 mapped {first} for {total} bytes");
    let growth = mapped_after[ROUNDS - 1] - first;
    assert!(
        growth <= first / 4,
        "remotely freed memory was not reused: mapped_total after each round {mapped_after:?} \
         (working set {total} bytes)"
    );
}

#[test]
fn blocks_freed_by_a_thread_without_a_heap() {
    // The receiving thread never allocates from LeanAlloc, so it has no heap of that
    // instance: every free takes the remote path (small blocks) or goes straight to the
    // span layer (large blocks).
    let (tx, rx) = mpsc::channel::<Msg>();
    let t = thread::spawn(move || {
        for m in rx {
            let p = m.addr as *mut u8;
            // SAFETY: a live LeanAlloc block of m.layout.size() bytes, handed over to us.
            unsafe {
                check(p, m.layout.size(), m.seed, "LeanAlloc");
                LeanAlloc.dealloc(p, m.layout);
            }
        }
    });
    let mut rng = XorShift::new(9);
    for i in 0..scaled(2000) as u64 {
        let l = layout(rng.log_size(8, 300 << 10), 8);
        // SAFETY: non-zero size.
        let p = unsafe { LeanAlloc.alloc(l) };
        assert!(!p.is_null());
        // SAFETY: p holds l.size() bytes.
        unsafe { fill(p, l.size(), i) };
        tx.send(Msg {
            addr: p as usize,
            layout: l,
            seed: i,
        })
        .unwrap();
    }
    drop(tx);
    t.join().unwrap();
}

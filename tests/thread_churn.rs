//! Hundreds of short-lived threads whose blocks outlive them: the blocks keep their
//! contents after the allocating thread exited and are freed later by the test thread or
//! by other long-lived threads. Heaps of exited threads are reused by later threads, so
//! the number of heaps an instance ever creates is bounded by how many threads run at
//! once, not by how many ran, and what stays mapped follows what is live rather than
//! growing with every exited thread.
//!
//! Under Miri the thread and block counts are scaled down (constants under `cfg(miri)`).

mod common;

use common::{layout, Raw, XorShift};
use rpmalloc::define_rpmalloc;
use std::alloc::GlobalAlloc;
use std::sync::mpsc;
use std::thread;

define_rpmalloc!(FastAlloc);
define_rpmalloc!(LeanAlloc, < enable_thread_cache: false, enable_global_cache: false >);
// Used only by `heaps_of_exited_threads_are_reused`, so its counters see nothing else.
define_rpmalloc!(Counted, < enable_statistics: true >);
// Used only by `exited_threads_do_not_strand_address_space`, likewise.
define_rpmalloc!(Stranding, < enable_statistics: true >);

#[global_allocator]
static GLOBAL: FastAlloc = FastAlloc;

/// What one short-lived thread leaves behind.
struct Leftovers {
    id: u64,
    bytes: Vec<u8>,
    text: String,
    words: Box<[u64]>,
    global: Vec<Raw>,
    lean: Vec<Raw>,
}

fn leftovers(id: u64) -> Leftovers {
    let mut rng = XorShift::new(id + 1);
    let mut raw = |a: &dyn GlobalAlloc, k: u64| {
        let l = layout(rng.log_size(16, 200 << 10), 1 << rng.range(0..7));
        Raw::new(a, l, id * 100 + k)
    };
    let global = (0..4).map(|k| raw(&GLOBAL, k)).collect();
    let lean = (4..8).map(|k| raw(&LeanAlloc, k)).collect();
    Leftovers {
        id,
        bytes: vec![id as u8; (id as usize * 97) % 5000 + 1],
        text: format!("thread {id} was here"),
        words: (0..id % 300 + 1).map(|w| w * id).collect(),
        global,
        lean,
    }
}

fn check_and_free(l: Leftovers) {
    let id = l.id;
    assert_eq!(l.bytes.len(), (id as usize * 97) % 5000 + 1);
    assert!(common::all_bytes_are(&l.bytes, id as u8));
    assert_eq!(l.text, format!("thread {id} was here"));
    assert_eq!(l.words.len() as u64, id % 300 + 1);
    assert!(l.words.iter().enumerate().all(|(w, &x)| x == w as u64 * id));
    for r in l.global {
        r.check_and_free(&GLOBAL, "global");
    }
    for r in l.lean {
        r.check_and_free(&LeanAlloc, "LeanAlloc");
    }
}

#[test]
fn blocks_outlive_hundreds_of_short_lived_threads() {
    const THREADS: u64 = if cfg!(miri) { 8 } else { 500 };
    const AT_ONCE: u64 = 4;
    // Two long-lived threads free what is sent to them while threads come and go.
    let freers: Vec<_> = (0..2)
        .map(|_| {
            let (tx, rx) = mpsc::channel::<Leftovers>();
            let h = thread::spawn(move || rx.into_iter().map(check_and_free).count());
            (tx, h)
        })
        .collect();
    let mut kept = Vec::new();
    let mut sent = 0;
    for wave in 0..THREADS / AT_ONCE {
        let handles: Vec<_> = (0..AT_ONCE)
            .map(|k| {
                let id = wave * AT_ONCE + k;
                let tx = freers[(id % 2) as usize].0.clone();
                thread::spawn(move || {
                    let mine = leftovers(id);
                    if id.is_multiple_of(3) {
                        // Handed to a long-lived thread straight away.
                        tx.send(mine).unwrap();
                        None
                    } else {
                        Some(mine)
                    }
                })
            })
            .collect();
        for h in handles {
            match h.join().unwrap() {
                Some(l) => kept.push(l),
                None => sent += 1,
            }
        }
    }
    assert_eq!(kept.len() as u64 + sent, THREADS);
    // Every allocating thread has exited; free half here and half on the freers.
    for (i, l) in kept.into_iter().enumerate() {
        if i % 2 == 0 {
            check_and_free(l);
        } else {
            freers[i / 2 % 2].0.send(l).unwrap();
        }
    }
    let mut freed = 0;
    for (tx, h) in freers {
        drop(tx);
        freed += h.join().unwrap();
    }
    assert!(freed as u64 >= sent);
}

/// Blocks in each [`churn`] thread's working set; it returns 4 of them.
const WORKING_SET: u64 = if cfg!(miri) { 10 } else { 64 };

/// Runs `threads` threads, `at_once` at a time, each allocating a working set from
/// `Counted`, freeing most of it and returning the rest; returns the survivors.
fn churn(first_id: u64, threads: u64, at_once: u64) -> Vec<Raw> {
    let mut survivors = Vec::new();
    for wave in 0..threads / at_once {
        let handles: Vec<_> = (0..at_once)
            .map(|k| {
                let id = first_id + wave * at_once + k;
                thread::spawn(move || {
                    let mut rng = XorShift::new(id + 7);
                    let mut blocks: Vec<Raw> = (0..WORKING_SET)
                        .map(|b| {
                            let l = layout(rng.log_size(16, 300 << 10), 16);
                            Raw::new(&Counted, l, id * 1000 + b)
                        })
                        .collect();
                    let keep = blocks.split_off(WORKING_SET as usize - 4);
                    for r in blocks {
                        r.check_and_free(&Counted, "Counted (same thread)");
                    }
                    keep
                })
            })
            .collect();
        for h in handles {
            survivors.extend(h.join().unwrap());
        }
    }
    survivors
}

#[test]
fn heaps_of_exited_threads_are_reused() {
    // One thread at a time: every thread adopts the heap the previous one left.
    let threads = if cfg!(miri) { 4 } else { 200 };
    let survivors = churn(0, threads, 1);
    let stats = Counted.statistics().expect("statistics are enabled");
    assert!(
        stats.heaps <= 2,
        "{threads} threads run one after another created {} heaps",
        stats.heaps
    );
    for r in survivors {
        r.check_and_free(&Counted, "Counted (outlived its thread)");
    }

    // Four at a time: at most four heaps are ever in use together.
    let threads = if cfg!(miri) { 8 } else { 200 };
    let survivors = churn(1000, threads, 4);
    let after_waves = Counted.statistics().unwrap();
    assert!(
        after_waves.heaps <= 5,
        "{threads} threads run four at a time created {} heaps in all",
        after_waves.heaps
    );
    for r in survivors {
        r.check_and_free(&Counted, "Counted (outlived its thread)");
    }
}

#[test]
fn exited_threads_do_not_strand_address_space() {
    // One thread at a time, each leaving one small and one large block alive. What stays
    // mapped should follow what is live (plus a mapping's worth of reserve and the heap),
    // not grow by a whole span mapping per exited thread.
    const THREADS: u64 = if cfg!(miri) { 10 } else { 100 };
    let mut kept = Vec::new();
    for id in 0..THREADS {
        let blocks = thread::spawn(move || {
            vec![
                Raw::new(&Stranding, layout(3000, 16), id * 2),
                Raw::new(&Stranding, layout(200 << 10, 16), id * 2 + 1),
            ]
        })
        .join()
        .unwrap();
        kept.extend(blocks);
    }
    let live: usize = kept.iter().map(|r| r.layout.size()).sum();
    let stats = Stranding.statistics().expect("statistics are enabled");
    assert!(stats.heaps <= 2, "{stats:?}");
    assert!(
        stats.mapped <= live + (32 << 20),
        "{THREADS} exited threads left {live} bytes live but {} bytes mapped: {stats:?}",
        stats.mapped
    );
    for r in kept {
        r.check_and_free(&Stranding, "Stranding");
    }
}

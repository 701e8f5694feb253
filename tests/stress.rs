//! Stress tests: many more threads than cores, and many more threads over time than heaps.
//!
//! * blocks handed through channels to be freed by another thread, with 2, 4, 16 and 64
//!   threads on whatever cores there are (2 in CI), contents checked before every free;
//! * 10 000 short-lived threads, 32 at a time, whose blocks outlive them and are checked
//!   and freed later (half by the test thread, half by the next wave of threads); the heaps
//!   of exited threads are reused, so the number of heaps stays near the wave size;
//! * hundreds of threads allocating and freeing inside other thread-locals' destructors and
//!   in a pthread key destructor that runs after the allocator retired the thread's heap.
//!
//! The whole file runs in a few seconds with `cargo test --release --test stress`. For a
//! long run set `RPMALLOC_STRESS=full`: 20× the blocks per hand-off thread, 100 000
//! short-lived threads, 10× the teardown threads —
//! `RPMALLOC_STRESS=full cargo test --release --test stress` (about a minute on 2 cores).
//!
//! Under Miri the thread and block counts are scaled down (constants under `cfg(miri)`:
//! at most 8 hand-off threads and 40 to 60 blocks per hand-off, 12 short-lived threads 4
//! at a time, 6 teardown threads 3 at a time).

mod common;

use common::{layout, Raw, XorShift};
use rpmalloc::define_rpmalloc;
use std::alloc::GlobalAlloc;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::thread;

define_rpmalloc!(FastAlloc);
// Caches off, small spans: every free that empties a span goes back to the OS at once.
define_rpmalloc!(LeanAlloc, <
    enable_thread_cache: false,
    enable_global_cache: false,
    span_size: 16384,
    span_map_count: 4,
>);
// Used only by `ten_thousand_short_lived_threads`, so its heap count sees nothing else.
define_rpmalloc!(Churn, < enable_statistics: true >);
// Used only by `teardown_allocations_under_thread_churn`, likewise.
define_rpmalloc!(Teardown, < enable_statistics: true >);

#[global_allocator]
static GLOBAL: FastAlloc = FastAlloc;

/// The scale factor: 1 by default, `full` under `RPMALLOC_STRESS=full`.
fn scale(full: usize) -> usize {
    match std::env::var("RPMALLOC_STRESS").as_deref() {
        Ok("full") => full,
        _ => 1,
    }
}

/// Which allocator a hand-off block came from.
fn pick(lean: bool) -> &'static dyn GlobalAlloc {
    if lean {
        &LeanAlloc
    } else {
        &GLOBAL
    }
}

// ---- (a) cross-thread hand-off --------------------------------------------------------

/// A block and the allocator it came from.
struct Msg {
    raw: Raw,
    lean: bool,
}

/// `threads` threads each allocate `per_thread` blocks (8 B – 256 KiB, mostly small, from
/// both allocators), send each to a random other thread and check and free what they
/// receive, interleaving the two so remote frees race with the owners' allocations.
fn hand_off(threads: usize, per_thread: usize) {
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..threads).map(|_| mpsc::channel::<Msg>()).unzip();
    let freed = AtomicUsize::new(0);
    thread::scope(|s| {
        for (t, rx) in receivers.into_iter().enumerate() {
            let peers: Vec<_> = senders.clone();
            let freed = &freed;
            s.spawn(move || {
                let mut rng = XorShift::new(t as u64 * 7919 + threads as u64);
                let take = |m: Msg| {
                    m.raw
                        .check_and_free(pick(m.lean), "block freed by another thread");
                    freed.fetch_add(1, Ordering::Relaxed);
                };
                for i in 0..per_thread {
                    let size = if rng.range(0..16) == 0 {
                        rng.log_size(1025, 256 << 10)
                    } else {
                        rng.log_size(8, 1024)
                    };
                    let lean = rng.range(0..4) == 0;
                    let l = layout(size, 1 << rng.range(0..6));
                    let seed = (t * per_thread + i) as u64;
                    let raw = Raw::new(pick(lean), l, seed);
                    let mut to = rng.range(0..threads - 1);
                    if to >= t {
                        to += 1;
                    }
                    peers[to].send(Msg { raw, lean }).unwrap();
                    while let Ok(m) = rx.try_recv() {
                        take(m);
                    }
                }
                // Done sending: once every thread is, the channels disconnect.
                drop(peers);
                for m in rx {
                    take(m);
                }
            });
        }
        drop(senders);
    });
    assert_eq!(
        freed.into_inner(),
        threads * per_thread,
        "blocks went missing"
    );
}

#[test]
fn hand_off_between_2_threads() {
    if cfg!(miri) {
        hand_off(2, 30);
    } else {
        hand_off(2, 60_000 * scale(20));
    }
}

#[test]
fn hand_off_between_4_threads() {
    if cfg!(miri) {
        hand_off(4, 15);
    } else {
        hand_off(4, 30_000 * scale(20));
    }
}

#[test]
fn hand_off_between_16_threads() {
    if cfg!(miri) {
        hand_off(4, 12);
    } else {
        hand_off(16, 7_500 * scale(20));
    }
}

#[test]
fn hand_off_between_64_threads() {
    if cfg!(miri) {
        hand_off(8, 5);
    } else {
        hand_off(64, 2_000 * scale(20));
    }
}

// ---- (b) thread churn ----------------------------------------------------------------

/// What a short-lived thread leaves behind.
struct Leftovers {
    id: u64,
    raw: Vec<Raw>,
    lean: Raw,
    boxed: Box<[u64]>,
}

fn leftovers(id: u64) -> Leftovers {
    let mut rng = XorShift::new(id + 1);
    // Mostly small blocks, now and then a medium or large one.
    let raw = (0..3)
        .map(|k| {
            let size = if (id + k).is_multiple_of(16) {
                rng.log_size(2048, 200 << 10)
            } else {
                rng.log_size(16, 1024)
            };
            Raw::new(&Churn, layout(size, 16), id * 4 + k)
        })
        .collect();
    Leftovers {
        id,
        raw,
        lean: Raw::new(&LeanAlloc, layout(24 + (id as usize % 200), 8), id * 4 + 3),
        boxed: (0..id % 64 + 1).map(|w| w ^ id).collect(),
    }
}

fn check_and_free(l: Leftovers) {
    let id = l.id;
    assert_eq!(l.boxed.len() as u64, id % 64 + 1);
    assert!(l.boxed.iter().enumerate().all(|(w, &x)| x == w as u64 ^ id));
    for r in l.raw {
        r.check_and_free(&Churn, "block of an exited thread");
    }
    l.lean
        .check_and_free(&LeanAlloc, "LeanAlloc block of an exited thread");
}

#[test]
fn ten_thousand_short_lived_threads() {
    // Under Miri three waves of four (a thread's setup and exit cost seconds there).
    const AT_ONCE: u64 = if cfg!(miri) { 4 } else { 32 };
    let threads = if cfg!(miri) {
        12
    } else {
        10_000 * scale(10) as u64
    };
    let mut older: Vec<Leftovers> = Vec::new();
    let mut checked = 0u64;
    for wave in 0..threads.div_ceil(AT_ONCE) {
        let first = wave * AT_ONCE;
        let n = AT_ONCE.min(threads - first) as usize;
        // Half of the previous wave's blocks are freed by this wave's threads (remote frees
        // into the heaps they may just have adopted), the rest by the test thread.
        let mut handed: Vec<Vec<Leftovers>> = (0..n).map(|_| Vec::new()).collect();
        for (i, l) in older.drain(..).enumerate() {
            if i % 2 == 0 {
                handed[i / 2 % n].push(l);
            } else {
                check_and_free(l);
                checked += 1;
            }
        }
        let handles: Vec<_> = handed
            .into_iter()
            .enumerate()
            .map(|(k, to_free)| {
                let id = first + k as u64;
                thread::spawn(move || {
                    let freed = to_free.len() as u64;
                    to_free.into_iter().for_each(check_and_free);
                    (leftovers(id), freed)
                })
            })
            .collect();
        for h in handles {
            let (l, freed) = h.join().unwrap();
            checked += freed;
            older.push(l);
        }
    }
    checked += older.len() as u64;
    older.into_iter().for_each(check_and_free);
    assert_eq!(checked, threads, "leftovers went missing");
    let heaps = Churn.statistics().expect("statistics are enabled").heaps;
    // A wave's threads are joined (their heaps orphaned) before the next wave starts, so
    // at most AT_ONCE heaps are ever in use together (the test thread only frees).
    assert!(
        heaps <= AT_ONCE as usize + 2,
        "{threads} threads, {AT_ONCE} at a time, created {heaps} heaps"
    );
}

// ---- (c) allocation during thread teardown ---------------------------------------------

/// What one thread's teardown hands to the test thread.
struct Handout {
    id: u64,
    /// Allocated while the thread ran; kept.
    kept: Vec<u8>,
    /// Allocated in the thread-local destructor.
    text: String,
    raw: Vec<Raw>,
}

/// A vector of `len` bytes, a pattern of `id` (see `common::pattern_vec`).
fn bytes_of(id: u64, len: usize) -> Vec<u8> {
    common::pattern_vec(len, id)
}

fn check_bytes(id: u64, bytes: &[u8], what: &str) {
    assert!(
        common::has_pattern(bytes, id),
        "{what} of thread {id} corrupted"
    );
}

/// A thread-local whose destructor frees what the thread allocated earlier, allocates
/// more, and sends some of it out.
#[derive(Default)]
struct OnExit {
    id: RefCell<u64>,
    tx: RefCell<Option<mpsc::Sender<Handout>>>,
    early: RefCell<Vec<Vec<u8>>>,
    early_raw: RefCell<Vec<Raw>>,
}

impl Drop for OnExit {
    fn drop(&mut self) {
        let id = *self.id.borrow();
        let Some(tx) = self.tx.take() else { return };
        let mut early = self.early.take();
        for v in &early {
            check_bytes(id, v, "vector checked in a TLS destructor");
        }
        let kept = early.pop().unwrap();
        drop(early);
        for r in self.early_raw.take() {
            r.check_and_free(&Teardown, "block freed in a TLS destructor");
        }
        // Churn through a few allocations, then hand some out.
        for n in 0..16 {
            let v = bytes_of(id, 100 * n + 1);
            check_bytes(id, &v, "scratch vector");
        }
        let raw = vec![
            Raw::new(&Teardown, layout(64, 16), id * 8),
            Raw::new(&Teardown, layout(9000, 64), id * 8 + 1),
            Raw::new(&LeanAlloc, layout(300, 16), id * 8 + 2),
        ];
        tx.send(Handout {
            id,
            kept,
            text: format!("thread {id} tore down"),
            raw,
        })
        .unwrap();
    }
}

thread_local! {
    static ON_EXIT: OnExit = OnExit::default();
}

/// What the late pthread key destructor allocated (after the allocators retired the
/// thread's heaps), for the test thread to check and free.
static LATE: Mutex<Vec<(u64, Raw, Vec<u8>)>> = Mutex::new(Vec::new());
static LATE_FAILURES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The late exit hook.
struct Late;

impl common::exit_key::OnExit for Late {
    fn on_exit(value: *mut u8) {
        late_destructor(value);
    }
}

fn late_destructor(value: *mut u8) {
    let id = value as u64 - 1;
    // A panic must not unwind out of the platform's `extern` hook: record it instead.
    let result = catch_unwind(AssertUnwindSafe(|| {
        let raw = Raw::new(&Teardown, layout(500 + id as usize % 3000, 32), id * 8 + 5);
        let bytes = bytes_of(id, 2000);
        LATE.lock().unwrap().push((id, raw, bytes));
    }));
    if result.is_err() {
        LATE_FAILURES
            .lock()
            .unwrap()
            .push(format!("late destructor of thread {id} panicked"));
    }
}

/// A thread-exit key created after `Teardown`'s and `GLOBAL`'s own, so its hook runs
/// after they retired the thread's heaps (keys run in creation order).
fn late_key() -> usize {
    static KEY: OnceLock<usize> = OnceLock::new();
    *KEY.get_or_init(|| {
        for a in [&GLOBAL as &dyn GlobalAlloc, &Teardown, &LeanAlloc] {
            let l = layout(16, 16);
            // SAFETY: valid layout; freed once.
            unsafe { a.dealloc(a.alloc(l), l) };
        }
        common::exit_key::create::<Late>()
    })
}

#[test]
fn teardown_allocations_under_thread_churn() {
    // Under Miri two waves of three (threads waiting for the orphan lock while another
    // retires its heap spin, and Miri interprets every spin).
    const AT_ONCE: u64 = if cfg!(miri) { 3 } else { 16 };
    let threads = if cfg!(miri) {
        6
    } else {
        2_000 * scale(10) as u64
    };
    let key = late_key();
    let (tx, rx) = mpsc::channel();
    let mut handouts = Vec::new();
    for wave in 0..threads / AT_ONCE {
        let handles: Vec<_> = (0..AT_ONCE)
            .map(|k| {
                let id = wave * AT_ONCE + k;
                let tx = tx.clone();
                thread::spawn(move || {
                    ON_EXIT.with(|t| {
                        *t.id.borrow_mut() = id;
                        *t.tx.borrow_mut() = Some(tx);
                        *t.early.borrow_mut() =
                            (0..4).map(|i| bytes_of(id, 50 + i * 700)).collect();
                        *t.early_raw.borrow_mut() = (0..3)
                            .map(|i| Raw::new(&Teardown, layout(32 << (i * 4), 16), id * 8 + i))
                            .collect();
                    });
                    // The value is a plain integer, not a pointer.
                    common::exit_key::set(key, (id + 1) as *mut u8);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        handouts.extend(rx.try_iter());
    }
    drop(tx);
    handouts.extend(rx);
    let failures = std::mem::take(&mut *LATE_FAILURES.lock().unwrap());
    assert!(failures.is_empty(), "{failures:?}");
    let mut seen = Vec::new();
    for h in handouts {
        let id = h.id;
        check_bytes(id, &h.kept, "vector kept through teardown");
        assert_eq!(h.kept.len(), 50 + 3 * 700);
        assert_eq!(h.text, format!("thread {id} tore down"));
        let mut raw = h.raw;
        raw.pop()
            .unwrap()
            .check_and_free(&LeanAlloc, "LeanAlloc block from a TLS destructor");
        for r in raw {
            r.check_and_free(&Teardown, "block from a TLS destructor");
        }
        seen.push(id);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..threads).collect::<Vec<_>>());
    let late = std::mem::take(&mut *LATE.lock().unwrap());
    let mut late_ids = Vec::new();
    for (id, raw, bytes) in late {
        check_bytes(id, &bytes, "vector from a late key destructor");
        raw.check_and_free(&Teardown, "block from a late key destructor");
        late_ids.push(id);
    }
    late_ids.sort_unstable();
    assert_eq!(late_ids, (0..threads).collect::<Vec<_>>());
    let heaps = Teardown.statistics().expect("statistics are enabled").heaps;
    assert!(
        heaps <= AT_ONCE as usize + 2,
        "{threads} threads, {AT_ONCE} at a time, created {heaps} heaps"
    );
}

//! Allocation keeps working while a thread is being torn down: destructors of other
//! thread-locals (which run before the allocator retires the thread's heap) and
//! `pthread_key_create` destructors (which may run after it) can allocate, free blocks the
//! thread allocated earlier, and initialise further thread-locals. Blocks allocated during
//! teardown keep their contents and are freed later by the test thread; heaps stay
//! reused, however late a dying thread allocates.
//!
//! Under Miri the thread counts and vector lengths are scaled down (`common::scaled`, or
//! constants under `cfg(miri)`).

mod common;

use common::{layout, scaled, Raw};
use rpmalloc::define_rpmalloc;
use std::alloc::GlobalAlloc;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Mutex, OnceLock};
use std::thread;

define_rpmalloc!(FastAlloc);
// Used directly; some threads touch it for the first time while being torn down.
define_rpmalloc!(Direct, < enable_thread_cache: false >);
// Used only by `late_teardown_allocations_keep_heaps_reused`, for its heap count.
define_rpmalloc!(Counted, < enable_statistics: true >);

#[global_allocator]
static GLOBAL: FastAlloc = FastAlloc;

/// Step between the lengths of a thread's earlier vectors (100, 100 + STEP, ...).
const STEP: usize = scaled(1000);
/// Length of the vector a thread-local destructor allocates.
const TLS_BYTES: usize = scaled(70_000);

/// The bytes thread `id` puts in its vectors.
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

// ---- Rust thread-local destructors ----------------------------------------------------

/// What a thread-local destructor hands to the test thread.
struct Handout {
    id: u64,
    /// Allocated by the thread while it ran; half its earlier blocks were freed in the
    /// destructor, these are the other half.
    kept: Vec<Vec<u8>>,
    /// Allocated in the destructor.
    text: String,
    bytes: Vec<u8>,
    raw: Vec<Raw>,
}

#[derive(Default)]
struct Teardown {
    id: RefCell<u64>,
    tx: RefCell<Option<mpsc::Sender<Handout>>>,
    early: RefCell<Vec<Vec<u8>>>,
    early_raw: RefCell<Vec<Raw>>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let id = *self.id.borrow();
        let Some(tx) = self.tx.take() else { return };
        let mut early = self.early.take();
        for (i, v) in early.iter().enumerate() {
            assert_eq!(v.len(), 100 + i * STEP);
            check_bytes(id, v, "earlier vector");
        }
        // Free every other earlier block.
        let kept: Vec<Vec<u8>> = early.drain(..).skip(1).step_by(2).collect();
        for r in self.early_raw.take() {
            r.check_and_free(&Direct, "Direct block freed in a TLS destructor");
        }
        // Allocate new blocks of all kinds.
        let raw = vec![
            Raw::new(&Direct, layout(48, 8), id * 10),
            Raw::new(&Direct, layout(20_000, 64), id * 10 + 1),
            Raw::new(&Direct, layout(300_000, 16), id * 10 + 2),
            Raw::new(&GLOBAL, layout(5 << 20, 4096), id * 10 + 3),
        ];
        let handout = Handout {
            id,
            kept,
            text: format!("thread {id} tore down"),
            bytes: bytes_of(id, TLS_BYTES),
            raw,
        };
        tx.send(handout).unwrap();
    }
}

thread_local! {
    static TEARDOWN: Teardown = Teardown::default();
}

#[test]
fn tls_destructors_allocate_free_and_hand_out() {
    const THREADS: u64 = if cfg!(miri) { 8 } else { 24 };
    let (tx, rx) = mpsc::channel();
    for wave in 0..THREADS / 4 {
        let handles: Vec<_> = (0..4)
            .map(|k| {
                let id = wave * 4 + k;
                let tx = tx.clone();
                thread::spawn(move || {
                    TEARDOWN.with(|t| {
                        *t.id.borrow_mut() = id;
                        *t.tx.borrow_mut() = Some(tx);
                        let early: Vec<Vec<u8>> =
                            (0..8).map(|i| bytes_of(id, 100 + i * STEP)).collect();
                        *t.early.borrow_mut() = early;
                        *t.early_raw.borrow_mut() = (0..4)
                            .map(|i| Raw::new(&Direct, layout(64 << (i * 4), 16), id * 100 + i))
                            .collect();
                    });
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
    drop(tx);
    let mut seen = Vec::new();
    for h in rx {
        let id = h.id;
        assert_eq!(h.kept.len(), 4);
        for (j, v) in h.kept.iter().enumerate() {
            assert_eq!(v.len(), 100 + (2 * j + 1) * STEP);
            check_bytes(id, v, "kept vector");
        }
        assert_eq!(h.text, format!("thread {id} tore down"));
        assert_eq!(h.bytes.len(), TLS_BYTES);
        check_bytes(id, &h.bytes, "vector allocated in a TLS destructor");
        let mut raw = h.raw;
        let global = raw.pop().unwrap();
        global.check_and_free(&GLOBAL, "global block allocated in a TLS destructor");
        for r in raw {
            r.check_and_free(&Direct, "Direct block allocated in a TLS destructor");
        }
        seen.push(id);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..THREADS).collect::<Vec<_>>());
}

/// What [`Late`]'s destructor reports: thread id, the vectors, a formatted note.
type LateReport = (u64, Vec<Vec<u64>>, String);

/// First touched by a thread; its destructor initialises [`LATE`].
struct First {
    id: u64,
    tx: Option<mpsc::Sender<LateReport>>,
}

/// Touched for the first time from [`First`]'s destructor.
#[derive(Default)]
struct Late {
    id: RefCell<u64>,
    tx: RefCell<Option<mpsc::Sender<LateReport>>>,
    items: RefCell<Vec<Vec<u64>>>,
}

impl Drop for First {
    fn drop(&mut self) {
        let id = self.id;
        let tx = self.tx.take();
        LATE.with(|late| {
            *late.id.borrow_mut() = id;
            *late.tx.borrow_mut() = tx;
            for n in 1..=5 {
                late.items
                    .borrow_mut()
                    .push((0..n * LATE_ITEMS).map(|i| i * id).collect());
            }
        });
    }
}

impl Drop for Late {
    fn drop(&mut self) {
        let id = *self.id.borrow();
        let items = self.items.take();
        let note = format!("late {id}: {} items", items.len());
        if let Some(tx) = self.tx.take() {
            tx.send((id, items, note)).unwrap();
        }
    }
}

/// Words in [`Late`]'s first vector (the n-th holds n times as many).
const LATE_ITEMS: u64 = scaled(10_000) as u64;

thread_local! {
    static FIRST: RefCell<Option<First>> = const { RefCell::new(None) };
    static LATE: Late = Late::default();
}

#[test]
fn tls_destructor_initialises_another_thread_local() {
    const THREADS: u64 = if cfg!(miri) { 4 } else { 12 };
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (1..=THREADS)
        .map(|id| {
            let tx = tx.clone();
            thread::spawn(move || {
                FIRST.with(|f| {
                    *f.borrow_mut() = Some(First { id, tx: Some(tx) });
                });
            })
        })
        .collect();
    drop(tx);
    for h in handles {
        h.join().unwrap();
    }
    let mut seen = Vec::new();
    for (id, items, note) in rx {
        assert_eq!(note, format!("late {id}: 5 items"));
        assert_eq!(items.len(), 5);
        for (n, v) in items.iter().enumerate() {
            assert_eq!(v.len(), (n + 1) * LATE_ITEMS as usize);
            assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * id));
        }
        seen.push(id);
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=THREADS).collect::<Vec<_>>());
}

// ---- pthread key destructors ----------------------------------------------------------

/// What a pthread key destructor allocated, for the test thread to check and free.
struct KeyHandout {
    id: u64,
    round: u32,
    bytes: Vec<u8>,
    text: String,
    direct: Raw,
    counted: Option<Raw>,
}

/// The value stored under [`key`].
struct KeyPayload {
    id: u64,
    /// Destructor rounds still to re-arm (glibc runs up to four).
    rounds_left: u32,
    round: u32,
    /// Allocate from `Counted` in the destructor.
    counted: bool,
    /// Allocated while the thread ran; checked and freed in the destructor.
    early: Vec<u8>,
    early_raw: Option<Raw>,
    out: &'static Mutex<Vec<KeyHandout>>,
    failures: &'static Mutex<Vec<String>>,
}

/// The test key's exit hook.
struct KeyHook;

impl common::exit_key::OnExit for KeyHook {
    fn on_exit(value: *mut u8) {
        // SAFETY: every value stored under the key is a `Box<KeyPayload>` leaked by
        // `arm`, handed to the hook once.
        unsafe { key_destructor(value) }
    }
}

/// The test key's hook: checks and frees what the thread allocated, allocates what the
/// test thread checks, and re-arms the key for the next round.
///
/// # Safety
/// `value` is a `Box<KeyPayload>` leaked by `arm`, handed over once.
unsafe fn key_destructor(value: *mut u8) {
    // SAFETY: the contract.
    let payload = unsafe { Box::from_raw(value.cast::<KeyPayload>()) };
    let failures = payload.failures;
    // A panic must not unwind out of the platform's `extern` hook: record it instead.
    let result = catch_unwind(AssertUnwindSafe(move || {
        let mut payload = payload;
        let id = payload.id;
        check_bytes(id, &payload.early, "vector allocated before teardown");
        if let Some(r) = payload.early_raw.take() {
            r.check_and_free(&Direct, "Direct block freed in a pthread key destructor");
        }
        let seed = id * 100 + u64::from(payload.round) * 10;
        let handout = KeyHandout {
            id,
            round: payload.round,
            bytes: bytes_of(id + u64::from(payload.round), scaled(50_000)),
            text: format!("key {id} round {}", payload.round),
            direct: Raw::new(
                &Direct,
                layout(1000 + payload.round as usize * 40_000, 32),
                seed,
            ),
            counted: payload
                .counted
                .then(|| Raw::new(&Counted, layout(200 << 10, 16), seed + 1)),
        };
        payload.out.lock().unwrap().push(handout);
        if payload.rounds_left > 0 {
            arm(KeyPayload {
                id,
                rounds_left: payload.rounds_left - 1,
                round: payload.round + 1,
                counted: payload.counted,
                early: bytes_of(id, scaled(3000)),
                early_raw: None,
                out: payload.out,
                failures: payload.failures,
            });
        }
        // `payload` (and its earlier vector) is freed here.
    }));
    if let Err(e) = result {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        failures.lock().unwrap().push(msg);
    }
}

/// The test key, created once, after `Direct` and `Counted` set up their own thread-exit
/// keys: glibc runs key destructors in key order, so ours runs after theirs retired the
/// thread's heaps, and allocations in it take the after-exit path.
fn key() -> usize {
    static KEY: OnceLock<usize> = OnceLock::new();
    *KEY.get_or_init(|| {
        for a in [&Direct as &dyn GlobalAlloc, &Counted] {
            let l = layout(16, 16);
            // SAFETY: valid layout; freed once.
            unsafe { a.dealloc(a.alloc(l), l) };
        }
        common::exit_key::create::<KeyHook>()
    })
}

/// Stores `payload` under the key for the calling thread.
fn arm(payload: KeyPayload) {
    // The hook takes the box back.
    common::exit_key::set(key(), Box::into_raw(Box::new(payload)).cast());
}

fn check_key_handouts(out: Vec<KeyHandout>, threads: u64, rounds: u32) {
    assert_eq!(out.len() as u64, threads * u64::from(rounds));
    let mut seen = Vec::new();
    for h in out {
        let id = h.id;
        check_bytes(
            id + u64::from(h.round),
            &h.bytes,
            "vector from a key destructor",
        );
        assert_eq!(h.text, format!("key {id} round {}", h.round));
        h.direct
            .check_and_free(&Direct, "Direct block from a key destructor");
        if let Some(r) = h.counted {
            r.check_and_free(&Counted, "Counted block from a key destructor");
        }
        seen.push((id, h.round));
    }
    seen.sort_unstable();
    let expected: Vec<_> = (0..threads)
        .flat_map(|id| (0..rounds).map(move |r| (id, r)))
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn pthread_key_destructors_allocate_after_the_heap_is_retired() {
    static OUT: Mutex<Vec<KeyHandout>> = Mutex::new(Vec::new());
    static FAILURES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    const THREADS: u64 = if cfg!(miri) { 4 } else { 16 };
    // A pthread key's destructor that sets the key again runs again (POSIX); a Windows
    // fiber-local callback runs once.
    const ROUNDS: u32 = if common::exit_key::RERUNS { 2 } else { 1 };
    key();
    for wave in 0..THREADS / 4 {
        let handles: Vec<_> = (0..4)
            .map(|k| {
                let id = wave * 4 + k;
                thread::spawn(move || {
                    // Half the threads use Direct while alive; the others touch it for
                    // the first time in the key destructor.
                    let early_raw = (id % 2 == 0).then(|| Raw::new(&Direct, layout(5000, 16), id));
                    arm(KeyPayload {
                        id,
                        rounds_left: ROUNDS - 1,
                        round: 0,
                        counted: false,
                        early: bytes_of(id, scaled(3000)),
                        early_raw,
                        out: &OUT,
                        failures: &FAILURES,
                    });
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
    let failures = std::mem::take(&mut *FAILURES.lock().unwrap());
    assert!(
        failures.is_empty(),
        "key destructors panicked: {failures:?}"
    );
    let out = std::mem::take(&mut *OUT.lock().unwrap());
    check_key_handouts(out, THREADS, ROUNDS);
}

#[test]
fn late_teardown_allocations_keep_heaps_reused() {
    static OUT: Mutex<Vec<KeyHandout>> = Mutex::new(Vec::new());
    static FAILURES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    const THREADS: u64 = if cfg!(miri) { 6 } else { 100 };
    key();
    let mut kept = Vec::new();
    // One thread at a time, each allocating from Counted while alive and again after its
    // Counted heap was retired.
    for id in 0..THREADS {
        let h = thread::spawn(move || {
            let alive = Raw::new(&Counted, layout(3000, 16), id + 5000);
            arm(KeyPayload {
                id,
                rounds_left: 0,
                round: 0,
                counted: true,
                early: bytes_of(id, scaled(3000)),
                early_raw: None,
                out: &OUT,
                failures: &FAILURES,
            });
            alive
        });
        kept.push(h.join().unwrap());
    }
    let failures = std::mem::take(&mut *FAILURES.lock().unwrap());
    assert!(
        failures.is_empty(),
        "key destructors panicked: {failures:?}"
    );
    let stats = Counted.statistics().expect("statistics are enabled");
    // One heap for the threads (plus, at most, the one of the thread that created the
    // key, and one made for allocations after exit).
    assert!(
        stats.heaps <= 3,
        "{THREADS} threads run one after another created {} heaps",
        stats.heaps
    );
    for r in kept {
        r.check_and_free(&Counted, "Counted block of an exited thread");
    }
    let out = std::mem::take(&mut *OUT.lock().unwrap());
    check_key_handouts(out, THREADS, 1);
}

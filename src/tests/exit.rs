//! Thread exit: blocks passed between exiting threads leave only heap records mapped, and
//! blocks allocated after a thread's heap was retired go back too.

use super::*;

// Used by one test only (see `span_counting_config!`).
span_counting_config!(RemoteChurn, typenum::U16384);

#[test]
fn blocks_passed_between_exiting_threads_leave_only_heap_records_mapped() {
    use std::sync::{Arc, Mutex};
    const SIZES: [usize; 7] = [16, 48, 128, 496, 1000, 2048, 5000];
    let layout = |k: u64| Layout::from_size_align(SIZES[k as usize % SIZES.len()], 16).unwrap();
    let before = api::statistics::<RemoteChurn>().unwrap();
    // Blocks anyone may free, with the seed their first byte holds.
    let pool: Arc<Mutex<Vec<(usize, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    // Under Miri, fewer waves and operations: the same churn, smaller.
    let (waves, ops) = if cfg!(miri) {
        (3u64, 100)
    } else {
        (40u64, 3000)
    };
    for wave in 0..waves {
        let threads: Vec<_> = (0..6u64)
            .map(|t| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    let mut x = (wave * 6 + t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let mut next = move || {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x
                    };
                    let mut mine: Vec<(usize, u64)> = Vec::new();
                    for _ in 0..ops {
                        let r = next();
                        let k = r >> 8;
                        match r % 5 {
                            0 | 1 => {
                                // SAFETY: valid layout; the block holds at least one byte.
                                let p = unsafe { api::alloc::<RemoteChurn>(layout(k)) };
                                assert!(!p.is_null());
                                // SAFETY: a fresh block of at least one byte.
                                unsafe { *p = k as u8 };
                                mine.push((p as usize, k));
                            }
                            2 => {
                                if let Some(b) = mine.pop() {
                                    pool.lock().unwrap().push(b);
                                }
                            }
                            3 => {
                                let taken = {
                                    let mut pool = pool.lock().unwrap();
                                    let n = pool.len();
                                    (n > 0).then(|| pool.swap_remove(k as usize % n))
                                };
                                if let Some((p, k)) = taken {
                                    // SAFETY: a live block of this layout, freed once.
                                    unsafe {
                                        assert_eq!(*(p as *mut u8), k as u8);
                                        api::dealloc::<RemoteChurn>(p as *mut u8, layout(k));
                                    }
                                }
                            }
                            _ => {
                                if !mine.is_empty() {
                                    let (p, k) = mine.swap_remove(k as usize % mine.len());
                                    // SAFETY: our live block, freed once.
                                    unsafe { api::dealloc::<RemoteChurn>(p as *mut u8, layout(k)) };
                                }
                            }
                        }
                    }
                    // The rest outlives this thread.
                    pool.lock().unwrap().extend(mine);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
    // A thread that never allocates frees what is left: remote frees only.
    let rest = core::mem::take(&mut *pool.lock().unwrap());
    std::thread::spawn(move || {
        for (p, k) in rest {
            // SAFETY: live blocks of these layouts, freed once.
            unsafe {
                assert_eq!(*(p as *mut u8), k as u8);
                api::dealloc::<RemoteChurn>(p as *mut u8, layout(k));
            }
        }
    })
    .join()
    .unwrap();
    let after = api::statistics::<RemoteChurn>().unwrap();
    let extra = mapped_beyond_heap_records::<RemoteChurn>(&before, &after);
    assert_eq!(
        extra,
        0,
        "{} heap records and {} spans mapped",
        after.heaps - before.heaps,
        extra / RemoteChurn::SPAN_SIZE
    );
}

// Used by one test only (see `span_counting_config!`).
span_counting_config!(LateAlloc, typenum::U65536);

/// Whether the thread's heap was already retired when the late destructor ran, and the
/// blocks it allocated, as addresses (`None` if it panicked).
static LATE_BLOCKS: std::sync::Mutex<Option<(bool, Vec<usize>)>> = std::sync::Mutex::new(None);

/// A thread-exit hook (the OS layer's, as the allocator's own: a pthread key destructor,
/// or a fiber-local callback on Windows) that runs after `LateAlloc`'s own exit hook
/// retired the thread's heap, so its allocations are served by an orphaned heap.
struct AllocateAfterExit;

impl crate::os::ThreadExit for AllocateAfterExit {
    unsafe fn on_exit(_value: *mut u8) {
        // SAFETY: the configuration's thread slot, valid for the whole thread.
        let retired =
            unsafe { (*LateAlloc::thread_state()).status.get() } == crate::thread_state::DEAD;
        // A panic must not unwind out of the platform's `extern` callback.
        let blocks = std::panic::catch_unwind(|| filled_blocks::<LateAlloc>(64 * 3 + 10)).ok();
        *LATE_BLOCKS.lock().unwrap_or_else(|e| e.into_inner()) = blocks.map(|b| (retired, b));
    }
}

#[test]
fn blocks_allocated_after_thread_exit_go_back_when_other_threads_free_them() {
    let before = api::statistics::<LateAlloc>().unwrap();
    std::thread::spawn(|| {
        // The first heap of the configuration creates its thread-exit key, so ours comes
        // later and (glibc runs keys in order) its destructor runs after the retirement.
        let layout = Layout::from_size_align(16, 16).unwrap();
        // SAFETY: valid layout; freed once.
        unsafe { api::dealloc::<LateAlloc>(api::alloc::<LateAlloc>(layout), layout) };
        let key = crate::os::exit_key_create::<AllocateAfterExit>().expect("a free key");
        // SAFETY: a key just made and never deleted; a non-null value makes its hook run.
        unsafe { crate::os::exit_key_set(key, core::ptr::dangling_mut()) };
    })
    .join()
    .unwrap();
    let (retired, blocks) = LATE_BLOCKS
        .lock()
        .unwrap()
        .take()
        .expect("the late destructor ran and did not panic");
    // (glibc runs key destructors in key order, Windows fiber-local callbacks in index
    // order; a key freed meanwhile by a concurrent test could give ours a lower slot.)
    assert!(
        retired,
        "the late destructor ran before the heap was retired"
    );
    let held = api::statistics::<LateAlloc>().unwrap().mapped;
    assert!(
        held >= before.mapped + 3 * LateAlloc::SPAN_SIZE,
        "held {held}"
    );
    // Another thread frees them all: every span must go back, as for blocks allocated
    // before the exit.
    free_on_other_thread::<LateAlloc>(blocks);
    let after = api::statistics::<LateAlloc>().unwrap();
    let extra = mapped_beyond_heap_records::<LateAlloc>(&before, &after);
    assert_eq!(
        extra,
        0,
        "{} spans still mapped",
        extra / LateAlloc::SPAN_SIZE
    );
}

// Used only through first-class heaps, by one test.
test_config!(HeapOnly, typenum::U65536);

/// The `define_rpmalloc!` type of `HeapOnly`, as the macro would make it.
struct HeapOnlyAlloc;

// SAFETY: `HeapOnly` is this type's configuration and no other type's.
unsafe impl crate::first_class::Rpmalloc for HeapOnlyAlloc {
    type Config = HeapOnly;
}

/// A configuration used only through first-class heaps installs its thread-exit key and
/// fork handlers (made together) with its first heap: no thread ever sets up a heap of it,
/// yet a `fork` must find its heaps' locks taken and released like any other's.
#[test]
fn a_first_class_heap_installs_the_fork_handlers() {
    use core::sync::atomic::Ordering::Acquire;
    assert_eq!(HeapOnly::global().exit_key.load(Acquire), 0, "not yet");
    let heap = crate::Heap::<HeapOnlyAlloc>::new();
    let layout = Layout::from_size_align(8, 8).unwrap();
    // SAFETY: a non-zero size; freed with the same layout.
    unsafe { heap.dealloc(heap.alloc(layout), layout) };
    assert_ne!(HeapOnly::global().exit_key.load(Acquire), 0, "installed");
}

/// An initial-exec slot (`initial_exec_tls: true`), declared as `define_rpmalloc!` does.
mod initial_exec_slot {
    crate::__thread_slot!(initial_exec "__rpmalloc_tls_unit_tests_initial_exec_slot");

    /// The slot's image in assembly is `ThreadState::new()`, field by field, in every new
    /// thread, and each thread's slot is its own.
    #[test]
    fn a_new_threads_slot_holds_a_new_thread_state_of_its_own() {
        use crate::thread_state::ThreadState;
        let fresh = ThreadState::new();
        let read = || {
            let slot = __rpmalloc_thread_state();
            // SAFETY: the calling thread's slot, live while it runs.
            let state = unsafe { &*slot };
            (
                slot as usize,
                state.heap.get() as usize,
                state.status.get(),
                state.ticks.left(),
            )
        };
        let (here, heap, status, ticks) = read();
        let expected = (
            fresh.heap.get() as usize,
            fresh.status.get(),
            fresh.ticks.left(),
        );
        assert_eq!((heap, status, ticks), expected);
        // A write here is seen here only.
        // SAFETY: as above; the slot is this thread's alone.
        unsafe { &*__rpmalloc_thread_state() }
            .status
            .set(crate::thread_state::DEAD);
        let there = std::thread::spawn(read).join().unwrap();
        assert_ne!(there.0, here, "two threads share one slot");
        assert_eq!((there.1, there.2, there.3), expected);
        assert_eq!(read().2, crate::thread_state::DEAD);
        // SAFETY: as above.
        unsafe { &*__rpmalloc_thread_state() }
            .status
            .set(fresh.status.get());
    }
}

//! `fork` while other threads allocate: the child can allocate and free with both the
//! global allocator and a second configuration (the allocator's locks are made safe with
//! `pthread_atfork`).
//!
//! Ignored under Miri, which does not support `fork`; Unix only (Windows has no `fork`).
#![cfg(unix)]

use rpmalloc::define_rpmalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

define_rpmalloc!(ForkGlobal);
define_rpmalloc!(ForkLean, < enable_thread_cache: false, span_size: 16384 >);
// Used only through first-class heaps (and `dealloc` of their blocks on other threads):
// no thread ever gets a heap of it, yet its locks must be safe across `fork` too.
define_rpmalloc!(ForkHeapOnly);

#[global_allocator]
static GLOBAL: ForkGlobal = ForkGlobal;

/// Work the child does; returns normally only if everything checked out.
fn child_work() -> bool {
    // A child stuck on a lock held at fork time is killed by the alarm, failing the test.
    // SAFETY: alarm has no memory-safety preconditions.
    unsafe { libc::alarm(10) };
    let mut ok = true;
    let v: Vec<String> = (0..2000).map(|i| format!("child {i}")).collect();
    ok &= v[1999] == "child 1999";
    let big = vec![7u8; 3 << 20];
    ok &= big.iter().all(|&b| b == 7);
    for size in [16usize, 1000, 20_000, 70_000, 300_000, 5 << 20] {
        let layout = Layout::from_size_align(size, 16).unwrap();
        // SAFETY: non-zero layout; freed with the same layout.
        unsafe {
            let p = ForkLean.alloc(layout);
            if p.is_null() {
                return false;
            }
            p.write_bytes(0x5A, size);
            ok &= *p.add(size - 1) == 0x5A;
            ForkLean.dealloc(p, layout);
        }
    }
    ok
}

/// Forks `n` children one after another; each runs `work` and exits 0 if it returned true.
/// Every child must exit normally (an alarm in `work` kills a deadlocked one) with 0.
fn fork_children(n: usize, work: fn() -> bool) {
    for _ in 0..n {
        // SAFETY: the child only runs `work` and then `_exit`s, never unwinding or
        // returning into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = work();
            // SAFETY: terminate the child without running the parent's exit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        assert!(
            libc::WIFEXITED(status),
            "child crashed or hung: status {status:#x}"
        );
        assert_eq!(libc::WEXITSTATUS(status), 0, "child saw wrong contents");
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "calls fork (and waitpid, alarm), which Miri does not support"
)]
fn child_allocates_after_fork_under_load() {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Churn both configurations, including thread exit (orphan lock) and
                    // global cache traffic.
                    let v: Vec<Box<[u8]>> = (0..64)
                        .map(|i| vec![t as u8; 16 + i * 997].into_boxed_slice())
                        .collect();
                    // Without a thread cache every span goes through the global cache's
                    // lock, so forks often land while some thread holds it.
                    let layout = Layout::from_size_align(70_000, 16).unwrap();
                    for _ in 0..1000 {
                        // SAFETY: non-zero layout; freed right away.
                        unsafe { ForkLean.dealloc(ForkLean.alloc(layout), layout) };
                    }
                    std::thread::spawn(move || drop(v)).join().unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    fork_children(200, child_work);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        assert!(w.join().unwrap() > 0);
    }
}

/// A block handed to another thread with its layout.
struct Sent(*mut u8, Layout);
// SAFETY: the block is handed over whole: the receiving thread alone uses it.
unsafe impl Send for Sent {}

/// The sizes the first-class heap test uses: small, medium, large and huge blocks.
const HEAP_SIZES: [usize; 5] = [24, 3_000, 40_000, 300_000, 3 << 20];

/// In the child: a new first-class heap of every kind of block, freed by its drop.
fn child_heap_work() -> bool {
    // SAFETY: alarm has no memory-safety preconditions.
    unsafe { libc::alarm(10) };
    let heap = ForkHeapOnly::heap();
    let mut ok = true;
    for (i, &size) in HEAP_SIZES.iter().enumerate() {
        let layout = Layout::from_size_align(size, 16).unwrap();
        // SAFETY: a non-zero size.
        let p = unsafe { heap.alloc(layout) };
        if p.is_null() {
            return false;
        }
        // SAFETY: a fresh block of `size` bytes, left to the heap's drop.
        unsafe {
            p.write_bytes(i as u8, size);
            ok &= *p.add(size - 1) == i as u8;
        }
    }
    drop(heap);
    ok
}

/// A program that uses a configuration only through first-class heaps still has its
/// fork handlers: threads create and drop heaps (the spare-record lock), free their
/// blocks on other threads (a heap's locks for returned runs and huge blocks) while the
/// main thread forks; every child makes a heap of its own.
#[test]
#[cfg_attr(
    miri,
    ignore = "calls fork (and waitpid, alarm), which Miri does not support"
)]
fn child_makes_a_heap_after_fork_under_heap_only_load() {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let heap = ForkHeapOnly::heap();
                    let blocks: Vec<Sent> = (0..32)
                        .map(|i| {
                            let layout =
                                Layout::from_size_align(HEAP_SIZES[i % HEAP_SIZES.len()], 16)
                                    .unwrap();
                            // SAFETY: a non-zero size.
                            Sent(unsafe { heap.alloc(layout) }, layout)
                        })
                        .collect();
                    std::thread::spawn(move || {
                        for Sent(p, layout) in blocks {
                            assert!(!p.is_null());
                            // SAFETY: a live block of a heap of `ForkHeapOnly`, with its
                            // layout, freed once before the heap is dropped (joined below).
                            unsafe { ForkHeapOnly.dealloc(p, layout) };
                        }
                    })
                    .join()
                    .unwrap();
                    drop(heap);
                    n += 1;
                }
                n
            })
        })
        .collect();
    fork_children(100, child_heap_work);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        assert!(w.join().unwrap() > 0);
    }
}

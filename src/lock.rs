//! A minimal spin lock for the rare global paths (global span cache, orphaned heaps).
//!
//! `std::sync::Mutex` would do, but a spin lock is `const`-constructible with any payload,
//! never allocates, and its critical sections here are a few pointer moves (or, on the
//! orphan lock, one heap operation), so spinning with `yield_now` under contention is
//! cheaper than parking.
//!
//! Under `--cfg loom` its atomic and spin hints are `loom`'s (see `sync.rs`) and the tests
//! at the end of this file model-check it.

use crate::sync::{spin_loop, yield_now, AtomicBool, Ordering};
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};

/// A spin lock around `T`.
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `locked`, as with a mutex.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the value.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// An unlocked lock holding `value`.
    #[cfg(not(loom))]
    pub(crate) const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// An unlocked lock holding `value` (`loom`'s atomics have no `const` constructor).
    #[cfg(loom)]
    pub(crate) fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, spinning (then yielding) until it is free.
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        SpinGuard { lock: self }
    }

    /// Takes the lock if it is free; `None` (at once) if another thread holds it.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        // The guard only once the exchange succeeded: a guard built and dropped on
        // failure (as `bool::then_some` would, which evaluates its argument first) would
        // release the lock another thread holds — found by Miri as two threads in one
        // thread cache at once.
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            Some(SpinGuard { lock: self })
        } else {
            None
        }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if spins < 64 {
                    spin_loop();
                    spins += 1;
                } else {
                    yield_now();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Takes the lock without a guard (for `pthread_atfork` handlers).
    #[cfg_attr(windows, allow(dead_code, reason = "Windows has no fork"))]
    pub(crate) fn raw_lock(&self) {
        core::mem::forget(self.lock());
    }

    /// Releases a lock taken with [`SpinLock::raw_lock`].
    #[cfg_attr(windows, allow(dead_code, reason = "Windows has no fork"))]
    ///
    /// # Safety
    /// The caller took the lock with `raw_lock` and holds no guard.
    pub(crate) unsafe fn raw_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Resets the lock to unlocked in a forked child, whatever its state in the parent.
    #[cfg_attr(windows, allow(dead_code, reason = "Windows has no fork"))]
    ///
    /// # Safety
    /// Only the calling thread exists (just after `fork`).
    pub(crate) unsafe fn force_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// Holds a [`SpinLock`] until dropped.
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no other reference exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn lock_serialises_increments() {
        // Under Miri (interpreted, its scheduler preempting) fewer rounds.
        let rounds: u64 = if cfg!(miri) { 200 } else { 10_000 };
        let lock = Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..rounds {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 4 * rounds);
    }

    /// A failed `try_lock` leaves the lock with its holder: it was once built as
    /// `is_ok().then_some(guard)`, whose guard, dropped on failure, released the lock.
    #[test]
    fn failed_try_lock_keeps_the_lock_held() {
        let lock = SpinLock::new(0u32);
        let held = lock.lock();
        assert!(lock.try_lock().is_none());
        assert!(lock.try_lock().is_none(), "still held after a failed try");
        drop(held);
        assert!(lock.try_lock().is_some());
    }

    /// The same with threads: while one thread holds the lock, others' `try_lock`s
    /// keep failing, and every increment made under `try_lock` or `lock` is kept.
    #[test]
    fn try_lock_never_admits_a_second_holder() {
        let rounds: u64 = if cfg!(miri) { 100 } else { 20_000 };
        let lock = Arc::new(SpinLock::new((0u64, false)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    let mut done = 0;
                    while done < rounds {
                        if let Some(mut g) = lock.try_lock() {
                            assert!(!g.1, "two holders at once");
                            g.1 = true;
                            g.0 += 1;
                            // Hold it a while, so other threads' tries fail meanwhile
                            // (under Miri each spin yields to the other threads).
                            for _ in 0..if cfg!(miri) { 10 } else { 100 } {
                                std::hint::spin_loop();
                            }
                            assert!(g.1, "another holder released it");
                            g.1 = false;
                            done += 1;
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(lock.lock().0, 4 * rounds);
    }
}

/// `loom` models: `RUSTFLAGS="--cfg loom" cargo test --release --lib loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::span::{Span, SpanStack};
    use loom::cell::UnsafeCell as LoomUnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    /// Three threads on a spin lock need a bound of 1: with two waiters, `loom` can
    /// schedule them yielding to each other forever, and at a bound of 2 it runs into its
    /// branch limit on such paths (4 minutes, then a failure) — a limit of the tool with
    /// spin loops, not a finding.
    use crate::sync::loom_model as model;

    /// Increments of a counter under the lock are never lost. The counter is also kept in
    /// a `loom` cell, so an access not ordered after the previous holder's (a lock that
    /// failed to acquire or release) fails the model.
    fn increments(threads: usize, per_thread: usize) {
        let lock = Arc::new(SpinLock::new((0usize, LoomUnsafeCell::new(0usize))));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let lock = Arc::clone(&lock);
                thread::spawn(move || {
                    for _ in 0..per_thread {
                        let mut g = lock.lock();
                        g.0 += 1;
                        // SAFETY: exclusive under the lock; loom checks that claim.
                        g.1.with_mut(|c| unsafe { *c += 1 });
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let g = lock.lock();
        assert_eq!(g.0, threads * per_thread, "an increment was lost");
        // SAFETY: every other thread was joined.
        assert_eq!(g.1.with(|c| unsafe { *c }), threads * per_thread);
    }

    #[test]
    fn loom_spin_lock_two_threads_lose_no_increment() {
        model(None, || increments(2, 2));
    }

    #[test]
    fn loom_spin_lock_three_threads_lose_no_increment() {
        model(Some(1), || increments(3, 2));
    }

    /// A span stack (like a global cache) under the lock, with a `loom`-checked shadow
    /// count.
    struct Cache {
        stack: SpanStack,
        shadow: LoomUnsafeCell<usize>,
    }
    // SAFETY: the raw span pointers are only followed under the lock.
    unsafe impl Send for Cache {}

    impl Cache {
        /// Adds `delta` to the shadow count and checks it against the stack's count.
        fn account(&mut self, delta: isize) {
            // SAFETY: called under the lock; loom checks the exclusivity.
            let n = self.shadow.with_mut(|n| unsafe {
                *n = (*n).wrapping_add_signed(delta);
                *n
            });
            assert_eq!(
                self.stack.len(),
                n,
                "count out of step with pushes and pops"
            );
        }
    }

    /// Leaks `n` zeroed span headers (freed at the end of each execution).
    fn headers(n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                // SAFETY: all-zero is a valid Span (null pointers, zero counts,
                // discriminant 0).
                let b: Box<Span> = Box::new(unsafe { core::mem::zeroed() });
                Box::into_raw(b) as usize
            })
            .collect()
    }

    /// Threads each push a span and pop one (as thread caches spill into and refill from
    /// the global cache) under the lock; the stack's count and a `loom`-checked shadow
    /// count agree throughout, and at the end every span is held by a thread or on the
    /// stack, exactly once.
    fn span_stack(threads: usize) {
        let spans = headers(threads + 1);
        let cache = Arc::new(SpinLock::new(Cache {
            stack: SpanStack::EMPTY,
            shadow: LoomUnsafeCell::new(0),
        }));
        {
            let mut c = cache.lock();
            // SAFETY: a leaked header on no list.
            unsafe { c.stack.push(spans[threads] as *mut Span) };
            c.account(1);
        }
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let cache = Arc::clone(&cache);
                let mine = spans[t];
                thread::spawn(move || {
                    {
                        let mut c = cache.lock();
                        // SAFETY: our leaked header, on no list.
                        unsafe { c.stack.push(mine as *mut Span) };
                        c.account(1);
                    }
                    let mut c = cache.lock();
                    let got = c.stack.pop();
                    assert!(!got.is_null(), "the stack lost a span");
                    c.account(-1);
                    got as usize
                })
            })
            .collect();
        let mut held: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let mut c = cache.lock();
        assert_eq!(c.stack.len(), 1);
        held.push(c.stack.pop() as usize);
        c.account(-1);
        assert!(c.stack.pop().is_null());
        held.sort_unstable();
        let mut all = spans.clone();
        all.sort_unstable();
        assert_eq!(held, all, "a span was lost or handed out twice");
        for s in spans {
            // SAFETY: leaked by `headers`, freed once; no list holds it any more.
            drop(unsafe { Box::from_raw(s as *mut Span) });
        }
    }

    #[test]
    fn loom_spin_lock_span_stack_two_threads() {
        model(None, || span_stack(2));
    }

    #[test]
    fn loom_spin_lock_span_stack_three_threads() {
        model(Some(1), || span_stack(3));
    }
}

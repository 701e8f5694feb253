//! `fork` safety: the notice window a remote free enters before it may take a span's
//! notify flag, and the fork handlers, which wait for open windows and take (then release
//! or reset) every lock of the configuration.
#![cfg_attr(windows, allow(dead_code, reason = "Windows has no fork"))]
use super::Global;
use crate::config::Config;
use core::sync::atomic::Ordering;

impl<C: Config> Global<C> {
    /// Marks the calling thread as about to take a span's notify flag and deliver its
    /// notice; [`Global::leave_notice_window`] ends it. Waits while a `fork` is being
    /// prepared. (SeqCst on both sides: either this thread sees `forking`, or the forking
    /// thread sees its count.)
    #[cold]
    pub(crate) fn enter_notice_window(&self) {
        loop {
            self.notices_in_flight.fetch_add(1, Ordering::SeqCst);
            if !self.forking.load(Ordering::SeqCst) {
                return;
            }
            self.notices_in_flight.fetch_sub(1, Ordering::SeqCst);
            while self.forking.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
        }
    }

    /// Ends what [`Global::enter_notice_window`] began: the notice is delivered, or this
    /// push did not take the flag.
    #[inline]
    pub(crate) fn leave_notice_window(&self) {
        self.notices_in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Before `fork`: stops new notice windows and waits for the open ones to close (no
    /// lock is taken in one), then takes every lock. In the child no span is left with its
    /// flag taken and its notice undelivered, and no structure mid-update.
    pub(crate) fn prepare_fork(&self) {
        self.forking.store(true, Ordering::SeqCst);
        while self.notices_in_flight.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        self.lock_all();
    }

    /// After `fork`, in the parent: releases what [`Global::prepare_fork`] took.
    ///
    /// # Safety
    /// The calling thread ran `prepare_fork`.
    pub(crate) unsafe fn parent_after_fork(&self) {
        // SAFETY: this thread ran `prepare_fork` (the contract), so it holds every lock.
        unsafe { self.unlock_all() };
        self.forking.store(false, Ordering::SeqCst);
    }

    /// After `fork`, in the child (only the forking thread exists): resets the locks and
    /// the window count and lets notices flow again.
    ///
    /// # Safety
    /// Called in the child right after a `fork` that `prepare_fork` prepared.
    pub(crate) unsafe fn child_after_fork(&self) {
        // SAFETY: in the child right after `fork` only this thread exists (the contract),
        // and `prepare_fork` took every lock before it, so nothing was mid-update.
        unsafe { self.reset_locks() };
        self.notices_in_flight.store(0, Ordering::Relaxed);
        self.forking.store(false, Ordering::SeqCst);
    }

    /// Takes every lock of this configuration (before `fork`).
    pub(super) fn lock_all(&self) {
        // In the order every other path takes them: maintenance, orphans, a thread cache,
        // a global cache count.
        self.maintenance.raw_lock();
        self.orphans.raw_lock();
        for heap in self.heaps() {
            heap.lock.raw_lock();
        }
        for slot in self.heaps() {
            slot.cache.raw_lock();
        }
        self.cache.lock_all();
        // Leaf locks (nothing is taken while they are held): first-class heaps' lists.
        for slot in self.heaps() {
            slot.returned.raw_lock();
            slot.huge.raw_lock();
        }
        self.spare_heaps.raw_lock();
    }

    /// Releases what [`Global::lock_all`] took (in the parent after `fork`).
    ///
    /// # Safety
    /// The caller holds every lock through `lock_all`.
    pub(super) unsafe fn unlock_all(&self) {
        // SAFETY: `lock_all` took each of these locks on the calling thread (the contract).
        unsafe {
            self.spare_heaps.raw_unlock();
            for slot in self.heaps() {
                slot.huge.raw_unlock();
                slot.returned.raw_unlock();
            }
            self.cache.unlock_all();
            for slot in self.heaps() {
                slot.cache.raw_unlock();
            }
            for heap in self.heaps() {
                heap.lock.raw_unlock();
            }
            self.orphans.raw_unlock();
            self.maintenance.raw_unlock();
        }
    }

    /// Resets every lock in a forked child, where only the forking thread exists.
    ///
    /// # Safety
    /// Called in the child right after `fork`.
    pub(super) unsafe fn reset_locks(&self) {
        // SAFETY: per the contract no other thread exists to hold them; `lock_all` took
        // them all before `fork`, so no structure was mid-update.
        unsafe {
            self.cache.reset_locks();
            self.spare_heaps.force_unlock();
            for slot in self.heaps() {
                slot.huge.force_unlock();
                slot.returned.force_unlock();
                slot.cache.force_unlock();
                slot.lock.force_unlock();
            }
            self.orphans.force_unlock();
            self.maintenance.force_unlock();
        }
    }
}

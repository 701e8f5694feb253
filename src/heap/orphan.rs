//! A heap at its thread's exit: its bins retired, its notices taken, then orphaned for
//! the next thread to adopt; while orphaned, its notices drained by the threads that free
//! into it (`collect()`'s part for one heap too).

use super::Heap;
use crate::bins::Bin;
use crate::instance::Instance;
use crate::params::Params;
use crate::size_class::MAX_CLASS_COUNT;
use crate::span::{Run, SmallSpan, Span, SpanDList, State, LARGE_CLASS_COUNT};
use core::ptr;
use core::sync::atomic::{fence, Ordering};

impl<C: Instance> Heap<C> {
    // ---- thread exit ---------------------------------------------------------------

    /// Gives the bin's blocks back to its active span (counted: they were out) and files
    /// the span by its state: partial (returned, for the caller to settle) or full (settled
    /// here: armed, or released if remote frees emptied it).
    pub(super) fn retire_bin(&mut self, class: usize) -> *mut Span {
        let Bin { free, span } = self.bins.bin[class];
        self.bins.bin[class] = Bin::EMPTY;
        if span.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: an active span of this heap and the bin's list of its free blocks; it
        // joins the list its state calls for.
        unsafe {
            if !free.is_null() {
                let mut tail = free;
                let mut count = 1;
                while !(*tail).next.is_null() {
                    tail = (*tail).next;
                    count += 1;
                }
                (*tail).next = SmallSpan(span).free_list();
                SmallSpan(span).set_free_list(free);
                SmallSpan(span).set_used(SmallSpan(span).used() - count);
            }
            if !SmallSpan(span).free_list().is_null()
                || SmallSpan(span).limit() < SmallSpan(span).block_count()
            {
                SmallSpan(span).set_state(State::Partial);
                SpanDList::push(&mut self.partial[class], span);
                span
            } else {
                SmallSpan(span).set_state(State::Full);
                self.settle(span);
                ptr::null_mut()
            }
        }
    }

    /// After an allocation served by this orphaned heap (under the orphan lock): no thread
    /// will allocate from its active spans, so they are retired and watched or armed like
    /// those of an exiting thread — the frees of their blocks, all remote, then bring them
    /// back without waiting for an adopter.
    pub(crate) fn retire_bins(&mut self) {
        for class in 0..MAX_CLASS_COUNT {
            let partial = self.retire_bin(class);
            if !partial.is_null() {
                // SAFETY: a partial span of this heap, on its class's partial list.
                unsafe { self.settle(partial) };
            }
        }
    }

    /// Orphans the heap at `heap`: hands its thread caches back, releases empty spans
    /// (small spans not carved whole become their class's spare, which the heap keeps),
    /// and puts it on the orphan list for the next thread.
    ///
    /// # Safety
    /// `heap` is the calling thread's heap of this configuration, with its record's
    /// provenance (the thread slot's pointer), which the thread no longer uses; no
    /// reference to its owner part is live. Called once, when its thread exits.
    pub(crate) unsafe fn orphan(heap: *mut Heap<C>) {
        let global = C::global();
        // SAFETY: per the contract the heap is ours until it is published below; this
        // reference is not used after that.
        let owner = unsafe { &mut *heap };
        let shared = owner.shared();
        // The heavy part runs while we still own the heap, outside the orphan lock (many
        // threads exiting at once queued behind each other here). Notices other threads
        // send meanwhile wait for the last take, under the lock, below.
        owner.take_notices();
        for class in 0..MAX_CLASS_COUNT {
            owner.retire_bin(class);
            // No thread will allocate from the partial spans: watch them all (releasing the
            // ones remote frees already emptied), so remote frees bring them back.
            let mut span = owner.partial[class];
            while !span.is_null() {
                // SAFETY: partial spans of this heap; `next` is read before `settle` may
                // unlink the span.
                unsafe {
                    let next = Run(span).next();
                    owner.settle(span);
                    span = next;
                }
            }
        }
        if C::THREAD_CACHE {
            for count in 1..=LARGE_CLASS_COUNT {
                let (chain, n) = shared.cache.lock().take_stack(count, C::SPAN_SIZE);
                // SAFETY: thread caches hold free runs of `count` spans.
                unsafe { global.release_chain(count, chain, n) };
            }
        }
        // A sweep may be due (this thread's last tick may be long ago).
        Self::clock_tick();
        let mut orphans = global.orphans.lock();
        // Set before the last take (SeqCst, paired with the notice push then load in
        // `api::free_remote`): a thread that sends a notice after that take sees the flag
        // and settles the span itself. Spans emptied from now on go to the global cache.
        shared.orphaned.store(true, Ordering::SeqCst);
        // The take's swap must not be ordered before the flag store (pushers load the flag
        // after pushing); `take_all` is only Acquire, so fence.
        core::sync::atomic::fence(Ordering::SeqCst);
        owner.take_notices();
        // The reserve stays: it is untouched address space, and the next thread to adopt
        // this heap carves from it instead of mapping (and pinning) a mapping of its own.
        // So do the spare spans: the next thread's classes take them back before
        // whole-touched cached spans. At most one per class of blocks under half a page
        // (the classes carved a page at a time: about 65, 4 MiB of address space with
        // 64 KiB spans), resident only as far as carved; rpmalloc keeps one per class of
        // every size. They are outside the global cache's limit until a thread adopts
        // the heap.
        owner.next_orphan = (*orphans).cast();
        // Published under the lock: from here the orphan lock's holder is the heap's user,
        // and `owner` is not used again.
        *orphans = heap.cast();
    }

    /// `collect()`'s part for this heap (its own thread's, or an orphaned one under the
    /// orphan lock): takes its notices, so the spans other threads emptied are released,
    /// and gives its span reserve back to the OS. Its thread cache and spares are given
    /// back by the sweep `collect()` runs next.
    pub(crate) fn collect(&mut self) {
        self.take_notices();
        self.release_reserve();
    }

    /// Takes an orphaned heap for the calling thread, or creates one; null if the OS
    /// refuses a new heap.
    pub(crate) fn adopt_or_create() -> *mut Heap<C> {
        let global = C::global();
        // Bring the sweep period up to date before this thread stamps anything: the
        // period moves on only at clock reads, and one this old would make the runs this
        // thread caches first look old.
        Self::clock_tick();
        {
            let mut orphans = global.orphans.lock();
            let heap = (*orphans).cast::<Heap<C>>();
            if !heap.is_null() {
                // SAFETY: orphaned heaps are valid and, under the lock, ours to take.
                unsafe {
                    *orphans = (*heap).next_orphan.cast();
                    (*heap).next_orphan = ptr::null_mut();
                    Self::shared_of(heap.cast())
                        .orphaned
                        .store(false, Ordering::Relaxed);
                }
                return heap;
            }
        }
        Self::create()
    }

    /// Settles an orphaned heap's notices on its behalf, under the orphan lock. One thread
    /// drains a given heap at a time (its `draining` flag): the others only push and leave,
    /// instead of all queueing on the lock (seen as `sched_yield` storms in `rpbench` at 8
    /// threads). After dropping the flag the drainer looks again, so a notice pushed by a
    /// thread that saw the flag set is never left behind.
    ///
    /// # Safety
    /// `heap` is a heap id of configuration `C` as a span records it (the record's address,
    /// with its provenance).
    #[cold]
    pub(crate) unsafe fn drain_orphan(heap: *mut u8) {
        // SAFETY: per the contract, a heap record, never unmapped. Outside the lock only the
        // shared part is reached.
        let shared = unsafe { Self::shared_of(heap) };
        let (notices, orphaned, draining) = (&shared.notices, &shared.orphaned, &shared.draining);
        loop {
            if draining.swap(true, Ordering::SeqCst) {
                // The drainer will see our push: our push and this swap precede its release
                // of the flag, which precedes its fence and second look (all SeqCst).
                return;
            }
            {
                let _orphans = C::global().orphans.lock();
                while orphaned.load(Ordering::Relaxed) && !notices.is_empty_relaxed() {
                    // SAFETY: under the orphan lock an orphaned heap is ours to use (the flag
                    // is rechecked under the lock in case a thread adopted it meanwhile); the
                    // reference lives for this call only.
                    unsafe { (*heap.cast::<Heap<C>>()).take_notices() };
                }
            }
            draining.store(false, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if !orphaned.load(Ordering::Relaxed) || notices.is_empty_relaxed() {
                return;
            }
        }
    }
}

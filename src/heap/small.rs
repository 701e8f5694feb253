//! The small-span state machine: allocation from a size class's bin and its refill, local
//! frees, remote frees taken back, notices, and the release of emptied spans.
//!
//! A small span of a heap is in one of four states (`span::State`); its list membership
//! follows the state. `used` counts the blocks out of the span's own free list (with
//! users or in the bin), so the free fast path's one test `used == 0 || state == Full`
//! catches every transition that concerns it.
//!
//! | from | event | to | where |
//! |---|---|---|---|
//! | (free run) | a class needs a span (`init_small`) | Active, in the bin | `alloc_small_slow` |
//! | Active | every block out, remote list armed | Full, in no list | `alloc_small_slow` |
//! | Active | a partial span has free blocks while this one is part-carved | Partial | `alloc_small_slow` |
//! | Partial | the bin has no span | Active | `alloc_small_slow` |
//! | Active | its last block freed | Active (kept for the next refill) | `free_transition` |
//! | Full | a local free | Partial | `free_transition` |
//! | Full | a notice (first remote free): blocks taken | Partial, or released if none is out | `settle` |
//! | Partial | last block freed locally | released | `free_transition` |
//! | Partial | watched, last block freed remotely: notice | released | `settle` |
//! | Full / Partial | emptied while its notice is on the way | Releasing, in no list | `release_small` |
//! | Releasing | its notice arrives | released | `settle` |
//! | any but Active | heap idle, notice swept | released when empty | `sweep_notices` |
//! | Active | thread exit (`retire_bin`) | Partial or Full, armed; or released | `orphan.rs` |
//!
//! *Released* (`release_small` → `retire_empty`): the span stops being the heap's and
//! goes to its class's spare slot (if never carved whole), the thread cache, the global
//! cache or the OS (`spans.rs`). An *armed* span's first remote free sends it to the heap
//! as a notice (`remote.rs`); a *watched* partial span sends one when the remote frees
//! cover every block out, so a span other threads empty is released though its owner never
//! frees into it again.
use super::Heap;
use crate::bins::Bin;
use crate::block::Block;
use crate::instance::Instance;
use crate::os::addr;
use crate::params::Params;
use crate::span::{Kind, Run, SmallSpan, Span, SpanDList, State};
use crate::thread_cache::HeapShared;
use core::ptr;
use core::sync::atomic::Ordering;

/// Granularity of carving fresh blocks (the common 4 KiB page; only a heuristic).
const PAGE_SIZE: usize = 4096;

impl<C: Instance> Heap<C> {
    // ---- small and medium blocks -------------------------------------------------------

    /// Allocates a block of `class`.
    #[inline]
    pub(crate) fn alloc_small(&mut self, class: usize) -> *mut u8 {
        let bin = &mut self.bins.bin[class];
        let block = bin.free;
        if !block.is_null() {
            // SAFETY: the bin's list holds free blocks of its span.
            bin.free = unsafe { (*block).next };
            return block.cast();
        }
        self.alloc_small_slow(class)
    }

    /// Refills the class's bin and allocates from it, after collecting notices: the common
    /// case here ([`Self::refill_from_partial`]), everything else in
    /// [`Self::alloc_small_refill`].
    #[cold]
    #[inline(never)]
    pub(crate) fn alloc_small_slow(&mut self, class: usize) -> *mut u8 {
        self.tick();
        if !self.shared().notices.is_empty_relaxed() {
            self.take_notices();
        }
        // SAFETY: `class` is a small class (the caller's), this heap's own.
        let block = unsafe { self.refill_from_partial(class) };
        if !block.is_null() {
            return block;
        }
        self.alloc_small_refill(class)
    }

    /// The refill most calls of [`Self::alloc_small_slow`] make when blocks are freed here
    /// and there (rpmalloc-benchmark's pattern: nine in ten): the active span is carved
    /// whole, armed and has no remote frees, so it becomes `Full`; the first partial span
    /// has free blocks, so it becomes active and its blocks fill the bin. Exactly the steps
    /// [`Self::alloc_small_refill`]'s loop takes for this case, in a function small enough
    /// to save no registers (the loop's passes and saved registers were about 60 of this
    /// case's 95 instructions). Null, with nothing changed, in every other case.
    ///
    /// # Safety
    /// `class < MAX_CLASS_COUNT`.
    #[inline(always)]
    unsafe fn refill_from_partial(&mut self, class: usize) -> *mut u8 {
        let Bin { free, span } = self.bins.bin[class];
        let partial = self.partial[class];
        if !free.is_null() || span.is_null() || partial.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: the bin's span and the partial list's head are valid small spans of this
        // heap's `class` (the list invariants); the owner-only fields are ours.
        unsafe {
            let (active, next) = (SmallSpan(span), SmallSpan(partial));
            let block = next.free_list();
            if block.is_null()
                || !active.free_list().is_null()
                || active.remote().has_blocks()
                || active.limit() < active.block_count()
                || !active.armed()
            {
                return ptr::null_mut();
            }
            // Every block of the active span is out and a remote free will send it back
            // as a notice (armed): it leaves the bin as `Full`, in no list.
            active.set_state(State::Full);
            SpanDList::remove(&mut self.partial[class], partial);
            next.set_state(State::Active);
            // Its free blocks move to the bin: every carved block is out.
            next.set_free_list(ptr::null_mut());
            next.set_used(next.limit());
            let bin = &mut self.bins.bin[class];
            bin.span = partial;
            bin.free = (*block).next;
            block.cast()
        }
    }

    /// Refills the class's bin from the active span's free blocks, remote frees or
    /// untouched blocks, a partial span or a new span, and allocates from it.
    #[cold]
    #[inline(never)]
    fn alloc_small_refill(&mut self, class: usize) -> *mut u8 {
        loop {
            let Bin { free, span } = self.bins.bin[class];
            // SAFETY: the bin's list holds free blocks of its span; bins and partial lists
            // hold valid headers owned by this heap.
            unsafe {
                if !free.is_null() {
                    self.bins.bin[class].free = (*free).next;
                    return free.cast();
                }
                if !span.is_null() {
                    if !SmallSpan(span).free_list().is_null() {
                        // The span's free blocks move to the bin: every carved block is out.
                        self.bins.bin[class].free = SmallSpan(span).free_list();
                        SmallSpan(span).set_free_list(ptr::null_mut());
                        SmallSpan(span).set_used(SmallSpan(span).limit());
                        continue;
                    }
                    if SmallSpan(span).remote().has_blocks() {
                        Self::take_remote(span);
                        continue;
                    }
                    if SmallSpan(span).limit() < SmallSpan(span).block_count() {
                        let partial = self.partial[class];
                        if partial.is_null() || SmallSpan(partial).free_list().is_null() {
                            self.bins.bin[class].free = Self::carve(span);
                            continue;
                        }
                        // Reuse blocks already freed (pages already touched) before carving
                        // fresh pages, as rpmalloc does by serving from the head of the
                        // partial list: the active span, still part-carved, becomes partial
                        // (its free list is empty, so `used == limit`: not released unless
                        // nothing was carved yet, as for a new span when notices taken in
                        // `acquire_spans` just filed a partial one) and the partial span
                        // with free blocks becomes active below.
                        SpanDList::remove(&mut self.partial[class], partial);
                        SmallSpan(span).set_state(State::Partial);
                        SpanDList::push(&mut self.partial[class], span);
                        self.settle(span);
                        SmallSpan(partial).set_state(State::Active);
                        self.bins.bin[class].span = partial;
                        continue;
                    }
                    // Every block is out: the span leaves the bin until a free returns one;
                    // armed, so a remote free tells us.
                    if !Self::arm(span) {
                        continue;
                    }
                    SmallSpan(span).set_state(State::Full);
                    self.bins.bin[class].span = ptr::null_mut();
                }
                let partial = self.partial[class];
                if !partial.is_null() {
                    SpanDList::remove(&mut self.partial[class], partial);
                    SmallSpan(partial).set_state(State::Active);
                    self.bins.bin[class].span = partial;
                    continue;
                }
            }
            let mut span = if C::THREAD_CACHE {
                self.shared().cache.lock().take_spare(class)
            } else {
                ptr::null_mut()
            };
            if span.is_null() {
                span = self.acquire_spans(1).0;
                if span.is_null() {
                    return ptr::null_mut();
                }
            }
            // SAFETY: a free single span just taken from a cache, the reserve or a new
            // mapping (no list holds it, no block of it is out); `class` is the caller's.
            unsafe { self.init_small(span, class) };
            self.bins.bin[class].span = span;
        }
    }

    /// Prepares a free single span to serve `class` as its active span.
    ///
    /// # Safety
    /// `span` is a free run of one span of this configuration that no list holds and no
    /// other thread touches (its remote list clear), and `class < MAX_CLASS_COUNT`.
    pub(super) unsafe fn init_small(&mut self, span: *mut Span, class: usize) {
        // SAFETY: per the contract, a free run's header.
        debug_assert_eq!(
            unsafe { Run(span).span_count() },
            1,
            "a class's span is one span"
        );
        Self::count_in_use(self.shared(), C::SPAN_SIZE);
        let id = self.id();
        // SAFETY: per the contract, a free run of one span, now this heap's; the mapping
        // fields (span_count, offsets, master counters) are left alone.
        unsafe {
            Span::fast_owner(span).store(id, Ordering::Relaxed);
            SmallSpan(span).set_free_list(ptr::null_mut());
            // Released spans had no blocks out, so no remote list and no flag.
            debug_assert!(SmallSpan(span).remote().is_clear());
            SmallSpan(span).remote().reset();
            SmallSpan(span).set_armed(false);
            SmallSpan(span).set_used(0);
            SmallSpan(span).set_block_count(C::CLASSES.block_count[class]);
            SmallSpan(span).set_limit(0);
            SmallSpan(span).set_block_size(C::CLASSES.block_size[class]);
            SmallSpan(span).set_class(class as u8);
            Span::set_kind(span, Kind::Small);
            SmallSpan(span).set_state(State::Active);
            SmallSpan(span)
                .aligned_blocks()
                .store(false, Ordering::Relaxed);
            SmallSpan(span).set_heap(id);
        }
    }

    /// Carves never-used blocks into a list for the bin (counted out in `used`): small
    /// blocks a page at a time, so a fresh span touches its memory as it is used.
    ///
    /// # Safety
    /// `span` is a small span with `limit < block_count`.
    pub(super) unsafe fn carve(span: *mut Span) -> *mut Block {
        // SAFETY: blocks [limit, limit + n) lie inside the span and are unused.
        unsafe {
            let size = SmallSpan(span).block_size() as usize;
            let first = SmallSpan(span).limit() as usize;
            let remaining = SmallSpan(span).block_count() as usize - first;
            let base = Span::data(span).add(first * size);
            // Blocks under half a page: up to the end of the page the first one starts in
            // (at least two, so one block going out and back never empties the list and
            // sends every such free down the cold path). Bigger blocks: all of them, as
            // rpmalloc does — each link touches one page per block anyway, and carving a
            // few at a time would send every few allocations down the slow path.
            let n = if size < PAGE_SIZE / 2 {
                let page_end = (base as usize | (PAGE_SIZE - 1)) + 1;
                ((page_end - base as usize) / size)
                    .clamp(2, remaining.max(2))
                    .min(remaining)
            } else {
                remaining
            };
            for i in 0..n - 1 {
                let block = base.add(i * size).cast::<Block>();
                (*block).next = base.add((i + 1) * size).cast();
            }
            (*base.add((n - 1) * size).cast::<Block>()).next = ptr::null_mut();
            SmallSpan(span).set_limit(SmallSpan(span).limit() + n as u32);
            SmallSpan(span).set_used(SmallSpan(span).used() + n as u32);
            base.cast()
        }
    }

    /// Frees `block` of this heap's small span `span` (the slow-path form of the inline
    /// fast path in `api.rs`).
    ///
    /// # Safety
    /// `block` is the start of an allocated block of `span`, which this heap owns.
    #[inline]
    pub(crate) unsafe fn free_small(&mut self, span: *mut Span, block: *mut u8) {
        // SAFETY: `block` is an allocated block of `span`, a small span this heap owns (the
        // contract): its first word and the span's list and count are ours.
        unsafe {
            let block = block.cast::<Block>();
            let head = SmallSpan(span).free_list();
            // Written through the freer's pointer, listed with the mapping's provenance
            // (see `addr.rs`).
            (*block).next = head;
            SmallSpan(span).set_free_list(addr::own(block));
            SmallSpan(span).set_used(SmallSpan(span).used() - 1);
            if SmallSpan(span).used() == 0 || SmallSpan(span).state() == State::Full {
                self.free_transition(span);
            }
        }
    }

    /// Handles a free that emptied a span or gave a full span its first free block.
    ///
    /// # Safety
    /// `span` is a small span of this heap that just received a block.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn free_transition(&mut self, span: *mut Span) {
        // SAFETY: per the contract; list membership follows `state`.
        unsafe {
            let class = SmallSpan(span).class() as usize;
            if SmallSpan(span).used() == 0 {
                match SmallSpan(span).state() {
                    // Kept for the class's next refill.
                    State::Active => return,
                    State::Partial => SpanDList::remove(&mut self.partial[class], span),
                    _ => {}
                }
                self.release_small(span);
            } else if SmallSpan(span).state() == State::Full {
                SmallSpan(span).set_state(State::Partial);
                SpanDList::push(&mut self.partial[class], span);
            }
        }
    }

    /// Moves the blocks other threads freed into `span` onto its free list: O(1), the
    /// blocks are not touched. Returns false if there were none.
    ///
    /// # Safety
    /// `span` is a small span of this heap.
    #[inline]
    pub(super) unsafe fn take_remote(span: *mut Span) -> bool {
        // SAFETY: per the contract; the taken blocks are free blocks of the span, and the
        // tail is one of them.
        unsafe {
            let taken = SmallSpan(span).remote().take(span.cast());
            if taken.count == 0 {
                return false;
            }
            if !SmallSpan(span).free_list().is_null() {
                // The chain's tail links to null: only a non-empty list needs splicing.
                (*taken.tail).next = SmallSpan(span).free_list();
            }
            SmallSpan(span).set_free_list(taken.head);
            SmallSpan(span).set_used(SmallSpan(span).used() - taken.count);
        }
        true
    }

    /// Takes the blocks other threads freed into `span` off its count without linking
    /// them into its free list, for a span released next (its list is rebuilt when it is
    /// used again). Unlike [`Heap::take_remote`] it touches no block: it runs inside the
    /// free of one of them (an orphaned heap's drain), and the block is still the freeing
    /// program's until that free returns — writing it through the mapping's pointer there
    /// is a write behind the program's reference (Miri, Tree Borrows: a protected `Box`).
    ///
    /// # Safety
    /// `span` is a small span of this heap.
    pub(super) unsafe fn discard_remote(span: *mut Span) {
        // SAFETY: per the contract; only the span's header is touched.
        unsafe {
            let taken = SmallSpan(span).remote().take(span.cast());
            SmallSpan(span).set_used(SmallSpan(span).used() - taken.count);
        }
    }

    /// Arms `span` (sets its remote list's notify flag) so the next remote free sends it to this
    /// heap. False, and nothing armed, if remote frees are waiting: the caller takes them
    /// instead. A span that is already armed stays so (its notice may be on the way).
    ///
    /// # Safety
    /// `span` is a small span of this heap.
    pub(super) unsafe fn arm(span: *mut Span) -> bool {
        // SAFETY: per the contract; `armed` is owner-only.
        unsafe {
            if SmallSpan(span).armed() {
                return true;
            }
            let armed = SmallSpan(span).remote().arm();
            SmallSpan(span).set_armed(armed);
            armed
        }
    }

    /// Releases a small span that has no block out and is in no list — unless a notice
    /// for it is on its way to this heap, in which case it waits as `Releasing` and the
    /// notice releases it.
    ///
    /// # Safety
    /// `span` is a small span of this heap with `used == 0`, in no list.
    pub(super) unsafe fn release_small(&mut self, span: *mut Span) {
        // SAFETY: per the contract; `armed` is owner-only.
        unsafe {
            if SmallSpan(span).armed() {
                if !SmallSpan(span).remote().disarm() {
                    // Release: a sweep that takes its notice reads the span (see
                    // `sweep_notices`).
                    SmallSpan(span)
                        .state_word()
                        .store(State::Releasing as u8, Ordering::Release);
                    return;
                }
                SmallSpan(span).set_armed(false);
            }
            let run = Self::retire_empty(self.shared(), span);
            if !run.is_null() {
                self.release_spans(run);
            }
        }
    }

    /// The part of releasing an empty small span that needs only the heap's shared part
    /// (a sweep releases idle heaps' spans through it): the span stops being a small span
    /// of the heap, and becomes its class's spare if its class never carved it whole.
    /// Returns the run to release next — the span, or the spare it displaced — or null.
    ///
    /// # Safety
    /// `span` is a small span of the heap whose shared part is `shared`, with no block out,
    /// disarmed, in no list, and touched by no other thread.
    pub(super) unsafe fn retire_empty(shared: &HeapShared, span: *mut Span) -> *mut Span {
        Self::count_in_use(shared, C::SPAN_SIZE.wrapping_neg());
        // SAFETY: per the contract the span is ours to rewrite.
        unsafe {
            Span::fast_owner(span).store(ptr::null_mut(), Ordering::Relaxed);
            // A span its class never carved whole keeps its untouched pages only if the
            // same class takes it next (rpbench realloc and std2, 8 threads: threads of a
            // later round otherwise got their small-class spans whole-touched from the
            // caches; peak RSS -3 to -4.5 %).
            if C::THREAD_CACHE
                && SmallSpan(span).limit() < SmallSpan(span).block_count()
                && !shared.orphaned.load(Ordering::Relaxed)
            {
                let class = SmallSpan(span).class() as usize;
                let epoch = C::global().epoch();
                return shared.cache.lock().put_spare(class, span, epoch);
            }
        }
        span
    }

    /// Takes the spans other threads sent as notices and puts each back where it belongs,
    /// under the heap lock (see [`Heap::sweep_notices`]).
    #[cold]
    pub(crate) fn take_notices(&mut self) {
        // The heap's own lock, held until the end of this function; it guards no data of
        // its own (only the order of takes against a sweep's).
        let _lock = self.shared().lock.lock();
        let mut link = self.shared().notices.take_all();
        while !link.is_null() {
            // SAFETY: notices are `notice_link`s of this heap's small span headers, pushed
            // with release ordering; the header is found by masking.
            unsafe {
                let next = (*link).next;
                let span = addr::mask::<_, Span>(link, C::SPAN_MASK);
                SmallSpan(span).set_armed(false);
                self.settle(span);
                link = next;
            }
        }
    }

    /// A decay sweep's part for a heap (the sweeping thread holds the heap lock, so the
    /// heap's thread is not taking its notices): releases the spans of its notices that no
    /// thread can touch any more — full spans every block of which has come back through
    /// remote frees, and spans waiting to be released — and leaves the others for the
    /// heap's thread. So a thread that stops allocating (a pipeline's producer between
    /// bursts) does not pin the spans its consumers emptied until it allocates again.
    ///
    /// Such a span is in none of the heap's lists (a full span leaves its class; only a
    /// partial one is on a list, and those are left alone) and no thread touches it: no
    /// block of it is held, so no free comes, it is not a class's active span, so nothing
    /// is allocated from it, and its notice is taken here, so the heap's thread does not
    /// settle it. What the owner wrote to it is seen through acquires (of its remote-free
    /// word, or of its `Releasing` state). The heap lock keeps the notices put back from
    /// landing after an exiting thread's last take.
    ///
    /// # Safety
    /// `shared` is the shared part of a heap of this configuration that is not orphaned,
    /// and the caller holds its heap lock. (The caller may be the heap's own thread,
    /// sweeping from one of its slow paths: those touch such spans only through
    /// `take_notices`, which holds the lock.)
    pub(crate) unsafe fn sweep_notices(shared: &HeapShared) {
        let mut link = shared.notices.take_all();
        while !link.is_null() {
            // SAFETY: notices are `notice_link`s of this heap's small span headers, pushed
            // with release ordering (the header is found by masking); an idle span is ours
            // to release (see above), and only its own fields and the shared part are
            // touched, never the owner part.
            unsafe {
                let next = (*link).next;
                let span = addr::mask::<_, Span>(link, C::SPAN_MASK);
                // Acquire: the owner stores `Releasing` with release after its last write
                // to the span; for a full span, the acquire is the remote word's.
                let state = State::from_u8(SmallSpan(span).state_word().load(Ordering::Acquire));
                let idle = match state {
                    State::Releasing => true,
                    // Every local free of a full span makes it partial at once, so a full
                    // span has all its blocks out, and they are all back once the remote
                    // list holds as many.
                    State::Full => {
                        SmallSpan(span).remote().pending_acquire() == SmallSpan(span).block_count()
                    }
                    State::Partial | State::Active => false,
                };
                if idle {
                    // Its notice is taken: nothing is on the way any more.
                    SmallSpan(span).set_armed(false);
                    if state == State::Full {
                        Self::take_remote(span);
                    }
                    debug_assert_eq!(SmallSpan(span).used(), 0);
                    let run = Self::retire_empty(shared, span);
                    if !run.is_null() {
                        // Into the idle heap's cache, where decay finds it. Not counted
                        // off the owner's adaptive `span_in_use` (owner-only): it reads
                        // high by the spans swept, which only widens that limit.
                        Self::cache_run_within(shared, run, 1, C::thread_cache_limit(1));
                    }
                } else {
                    // Back for the heap's thread: still one notice per span.
                    shared.notices.push(link);
                }
                link = next;
            }
        }
    }

    /// Puts a span where its state calls for, after a notice or at thread exit. A full
    /// span takes its remote blocks (O(1): its free list is empty) and becomes partial, or
    /// is armed again if none came. A partial span is *watched* (armed, blocks left
    /// waiting) so that the free that returns its last block sends a notice — or released
    /// if every block it handed out is back already. An active span is left alone: its
    /// class takes the remote blocks when it runs dry.
    ///
    /// # Safety
    /// `span` is a small span of this heap, in the list its state says.
    pub(super) unsafe fn settle(&mut self, span: *mut Span) {
        // SAFETY: per the contract; list membership follows `state`.
        unsafe {
            let class = SmallSpan(span).class() as usize;
            loop {
                match SmallSpan(span).state() {
                    State::Active => return,
                    State::Releasing => {
                        // Emptied while its notice was on the way (no block is out).
                        self.release_small(span);
                        return;
                    }
                    State::Full => {
                        // A full span's free list is empty, so taking its remote blocks
                        // writes none of them (see `discard_remote`).
                        debug_assert!(SmallSpan(span).free_list().is_null());
                        if !Self::take_remote(span) {
                            if Self::arm(span) {
                                return;
                            }
                            continue;
                        }
                        if SmallSpan(span).used() == 0 {
                            self.release_small(span);
                            return;
                        }
                        SmallSpan(span).set_state(State::Partial);
                        SpanDList::push(&mut self.partial[class], span);
                    }
                    State::Partial => {
                        let used = SmallSpan(span).used();
                        if SmallSpan(span).armed() {
                            // Already watched: the free of its last block sends a notice,
                            // unless that free came already.
                            if SmallSpan(span).remote().pending() != used {
                                return;
                            }
                        } else if SmallSpan(span).remote().watch(used) {
                            SmallSpan(span).set_armed(true);
                            return;
                        }
                        // Every block it handed out is waiting: no free will come. The
                        // span is released, so its blocks need no list.
                        Self::discard_remote(span);
                        debug_assert_eq!(SmallSpan(span).used(), 0);
                        SpanDList::remove(&mut self.partial[class], span);
                        self.release_small(span);
                        return;
                    }
                }
            }
        }
    }
}

//! The per-thread heap: size-class bins, partial spans, the thread span cache, the span
//! reserve, and the notices of spans other threads freed into.
//!
//! A heap is used by one thread at a time: the thread that owns it, or — once that thread
//! has exited and the heap is orphaned — whoever holds the global orphan lock. Nothing in a
//! heap is atomic except the notice list (pushed by other threads) and the orphaned flag;
//! in a span, only its remote-free word ([`RemoteList`](crate::remote::RemoteList)).
//!
//! Blocks freed by other threads wait on their span's remote list. The owner takes a
//! span's whole list in O(1), without touching the blocks, when that span runs dry. Spans
//! in none of the heap's lists (full ones) are *armed*: the first remote free sends the
//! span to the heap as a notice, and the heap puts it back into use. Partial spans are
//! *watched* the same way, so the one other threads empty is released.
//!
//! Small spans: the bin of a size class holds the class's *active* span and a free list
//! taken from it, which the fast path pops without touching the span header. Span headers
//! sit at span-size-aligned addresses, so they all share a few cache sets: a fast path
//! that read the header of a random class's span missed the L2 cache on most allocations
//! (perf: 17 % of the allocation fast path's samples, rpbench std1). A span's `used`
//! counts its blocks out of its own free list — with users or in the bin — so a span whose
//! blocks sit in the bin is never seen as empty, and the free path's one test
//! `used == 0 || state == Full` catches every state change.

use crate::bins::{Bin, Bins, Ticks};
use crate::block::Block;
use crate::global::Sweep;
use crate::instance::Instance;
use crate::os::addr;
use crate::params::Params;
use crate::size_class::MAX_CLASS_COUNT;
use crate::span::{Kind, Span, SpanDList, State, LARGE_CLASS_COUNT, SPAN_HEADER_SIZE};
use crate::stats::{HeapCounters, Writer};
use crate::thread_cache::HeapShared;
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::Ordering;

/// Granularity of carving fresh blocks (the common 4 KiB page; only a heuristic).
const PAGE_SIZE: usize = 4096;

/// A heap's record: the owner part first (so a `*mut Bins` from the thread slot is also
/// the record's address), then the part other threads reach. Mapped once, never
/// unmapped.
#[repr(C)]
pub(crate) struct HeapRecord<C> {
    /// What only the heap's user touches.
    heap: Heap<C>,
    /// What other threads touch too.
    shared: HeapShared,
}

/// The owner part of a thread heap of configuration `C`: what only the heap's *user*
/// touches — its thread, or, while it is orphaned, whoever holds the global orphan lock.
/// Its methods take `&mut self`; other threads never form a reference to it, and reach
/// the heap only through its [`HeapShared`] (notices, flags, locks, the thread cache),
/// which lies outside this struct. `bins` comes first so a `*mut Bins` taken from the
/// thread slot is also the heap's address.
#[repr(C)]
pub(crate) struct Heap<C> {
    /// The fast-path view.
    pub bins: Bins,
    /// Partial spans per size class.
    partial: [*mut Span; MAX_CLASS_COUNT],
    /// The record this is part of, as mapped: the heap's identity in span headers and the
    /// way to its shared part. Derived from the mapping, never from a reference, so other
    /// threads may use it while the user holds `&mut` to this part.
    record: *mut HeapRecord<C>,
    /// Unused spans left over from the last mapping.
    reserve: *mut Span,
    /// Spans in the reserve.
    reserve_count: usize,
    /// Master of the reserve's mapping.
    reserve_master: *mut Span,
    /// Next heap on the orphan list (written under the orphan lock).
    pub(crate) next_orphan: *mut Heap<C>,
    /// Spans of each count this heap has handed out and not taken back (adaptive cache).
    span_in_use: [u32; LARGE_CLASS_COUNT],
    /// Highest `span_in_use` seen (adaptive cache).
    span_peak: [u32; LARGE_CLASS_COUNT],
    _config: PhantomData<C>,
    /// Allocator events of this heap (bin refills, spans acquired) left until it next
    /// reads the clock for a decay sweep; last, beside the shared part's `notices`, which
    /// the inline refill reads too, so the refill's count touches no other cache line.
    pub ticks: Ticks,
}

impl<C> HeapRecord<C> {
    // A template written once into each new heap record, never shared.
    #[allow(clippy::declare_interior_mutable_const)]
    const NEW: Self = HeapRecord {
        heap: Heap {
            bins: Bins {
                bin: [Bin::EMPTY; MAX_CLASS_COUNT],
            },
            partial: [ptr::null_mut(); MAX_CLASS_COUNT],
            record: ptr::null_mut(),
            reserve: ptr::null_mut(),
            reserve_count: 0,
            reserve_master: ptr::null_mut(),
            next_orphan: ptr::null_mut(),
            span_in_use: [0; LARGE_CLASS_COUNT],
            span_peak: [0; LARGE_CLASS_COUNT],
            _config: PhantomData,
            ticks: Ticks::new(),
        },
        shared: HeapShared::new(),
    };
}

impl<C: Instance> Heap<C> {
    /// Maps and initialises a new heap; null when the OS refuses. Heaps are never unmapped:
    /// an exited thread's heap waits on the orphan list for the next thread.
    ///
    /// The record is mapped with `memmap2`: it needs no alignment beyond a page and is
    /// never partially unmapped, which is exactly what that crate offers.
    #[cold]
    pub(crate) fn create() -> *mut Heap<C> {
        let len = core::mem::size_of::<HeapRecord<C>>();
        let record = crate::os::map_record(len).cast::<HeapRecord<C>>();
        if record.is_null() {
            return ptr::null_mut();
        }
        let global = C::global();
        // SAFETY: a fresh page-aligned mapping of at least size_of::<HeapRecord<C>>()
        // bytes, never unmapped; the shared part is registered once, here.
        unsafe {
            // From a constant template (one copy; a literal with the pointer in it was
            // built on the stack first: 2 000 instructions more per thread).
            record.write(HeapRecord::NEW);
            (*record).heap.record = record;
            global.register(&raw mut (*record).shared);
        }
        global.count(|s| s.heap_created(len.next_multiple_of(crate::os::page_size())));
        record.cast()
    }

    /// The heap whose bins are at `bins`, for its user.
    ///
    /// # Safety
    /// `bins` came from a real heap of this configuration (not [`EMPTY_BINS`]); the
    /// caller is that heap's user (its thread, or the holder of the orphan lock while the
    /// heap is orphaned) and forms no other reference to the heap's owner part while the
    /// returned one is in use (callers use it for one call).
    #[inline(always)]
    pub(crate) unsafe fn from_bins<'a>(bins: *mut Bins) -> &'a mut Heap<C> {
        // SAFETY: bins is the first field of a #[repr(C)] Heap<C>; exclusive per the
        // contract (other threads touch only the shared part, outside this struct).
        unsafe { &mut *bins.cast::<Heap<C>>() }
    }

    /// The shared part of the heap whose record is at `heap` (a heap id as spans record
    /// it, or the bins pointer of a thread slot).
    ///
    /// # Safety
    /// `heap` is the address of a heap record of this configuration, with the provenance
    /// of its mapping (a stored id or slot pointer, not one derived from a reference to
    /// the owner part).
    #[inline(always)]
    pub(crate) unsafe fn shared_of(heap: *mut u8) -> &'static HeapShared {
        // SAFETY: per the contract; records are never unmapped, and the shared part is
        // only ever reached through shared references.
        unsafe { &(*heap.cast::<HeapRecord<C>>()).shared }
    }

    /// The tick count of the heap whose bins are at `bins`, reached without a reference
    /// to the owner part (for the inline refill, which writes the bins through `bins`).
    ///
    /// # Safety
    /// `bins` is a thread slot's pointer to a real heap of this configuration, used by
    /// the calling thread.
    #[inline(always)]
    pub(crate) unsafe fn ticks_of<'a>(bins: *mut Bins) -> &'a Ticks {
        // SAFETY: per the contract; `ticks` is a `Cell` of the heap's user, which is us.
        unsafe { &(*bins.cast::<Heap<C>>()).ticks }
    }

    /// This heap's shared part.
    #[inline(always)]
    pub(crate) fn shared(&self) -> &'static HeapShared {
        // SAFETY: `record` is this heap's record, as mapped.
        unsafe { Self::shared_of(self.record.cast()) }
    }

    /// The type-erased address spans record as their owner (with the record's
    /// provenance: other threads reach the shared part through it).
    #[inline(always)]
    fn id(&self) -> *mut u8 {
        self.record.cast()
    }

    /// This heap's statistics counters, for its current user (its thread, or the holder of
    /// the orphan lock).
    #[inline(always)]
    pub(crate) fn counters(&self) -> &'static HeapCounters {
        &self.shared().counters
    }

    /// Counts `bytes` of spans that start (or, as `wrapping_neg`, stop) holding blocks. A
    /// read-modify-write: a decay sweep releases the spans of an idle heap's notices.
    #[inline(always)]
    fn count_in_use(shared: &HeapShared, bytes: usize) {
        if C::ENABLE_STATISTICS {
            shared.counters.in_use(bytes, Writer::Shared);
        }
    }

    /// Publishes the reserve's size to the statistics.
    #[inline(always)]
    fn count_reserve(&self) {
        if C::ENABLE_STATISTICS {
            self.counters()
                .set_reserve(self.reserve_count * C::SPAN_SIZE);
        }
    }

    /// Counts an allocator event of this heap; every `TICKS_PER_CLOCK_READ` events, reads
    /// the clock and runs a decay sweep if one is due. Call it holding no lock but the
    /// orphan lock and this heap's lock.
    #[inline]
    fn tick(&self) {
        if self.ticks.tick() {
            Self::clock_tick();
        }
    }

    /// Reads the clock and, if a decay sweep is due, runs it (see `global.rs`): idle
    /// heaps' notices first (the spans other threads emptied go back to the caches or the
    /// OS), then every cache's old runs. Call it holding no lock but the orphan lock and
    /// the calling heap's lock.
    #[cold]
    pub(crate) fn clock_tick() {
        if let Some(sweep) = C::global().clock_tick() {
            Self::sweep(&sweep);
        }
    }

    /// Runs a sweep: settles the notices of every heap not in use, then gives back the
    /// caches' old runs ([`Global::sweep_caches`](crate::global::Global::sweep_caches)).
    fn sweep(sweep: &Sweep<'_>) {
        let global = C::global();
        // Idle heaps' notices: the spans other threads emptied, released though the heap's
        // thread does not allocate. A heap taking its notices (its lock held) is skipped;
        // orphaned heaps settle theirs at each notice.
        for heap in global.heaps() {
            if heap.notices.is_empty_relaxed() || heap.orphaned.load(Ordering::Relaxed) {
                continue;
            }
            let Some(_lock) = heap.lock.try_lock() else {
                continue;
            };
            if !heap.orphaned.load(Ordering::Relaxed) {
                // SAFETY: a heap of this configuration (the list is `global`'s), not
                // orphaned, and we hold its heap lock.
                unsafe { Self::sweep_notices(heap) };
            }
        }
        global.sweep_caches(sweep);
    }

    /// `collect()` (see `api::collect`): every orphaned heap's part ([`Heap::collect`]),
    /// then a sweep that gives back everything cached.
    pub(crate) fn collect_all() {
        let global = C::global();
        let sweep = global.collect_sweep();
        {
            let orphans = global.orphans.lock();
            let mut heap = (*orphans).cast::<Heap<C>>();
            while !heap.is_null() {
                // SAFETY: orphaned heaps are used only under the orphan lock, which we hold.
                unsafe {
                    (*heap).collect();
                    heap = (*heap).next_orphan;
                }
            }
        }
        Self::sweep(&sweep);
    }

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

    /// Refills the class's bin from the active span's free blocks, remote frees or
    /// untouched blocks, a partial span or a new span, after collecting notices.
    #[cold]
    #[inline(never)]
    pub(crate) fn alloc_small_slow(&mut self, class: usize) -> *mut u8 {
        self.tick();
        if !self.shared().notices.is_empty_relaxed() {
            self.take_notices();
        }
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
                    if !(*span).free_list.is_null() {
                        // The span's free blocks move to the bin: every carved block is out.
                        self.bins.bin[class].free = (*span).free_list;
                        (*span).free_list = ptr::null_mut();
                        (*span).used = (*span).limit;
                        continue;
                    }
                    if (*span).remote.has_blocks() {
                        Self::take_remote(span);
                        continue;
                    }
                    if (*span).limit < (*span).block_count {
                        let partial = self.partial[class];
                        if partial.is_null() || (*partial).free_list.is_null() {
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
                        (*span).set_state(State::Partial);
                        SpanDList::push(&mut self.partial[class], span);
                        self.settle(span);
                        (*partial).set_state(State::Active);
                        self.bins.bin[class].span = partial;
                        continue;
                    }
                    // Every block is out: the span leaves the bin until a free returns one;
                    // armed, so a remote free tells us.
                    if !Self::arm(span) {
                        continue;
                    }
                    (*span).set_state(State::Full);
                    self.bins.bin[class].span = ptr::null_mut();
                }
                let partial = self.partial[class];
                if !partial.is_null() {
                    SpanDList::remove(&mut self.partial[class], partial);
                    (*partial).set_state(State::Active);
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
    unsafe fn init_small(&mut self, span: *mut Span, class: usize) {
        // SAFETY: per the contract, a free run's header.
        debug_assert_eq!(
            unsafe { (*span).span_count },
            1,
            "a class's span is one span"
        );
        Self::count_in_use(self.shared(), C::SPAN_SIZE);
        let id = self.id();
        // SAFETY: per the contract, a free run of one span, now this heap's; the mapping
        // fields (span_count, offsets, master counters) are left alone.
        unsafe {
            (*span).fast_owner.store(id, Ordering::Relaxed);
            (*span).free_list = ptr::null_mut();
            // Released spans had no blocks out, so no remote list and no flag.
            debug_assert!((*span).remote.is_clear());
            (*span).remote.reset();
            (*span).armed = false;
            (*span).used = 0;
            (*span).block_count = C::CLASSES.block_count[class];
            (*span).limit = 0;
            (*span).block_size = C::CLASSES.block_size[class];
            (*span).class = class as u8;
            (*span).kind = Kind::Small;
            (*span).set_state(State::Active);
            (*span).aligned_blocks.store(false, Ordering::Relaxed);
            (*span).heap = id;
        }
    }

    /// Carves never-used blocks into a list for the bin (counted out in `used`): small
    /// blocks a page at a time, so a fresh span touches its memory as it is used.
    ///
    /// # Safety
    /// `span` is a small span with `limit < block_count`.
    unsafe fn carve(span: *mut Span) -> *mut Block {
        // SAFETY: blocks [limit, limit + n) lie inside the span and are unused.
        unsafe {
            let size = (*span).block_size as usize;
            let first = (*span).limit as usize;
            let remaining = (*span).block_count as usize - first;
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
            (*span).limit += n as u32;
            (*span).used += n as u32;
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
            let head = (*span).free_list;
            // Written through the freer's pointer, listed with the mapping's provenance
            // (see `addr.rs`).
            (*block).next = head;
            (*span).free_list = addr::own(block);
            (*span).used -= 1;
            if (*span).used == 0 || (*span).state() == State::Full {
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
            let class = (*span).class as usize;
            if (*span).used == 0 {
                match (*span).state() {
                    // Kept for the class's next refill.
                    State::Active => return,
                    State::Partial => SpanDList::remove(&mut self.partial[class], span),
                    _ => {}
                }
                self.release_small(span);
            } else if (*span).state() == State::Full {
                (*span).set_state(State::Partial);
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
    unsafe fn take_remote(span: *mut Span) -> bool {
        // SAFETY: per the contract; the taken blocks are free blocks of the span, and the
        // tail is one of them.
        unsafe {
            let taken = (*span).remote.take(span.cast());
            if taken.count == 0 {
                return false;
            }
            if !(*span).free_list.is_null() {
                // The chain's tail links to null: only a non-empty list needs splicing.
                (*taken.tail).next = (*span).free_list;
            }
            (*span).free_list = taken.head;
            (*span).used -= taken.count;
        }
        true
    }

    /// Arms `span` (sets its remote list's notify flag) so the next remote free sends it to this
    /// heap. False, and nothing armed, if remote frees are waiting: the caller takes them
    /// instead. A span that is already armed stays so (its notice may be on the way).
    ///
    /// # Safety
    /// `span` is a small span of this heap.
    unsafe fn arm(span: *mut Span) -> bool {
        // SAFETY: per the contract; `armed` is owner-only.
        unsafe {
            if (*span).armed {
                return true;
            }
            let armed = (*span).remote.arm();
            (*span).armed = armed;
            armed
        }
    }

    /// Releases a small span that has no block out and is in no list — unless a notice
    /// for it is on its way to this heap, in which case it waits as `Releasing` and the
    /// notice releases it.
    ///
    /// # Safety
    /// `span` is a small span of this heap with `used == 0`, in no list.
    unsafe fn release_small(&mut self, span: *mut Span) {
        // SAFETY: per the contract; `armed` is owner-only.
        unsafe {
            if (*span).armed {
                if !(*span).remote.disarm() {
                    // Release: a sweep that takes its notice reads the span (see
                    // `sweep_notices`).
                    (*span)
                        .state
                        .store(State::Releasing as u8, Ordering::Release);
                    return;
                }
                (*span).armed = false;
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
    unsafe fn retire_empty(shared: &HeapShared, span: *mut Span) -> *mut Span {
        Self::count_in_use(shared, C::SPAN_SIZE.wrapping_neg());
        // SAFETY: per the contract the span is ours to rewrite.
        unsafe {
            (*span).fast_owner.store(ptr::null_mut(), Ordering::Relaxed);
            // A span its class never carved whole keeps its untouched pages only if the
            // same class takes it next (rpbench realloc and std2, 8 threads: threads of a
            // later round otherwise got their small-class spans whole-touched from the
            // caches; peak RSS -3 to -4.5 %).
            if C::THREAD_CACHE
                && (*span).limit < (*span).block_count
                && !shared.orphaned.load(Ordering::Relaxed)
            {
                let class = (*span).class as usize;
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
                (*span).armed = false;
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
                let state = State::from_u8((*span).state.load(Ordering::Acquire));
                let idle = match state {
                    State::Releasing => true,
                    // Every local free of a full span makes it partial at once, so a full
                    // span has all its blocks out, and they are all back once the remote
                    // list holds as many.
                    State::Full => (*span).remote.pending_acquire() == (*span).block_count,
                    State::Partial | State::Active => false,
                };
                if idle {
                    // Its notice is taken: nothing is on the way any more.
                    (*span).armed = false;
                    if state == State::Full {
                        Self::take_remote(span);
                    }
                    debug_assert_eq!((*span).used, 0);
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
    unsafe fn settle(&mut self, span: *mut Span) {
        // SAFETY: per the contract; list membership follows `state`.
        unsafe {
            let class = (*span).class as usize;
            loop {
                match (*span).state() {
                    State::Active => return,
                    State::Releasing => {
                        // Emptied while its notice was on the way (no block is out).
                        self.release_small(span);
                        return;
                    }
                    State::Full => {
                        if !Self::take_remote(span) {
                            if Self::arm(span) {
                                return;
                            }
                            continue;
                        }
                        if (*span).used == 0 {
                            self.release_small(span);
                            return;
                        }
                        (*span).set_state(State::Partial);
                        SpanDList::push(&mut self.partial[class], span);
                    }
                    State::Partial => {
                        let used = (*span).used;
                        if (*span).armed {
                            // Already watched: the free of its last block sends a notice,
                            // unless that free came already.
                            if (*span).remote.pending() != used {
                                return;
                            }
                        } else if (*span).remote.watch(used) {
                            (*span).armed = true;
                            return;
                        }
                        // Every block it handed out is waiting: no free will come.
                        Self::take_remote(span);
                        debug_assert_eq!((*span).used, 0);
                        SpanDList::remove(&mut self.partial[class], span);
                        self.release_small(span);
                        return;
                    }
                }
            }
        }
    }

    // ---- spans ---------------------------------------------------------------------

    /// Gets a free run of at least `count` spans: the thread cache, the global cache, a
    /// bigger cached run (see `take_larger`), the reserve, then a new mapping. The flag
    /// says the memory is fresh from the OS (reads as zero). Null when the OS refuses.
    #[inline]
    pub(crate) fn acquire_spans(&mut self, count: usize) -> (*mut Span, bool) {
        self.tick();
        if C::ENABLE_ADAPTIVE_THREAD_CACHE {
            let used = &mut self.span_in_use[count - 1];
            *used += 1;
            self.span_peak[count - 1] = self.span_peak[count - 1].max(*used);
        }
        // Notices are taken on a thread-cache miss (they may refill it), so a thread that
        // now allocates only large blocks gets back the small spans other threads emptied
        // once it needs spans its cache lacks — as rpmalloc adopts deferred spans only
        // after a thread-cache miss. (On every large allocation the check cost 7 of 158
        // instructions per large alloc+free pair.) The small-class slow path is the other
        // place they are taken.
        let mut span = self.cache_pop(count);
        if span.is_null() && !self.shared().notices.is_empty_relaxed() {
            self.take_notices();
            span = self.cache_pop(count);
        }
        if !span.is_null() {
            return (span, false);
        }
        // Cached runs of the same count before the reserve: their pages are resident
        // already, the reserve's would be touched for the first time (more faults, higher
        // RSS; a pipeline's producer kept carving fresh reserves while the runs its
        // consumer freed waited in the global cache). A whole batch only when the reserve
        // could not serve: a thread with a reserve that hoarded batches would leave other
        // threads to map (rpbench realloc, 8 threads: peak RSS +1.5 %).
        let global = C::global();
        if global.has_cached(count) {
            // Or when the global cache holds two batches or more: then a batch hoards nothing
            // another thread would need, and the next refills skip the lock (a pipeline's
            // producer, whose consumer returns spans a batch at a time, took the lock for
            // every span: 13 % of its time).
            let batch = C::THREAD_CACHE
                && !self.shared().orphaned.load(Ordering::Relaxed)
                && (self.reserve_count < count
                    || global.cached_runs_hint(count) >= 2 * C::transfer_batch(count));
            let (chain, n) =
                global.extract(count, if batch { C::transfer_batch(count) } else { 1 });
            if n > 1 {
                // SAFETY: a chain of `n` free runs of `count` spans just taken from the
                // global cache; its head is returned, the rest cached.
                unsafe {
                    let rest = (*chain).next;
                    (*chain).next = ptr::null_mut();
                    let epoch = global.epoch();
                    self.shared()
                        .cache
                        .lock()
                        .push_chain(count, rest, n - 1, epoch, C::SPAN_SIZE);
                }
            }
            if n > 0 {
                return (chain, false);
            }
        }
        // A bigger cached run: its pages are resident, the reserve's and a new mapping's
        // would be touched afresh, and runs of other counts would otherwise wait unused (a
        // pipeline of mixed large sizes kept mapping while the caches held runs of every
        // count but the one asked for).
        let span = self.take_larger(count);
        if !span.is_null() {
            return (span, false);
        }
        if self.reserve_count >= count {
            return (self.take_reserve(count), true);
        }
        self.map_spans(count)
    }

    /// Gets a free run of at least `count` spans for a block that grows by `realloc`:
    /// from the front of the reserve when it has room, so the next growth can extend the
    /// run over the spans behind it (`extend_run`); else the longest cached run, whole, so
    /// the next growths fit it; else a new mapping, whose reserve then follows. (A `Vec`
    /// growing to 1 MiB in runs cut to size from cached ones copied at every step.)
    fn acquire_for_growth(&mut self, count: usize) -> (*mut Span, bool) {
        self.tick();
        if self.reserve_count >= count {
            return (self.take_reserve(count), true);
        }
        let mut span = ptr::null_mut();
        if C::THREAD_CACHE && !self.shared().orphaned.load(Ordering::Relaxed) {
            span = self.shared().cache.lock().pop_longest(count, C::SPAN_SIZE);
        }
        if span.is_null() {
            span = C::global().extract_longest(count);
        }
        if !span.is_null() {
            return (span, false);
        }
        self.map_spans(count)
    }

    /// A run of `count` spans from the thread cache; null if it has none (or is off).
    #[inline]
    fn cache_pop(&mut self, count: usize) -> *mut Span {
        if C::THREAD_CACHE {
            self.shared().cache.lock().pop(count, C::SPAN_SIZE)
        } else {
            ptr::null_mut()
        }
    }

    /// The cached run with the fewest spans above `count`, from this thread's cache or
    /// the global one; null if no cache holds one. A run of up to twice `count` spans is
    /// taken whole: the block's run is then that long, and goes back whole. A longer one is
    /// split and the rest — still longer than the block — cached as a run of its own. The
    /// rule keeps cached runs long: splitting every run left crumbs too short for the next
    /// large block (a pipeline of 64 KiB – 3 MiB blocks, 1:1, peaked at 3.0 × jemalloc's
    /// RSS; rpmalloc's "whole up to 1.5 ×" at 1.8 ×; this at 1.4 ×), while never splitting
    /// would give a program that turns from big blocks to small ones a big run, resident
    /// and mostly unused, per small block.
    fn take_larger(&mut self, count: usize) -> *mut Span {
        let mut span = ptr::null_mut();
        if C::THREAD_CACHE && !self.shared().orphaned.load(Ordering::Relaxed) {
            span = self.shared().cache.lock().pop_larger(count, C::SPAN_SIZE);
        }
        if span.is_null() {
            span = C::global().extract_larger(count);
        }
        if span.is_null() {
            return span;
        }
        // SAFETY: a cached free run of more than `count` spans, now ours.
        unsafe {
            // A single span is always cut: a size class's span is one span.
            if count == 1 || (*span).span_count as usize > 2 * count {
                let rest = Span::split(span, count, C::SPAN_SIZE);
                let rest_count = (*rest).span_count as usize;
                self.cache_run(rest, rest_count);
            }
        }
        span
    }

    /// Maps a new run, keeping the spans beyond `count` as the reserve.
    #[cold]
    fn map_spans(&mut self, count: usize) -> (*mut Span, bool) {
        let map_count = count.max(C::SPAN_MAP_COUNT);
        let span = C::global().map_spans(map_count);
        if span.is_null() {
            return (ptr::null_mut(), false);
        }
        if map_count > count {
            self.release_reserve();
            // SAFETY: span heads a fresh mapping of map_count spans.
            unsafe {
                (*span).span_count = count as u32;
                self.reserve = span.cast::<u8>().add(count * C::SPAN_SIZE).cast();
            }
            self.reserve_count = map_count - count;
            self.reserve_master = span;
            self.count_reserve();
        }
        (span, true)
    }

    /// Cuts a run of `count` spans off the front of the reserve.
    fn take_reserve(&mut self, count: usize) -> *mut Span {
        let span = self.reserve;
        // SAFETY: the reserve is an unused, mapped tail of the reserve master's mapping.
        unsafe {
            (*span).span_count = count as u32;
            (*span).offset_from_master =
                ((span as usize - self.reserve_master as usize) / C::SPAN_SIZE) as u32;
            self.reserve_count -= count;
            self.reserve = if self.reserve_count == 0 {
                ptr::null_mut()
            } else {
                span.cast::<u8>().add(count * C::SPAN_SIZE).cast()
            };
        }
        self.count_reserve();
        span
    }

    /// Extends the large run at `span` to `count` spans by taking the reserve spans that
    /// directly follow it; false if they are not this heap's reserve.
    ///
    /// # Safety
    /// `span` is a live large run (of any heap) of this configuration.
    pub(crate) unsafe fn extend_run(&mut self, span: *mut Span, count: usize) -> bool {
        // SAFETY: per the contract the header is valid.
        unsafe {
            let have = (*span).span_count as usize;
            let extra = count - have;
            let follows = span.cast::<u8>().add(have * C::SPAN_SIZE).cast::<Span>();
            if self.reserve_count < extra
                || self.reserve != follows
                || Span::master(span, C::SPAN_SIZE) != self.reserve_master
            {
                return false;
            }
            // The taken spans stay counted in the master's mapping; they now belong to the
            // run, which gives them back together when it is released.
            self.take_reserve(extra);
            Self::count_in_use(self.shared(), extra * C::SPAN_SIZE);
            (*span).span_count = count as u32;
        }
        true
    }

    /// Gives the unused reserve back to the OS.
    fn release_reserve(&mut self) {
        if self.reserve_count > 0 {
            let count = self.reserve_count;
            let span = self.take_reserve(count);
            // SAFETY: a free run, now with its header written.
            unsafe { C::global().unmap_run(span) };
        }
    }

    /// Takes back a free run: into the thread cache while this heap has a thread, else
    /// the global cache or the OS. What the thread cache holds beyond its bounds goes on to
    /// the global cache.
    ///
    /// # Safety
    /// `span` is a free run of this configuration (its header's `span_count` and mapping
    /// fields valid) that no list holds and nothing else uses.
    #[inline]
    pub(crate) unsafe fn release_spans(&mut self, span: *mut Span) {
        // SAFETY: per the contract, a valid free run header.
        let count = unsafe { (*span).span_count } as usize;
        if C::ENABLE_ADAPTIVE_THREAD_CACHE {
            let used = &mut self.span_in_use[count - 1];
            *used = used.saturating_sub(1);
        }
        // SAFETY: a free run of `count` spans no list holds (the contract, and `count` read
        // from its header).
        unsafe { self.cache_run(span, count) };
    }

    /// Caches a free run of `count` spans in the thread cache (what overflows goes on to
    /// the global cache), or, without a thread, gives it to the global cache or the OS.
    ///
    /// # Safety
    /// As [`Heap::release_spans`], and the run has `count` spans.
    #[inline]
    unsafe fn cache_run(&mut self, span: *mut Span, count: usize) {
        let mut limit = C::thread_cache_limit(count);
        if C::ENABLE_ADAPTIVE_THREAD_CACHE {
            limit = limit.min(self.span_peak[count - 1] as usize).max(1);
        }
        // SAFETY: a free run of `count` spans no list holds (the contract); this heap's
        // shared part.
        unsafe { Self::cache_run_within(self.shared(), span, count, limit) };
    }

    /// Takes back a large run that another heap allocated and this thread freed. A single
    /// span waits in this thread's cache, as in any cache, but only until a batch of them is
    /// there, which then goes to the global cache at once: one lock per batch, not per free
    /// (a pipeline passing 32–64 KiB buffers took the global cache's lock for every free and
    /// every refill, 20 % of its time). A longer run goes to the global cache now, where the
    /// thread that allocated it and every other find it: a consumer must not keep what its
    /// producers would then map afresh.
    ///
    /// # Safety
    /// As [`Heap::release_spans`].
    pub(crate) unsafe fn release_foreign_run(&mut self, span: *mut Span) {
        // SAFETY: per the contract, a valid free run header that no list holds.
        unsafe {
            let count = (*span).span_count as usize;
            if count == 1 {
                Self::cache_run_within(self.shared(), span, count, C::transfer_batch(count));
            } else {
                C::global().release_run(span);
            }
        }
    }

    /// [`Heap::cache_run`] with the count limit `limit`, for the heap whose shared part
    /// is `shared` (its user, or a sweep holding its heap lock).
    ///
    /// # Safety
    /// `span` is a free run of `count` spans of this configuration that no list holds.
    #[inline]
    unsafe fn cache_run_within(shared: &HeapShared, span: *mut Span, count: usize, limit: usize) {
        let global = C::global();
        if C::THREAD_CACHE && !shared.orphaned.load(Ordering::Relaxed) {
            let mut cache = shared.cache.lock();
            // SAFETY: per the contract, a free run no list holds.
            let over = unsafe {
                cache.push(
                    span,
                    count,
                    global.epoch(),
                    C::SPAN_SIZE,
                    limit,
                    C::THREAD_CACHE_BYTES,
                )
            };
            if over {
                drop(cache);
                Self::spill(shared, count, limit);
            }
            return;
        }
        // SAFETY: per the contract, a free run no list holds.
        unsafe { global.release_run(span) };
    }

    /// Moves what the thread cache holds of `count` spans beyond its bounds to the global
    /// cache.
    #[cold]
    #[inline(never)]
    fn spill(shared: &HeapShared, count: usize, limit: usize) {
        let (chain, n) = shared.cache.lock().take_overflow(
            count,
            limit,
            C::transfer_batch(count),
            C::THREAD_CACHE_BYTES,
            C::SPAN_SIZE,
        );
        // SAFETY: free runs of `count` spans just cut from the thread cache.
        unsafe { C::global().release_chain(count, chain, n) };
    }

    // ---- large blocks --------------------------------------------------------------

    /// Allocates a block of `size` bytes aligned to `align` (< span size) in a run of
    /// spans (for a block that `grow`s by `realloc`, from the reserve when it can); the
    /// flag says the memory is fresh from the OS. The caller checked the run fits
    /// [`LARGE_CLASS_COUNT`] spans.
    #[inline]
    pub(crate) fn alloc_large(&mut self, size: usize, align: usize, grow: bool) -> (*mut u8, bool) {
        let count = Self::large_span_count(size, align);
        let (span, fresh) = if grow {
            self.acquire_for_growth(count)
        } else {
            self.acquire_spans(count)
        };
        if span.is_null() {
            return (ptr::null_mut(), false);
        }
        // A large run's owner is only ever compared with a thread slot's pointer, never
        // followed (no notices for large runs), so the address alone will do: taken from
        // `self`, it saves the load of `record` (1 instruction per large pair).
        let id = ptr::from_mut(self).cast::<u8>();
        // SAFETY: a free run of `count` spans; only block fields are written. `heap` tells
        // the free whether the freeing thread's heap allocated it (then its thread cache
        // takes the run back) or not (then the global cache does, where the allocating
        // thread and every other find it).
        unsafe {
            (*span).fast_owner.store(ptr::null_mut(), Ordering::Relaxed);
            (*span).kind = Kind::Large;
            (*span).heap = id;
            Self::count_in_use(self.shared(), (*span).span_count as usize * C::SPAN_SIZE);
        }
        let data = Span::data(span);
        (
            addr::with_addr(data, crate::os::align_up_pow2(data.addr(), align)),
            fresh,
        )
    }

    /// Spans needed for a large block.
    #[inline]
    pub(crate) fn large_span_count(size: usize, align: usize) -> usize {
        let pad = align.saturating_sub(SPAN_HEADER_SIZE);
        (SPAN_HEADER_SIZE + size + pad).div_ceil(C::SPAN_SIZE)
    }

    // ---- thread exit ---------------------------------------------------------------

    /// Gives the bin's blocks back to its active span (counted: they were out) and files
    /// the span by its state: partial (returned, for the caller to settle) or full (settled
    /// here: armed, or released if remote frees emptied it).
    fn retire_bin(&mut self, class: usize) -> *mut Span {
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
                (*tail).next = (*span).free_list;
                (*span).free_list = free;
                (*span).used -= count;
            }
            if !(*span).free_list.is_null() || (*span).limit < (*span).block_count {
                (*span).set_state(State::Partial);
                SpanDList::push(&mut self.partial[class], span);
                span
            } else {
                (*span).set_state(State::Full);
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
                    let next = (*span).next;
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
}

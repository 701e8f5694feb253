//! The `GlobalAlloc` entry points every `define_rpmalloc!` expansion forwards to.
//!
//! The fast paths are inline and short: one thread-local read, a table lookup, and a
//! pointer pop (alloc) or push (dealloc) on the span, with no atomic read-modify-write.
//! Everything else — setting up a thread, refilling a bin, large and huge blocks, blocks
//! freed by another thread — is out of line and `#[cold]`.

use crate::bins::{empty_bins, Bin, Bins};
use crate::block::Block;
use crate::heap::Heap;
use crate::huge;
use crate::instance::Instance;
use crate::os;
use crate::os::addr;
use crate::params::Params;
use crate::size_class::{REALLOC_GRANULARITY, SMALL_SIZE_LIMIT};
use crate::span::{Kind, Span, State, LARGE_CLASS_COUNT, SPAN_HEADER_SIZE};
use crate::stats::{HeapCounters, Statistics, Writer};
use crate::thread::init_thread;
use crate::thread_state::{ThreadState, DEAD, LIVE};
use core::alloc::Layout;
use core::ptr;
use core::sync::atomic::{fence, Ordering};

/// The calling thread's slot.
#[inline(always)]
fn thread_state<C: Instance>() -> &'static ThreadState {
    // SAFETY: the slot is a destructor-less thread-local, valid for the whole thread.
    unsafe { &*C::thread_state() }
}

/// Counts an allocator event of the calling thread (a large or huge block, or a block of
/// another thread's), reading the clock for decay every `TICKS_PER_CLOCK_READ` events.
#[inline]
fn tick<C: Instance>() {
    if thread_state::<C>().ticks.tick() {
        Heap::<C>::clock_tick();
    }
}

/// Runs `update` on the calling thread's statistics counters: its heap's, or the shared
/// ones of threads without a heap.
#[inline]
fn with_counters<C: Instance>(update: impl FnOnce(&HeapCounters, Writer)) {
    let state = thread_state::<C>();
    if state.status.get() == LIVE {
        // SAFETY: a live slot holds this thread's heap; only its counters are read.
        update(
            unsafe { Heap::<C>::from_bins(state.heap.get()) }.counters(),
            Writer::Owner,
        );
    } else {
        update(&C::global().stats.heapless, Writer::Shared);
    }
}

/// The size class of the live block at `ptr` (allocated with `layout`), if it has one.
///
/// # Safety
/// `ptr` is a live block of configuration `C` allocated with `layout`.
#[inline]
unsafe fn class_of_block<C: Instance>(ptr: *mut u8, layout: Layout) -> Option<usize> {
    if layout.align() >= C::SPAN_SIZE {
        return None;
    }
    let span = addr::mask::<_, Span>(ptr, C::SPAN_MASK);
    // SAFETY: per the contract the block's span header is valid.
    unsafe { ((*span).kind == Kind::Small).then(|| (*span).class as usize) }
}

/// Counts a block handed out (statistics on).
///
/// # Safety
/// `ptr` is null or a block of configuration `C` just allocated with `layout`.
#[inline(never)]
unsafe fn count_alloc<C: Instance>(ptr: *mut u8, layout: Layout) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: per the contract, a live block allocated with `layout`.
    let class = unsafe { class_of_block::<C>(ptr, layout) };
    with_counters::<C>(|c, w| c.allocated(layout.size(), class, w));
}

/// Counts a block about to be freed (statistics on).
///
/// # Safety
/// `ptr` is a live block of configuration `C` allocated with `layout`.
#[inline(never)]
unsafe fn count_free<C: Instance>(ptr: *mut u8, layout: Layout) {
    // SAFETY: a live block of `C` allocated with `layout` (the contract), as
    // `class_of_block` needs.
    let class = unsafe { class_of_block::<C>(ptr, layout) };
    with_counters::<C>(|c, w| c.freed(layout.size(), class, w));
}

/// `GlobalAlloc::alloc` for configuration `C`.
///
/// # Safety
/// As `GlobalAlloc::alloc`.
#[inline(always)]
pub unsafe fn alloc<C: Instance>(layout: Layout) -> *mut u8 {
    // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
    let p = unsafe { alloc_uncounted::<C>(layout) };
    if C::ENABLE_STATISTICS {
        // SAFETY: null or a block just allocated with `layout`.
        unsafe { count_alloc::<C>(p, layout) };
    }
    p
}

/// `alloc` without the statistics.
///
/// # Safety
/// As `GlobalAlloc::alloc`.
#[inline(always)]
unsafe fn alloc_uncounted<C: Instance>(layout: Layout) -> *mut u8 {
    let size = layout.size();
    if size <= C::MEDIUM_LIMIT && layout.align() <= C::NATURAL_ALIGN {
        let bins = thread_state::<C>().heap.get();
        let class = C::CLASSES.class_of(size);
        // SAFETY: bins are a heap's or the empty bins (a read-only static: reached only
        // through raw pointers, and never written, since their lists are null); `class` is
        // below MAX_CLASS_COUNT; a bin's list holds free blocks, counted out by their span
        // already.
        unsafe {
            let bin = (&raw mut (*bins).bin).cast::<Bin>().add(class);
            let block = (*bin).free;
            if !block.is_null() {
                (*bin).free = (*block).next;
                return block.cast();
            }
            // The bin ran dry: take the blocks freed into its span since the last refill
            // (every carved block is then out), without the slow path's call. A loop that
            // frees each block right after allocating it comes here once per list length.
            // Not while notices wait: only the slow path takes them, and a thread that
            // never left this branch would never get its full spans back. Nor when the
            // thread's tick count says the clock is due (decay sweeps, see `global.rs`).
            let span = (*bin).span;
            if !span.is_null() {
                let list = (*span).free_list;
                // Fields reached through the slot's pointer (the record's provenance), no
                // reference to the owner part: the bin is written through `bin` below.
                if !list.is_null()
                    && Heap::<C>::shared_of(bins.cast()).notices.is_empty_relaxed()
                    && Heap::<C>::ticks_of(bins).quiet_tick()
                {
                    (*span).free_list = ptr::null_mut();
                    (*span).used = (*span).limit;
                    (*bin).free = (*list).next;
                    return list.cast();
                }
            }
            if bins != empty_bins() {
                // The thread has a heap: refill straight from it.
                return Heap::<C>::from_bins(bins).alloc_small_slow(class);
            }
        }
    }
    // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
    unsafe { alloc_slow::<C, false, false>(layout) }
}

/// `GlobalAlloc::alloc_zeroed` for configuration `C`: memory fresh from the OS is not
/// cleared again.
///
/// # Safety
/// As `GlobalAlloc::alloc_zeroed`.
#[inline]
pub unsafe fn alloc_zeroed<C: Instance>(layout: Layout) -> *mut u8 {
    let size = layout.size();
    if size <= C::MEDIUM_LIMIT && layout.align() <= C::NATURAL_ALIGN {
        // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
        let p = unsafe { alloc::<C>(layout) };
        if !p.is_null() {
            // SAFETY: p holds at least `size` bytes.
            unsafe { p.write_bytes(0, size) };
        }
        return p;
    }
    // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
    let p = unsafe { alloc_slow::<C, true, false>(layout) };
    if C::ENABLE_STATISTICS {
        // SAFETY: null or a block just allocated with `layout`.
        unsafe { count_alloc::<C>(p, layout) };
    }
    p
}

/// Everything the inline path does not serve: thread setup, refills, large, huge and
/// aligned blocks, allocation after thread exit. `ZERO`: the block must read as zero;
/// `GROW`: it is the new home of a block growing by `realloc`. (Constants, not arguments:
/// the inline path's tail call then passes the layout alone, and keeps its registers.)
///
/// # Safety
/// As `GlobalAlloc::alloc`.
#[cold]
#[inline(never)]
unsafe fn alloc_slow<C: Instance, const ZERO: bool, const GROW: bool>(layout: Layout) -> *mut u8 {
    #[allow(clippy::let_unit_value)]
    let () = C::VALID;
    let state = thread_state::<C>();
    loop {
        match state.status.get() {
            LIVE => {
                // SAFETY: a live slot holds this thread's heap.
                let heap = unsafe { Heap::<C>::from_bins(state.heap.get()) };
                return alloc_from::<C>(heap, layout, ZERO, GROW);
            }
            DEAD => return alloc_after_exit::<C>(layout, ZERO),
            _ => {
                // SAFETY: our own slot, not yet set up.
                if !unsafe { init_thread::<C>(state) } {
                    return ptr::null_mut();
                }
            }
        }
    }
}

/// Allocates from `heap`, zeroing unless the memory is fresh from the OS when `zero`; a
/// large block that `grow`s by `realloc` comes from the reserve when it can.
fn alloc_from<C: Instance>(heap: &mut Heap<C>, layout: Layout, zero: bool, grow: bool) -> *mut u8 {
    let size = layout.size();
    let align = layout.align();
    if align <= C::NATURAL_ALIGN && size <= C::MEDIUM_LIMIT {
        let p = heap.alloc_small(C::CLASSES.class_of(size));
        // SAFETY: null or a fresh block of the class of `size`, at least `size` bytes.
        return unsafe { zeroed(p, size, zero) };
    }
    if align >= C::SPAN_SIZE {
        tick::<C>();
        return huge::alloc::<C>(size, align);
    }
    if align > C::NATURAL_ALIGN {
        if let Some(p) = alloc_small_aligned(heap, size, align) {
            // SAFETY: null or a fresh block of at least `size` bytes.
            return unsafe { zeroed(p, size, zero) };
        }
    }
    if Heap::<C>::large_span_count(size, align) <= LARGE_CLASS_COUNT {
        let (p, fresh) = heap.alloc_large(size, align, grow);
        // SAFETY: null or a fresh large block of at least `size` bytes.
        return unsafe { zeroed(p, size, zero && !fresh) };
    }
    tick::<C>();
    huge::alloc::<C>(size, align)
}

/// `p`, cleared first when `zero`.
///
/// # Safety
/// `p` is null or a block of at least `size` bytes the caller owns.
#[inline]
unsafe fn zeroed(p: *mut u8, size: usize, zero: bool) -> *mut u8 {
    if zero && !p.is_null() {
        // SAFETY: per the contract p holds at least `size` bytes.
        unsafe { p.write_bytes(0, size) };
    }
    p
}

/// Serves an alignment above 16 (and below the span size) from a size class when it fits:
/// directly if the class's blocks are already aligned, else from a block padded by the
/// alignment, flagging the span so frees round down to the block start. `None` when the
/// request is too big for a size class.
fn alloc_small_aligned<C: Instance>(
    heap: &mut Heap<C>,
    size: usize,
    align: usize,
) -> Option<*mut u8> {
    // Blocks start at span + 128 + i * block_size, so blocks whose size is a multiple of
    // an alignment up to 128 are all aligned to it.
    if align <= SPAN_HEADER_SIZE {
        let rounded = os::align_up_pow2(size, align);
        if rounded <= C::MEDIUM_LIMIT {
            let class = C::CLASSES.class_of(rounded);
            if (C::CLASSES.block_size[class] as usize).is_multiple_of(align) {
                return Some(heap.alloc_small(class));
            }
        }
    }
    let padded = size.checked_add(align - C::NATURAL_ALIGN)?;
    if padded > C::MEDIUM_LIMIT {
        return None;
    }
    let block = heap.alloc_small(C::CLASSES.class_of(padded));
    if block.is_null() {
        return Some(block);
    }
    let p = addr::with_addr(block, os::align_up_pow2(block.addr(), align));
    if p != block {
        let span = addr::mask::<_, Span>(block, C::SPAN_MASK);
        // SAFETY: the block's span is a small span of this heap.
        unsafe {
            (*span).aligned_blocks.store(true, Ordering::Relaxed);
            (*span).fast_owner.store(ptr::null_mut(), Ordering::Relaxed);
        }
    }
    Some(p)
}

/// Allocation after the thread's heap was orphaned (from later thread-exit work): served
/// by an orphaned heap under the orphan lock.
#[cold]
fn alloc_after_exit<C: Instance>(layout: Layout, zero: bool) -> *mut u8 {
    let global = C::global();
    let mut orphans = global.orphans.lock();
    let mut heap = (*orphans).cast::<Heap<C>>();
    if heap.is_null() {
        heap = Heap::<C>::create();
        if heap.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: a fresh heap's record; under the lock it joins the orphan list.
        unsafe { Heap::<C>::shared_of(heap.cast()) }
            .orphaned
            .store(true, Ordering::Relaxed);
        *orphans = heap.cast();
    }
    // SAFETY: orphaned heaps are used only under the orphan lock, which we hold.
    let heap = unsafe { &mut *heap };
    let block = alloc_from::<C>(heap, layout, zero, false);
    // Its active spans go back to being watched, so the (remote) frees of these blocks
    // return them without an adopter.
    heap.retire_bins();
    block
}

/// `GlobalAlloc::dealloc` for configuration `C`.
///
/// # Safety
/// As `GlobalAlloc::dealloc`.
#[inline(always)]
pub unsafe fn dealloc<C: Instance>(ptr: *mut u8, layout: Layout) {
    if C::ENABLE_STATISTICS {
        // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
        unsafe { count_free::<C>(ptr, layout) };
    }
    let bins = thread_state::<C>().heap.get();
    if layout.align() < C::SPAN_SIZE {
        let span = addr::mask::<_, Span>(ptr, C::SPAN_MASK);
        // SAFETY: with alignment below the span size a block lies in the first span of its
        // run, whose header is valid; `fast_owner` equals our bins only for small spans
        // this thread owns, so the list and count are ours to update.
        unsafe {
            if (*span).fast_owner.load(Ordering::Relaxed) == bins.cast() {
                // The link is written through the program's pointer (the block is still
                // its own until `dealloc` returns), the list keeps the mapping's.
                let block = ptr.cast::<Block>();
                let head = (*span).free_list;
                (*block).next = head;
                (*span).free_list = addr::own(block);
                let used = (*span).used - 1;
                (*span).used = used;
                if used != 0 && (*span).state() != State::Full {
                    return;
                }
                return Heap::<C>::from_bins(bins).free_transition(span);
            }
        }
    }
    // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
    unsafe { dealloc_slow::<C>(ptr, layout, bins) }
}

/// Frees what the inline path does not: other threads' blocks, offset-aligned blocks,
/// large and huge blocks.
///
/// # Safety
/// As `GlobalAlloc::dealloc`; `bins` is the calling thread's slot's bins.
#[cold]
#[inline(never)]
unsafe fn dealloc_slow<C: Instance>(ptr: *mut u8, layout: Layout, bins: *mut Bins) {
    if layout.align() >= C::SPAN_SIZE {
        tick::<C>();
        // SAFETY: such blocks are always huge.
        return unsafe { huge::free::<C>(ptr, layout.align()) };
    }
    let span = addr::mask::<_, Span>(ptr, C::SPAN_MASK);
    // SAFETY: a live block's header is valid (see `dealloc`).
    unsafe {
        match (*span).kind {
            Kind::Small => {
                let block = block_start(span, ptr);
                if (*span).heap == bins.cast() {
                    Heap::<C>::from_bins(bins).free_small(span, block);
                } else {
                    free_remote::<C>(span, block.cast());
                }
            }
            Kind::Large => {
                // Back to the thread cache of the heap that allocated it; from any other
                // thread, to the global cache (`Heap::release_foreign_run`), where that
                // heap and every other find it. Not kept in this thread's cache: a
                // pipeline's consumer kept the producers' runs in a cache it never
                // allocates from (gigabytes mapped for a hand-off). Nor sent back to the
                // allocating heap, as rpmalloc defers them: with several producers, each
                // got only its own runs back, at its next miss, and mapped meanwhile
                // (`handoff-mixed`, 4:1: peak RSS +50 %).
                if C::ENABLE_STATISTICS {
                    let bytes = (*span).span_count as usize * C::SPAN_SIZE;
                    with_counters::<C>(|c, w| c.in_use(bytes.wrapping_neg(), w));
                }
                if (*span).heap == bins.cast() {
                    Heap::<C>::from_bins(bins).release_spans(span);
                } else {
                    // The freeing thread may allocate nothing itself (that consumer): its
                    // frees tick.
                    tick::<C>();
                    if bins != empty_bins() {
                        Heap::<C>::from_bins(bins).release_foreign_run(span);
                    } else {
                        C::global().release_run(span);
                    }
                }
            }
            Kind::Huge => {
                tick::<C>();
                huge::free::<C>(ptr, layout.align());
            }
        }
    }
}

/// The start of the block holding `ptr` in a small span (`ptr` itself unless the span's
/// blocks were handed out at an offset; then with the mapping's provenance).
///
/// # Safety
/// `span` is the small span holding `ptr`.
#[inline]
unsafe fn block_start(span: *mut Span, ptr: *mut u8) -> *mut u8 {
    // SAFETY: `span` is the live small span holding `ptr` (the contract): its header is
    // valid to read.
    unsafe {
        if !(*span).aligned_blocks.load(Ordering::Relaxed) {
            return ptr;
        }
        let data = Span::data(span).addr();
        let size = (*span).block_size as usize;
        addr::with_addr(ptr, data + (ptr.addr() - data) / size * size)
    }
}

/// Frees a block of another heap's span onto the span's lock-free remote list. If that
/// took the span's notify flag, sends the span to its heap as a notice; and if the heap
/// has no thread (orphaned), settles the heap's notices on its behalf under the orphan
/// lock, so memory of exited threads still goes back.
///
/// # Safety
/// `block` is the start of an allocated block of the small span `span`.
unsafe fn free_remote<C: Instance>(span: *mut Span, block: *mut Block) {
    // SAFETY: the span is live while its block is out; read the owner before the push
    // (after it the owner may take the block and release the span).
    let heap = unsafe { (*span).heap };
    let global = C::global();
    // SAFETY: per the contract; only the span's atomic word is shared. A push that may
    // take the flag first enters a notice window, which `fork` waits for (and leaves it
    // at once if it did not take the flag after all).
    let took_flag = unsafe {
        (*span).remote.push_entering(
            span.cast(),
            block,
            || global.enter_notice_window(),
            || global.leave_notice_window(),
        )
    };
    if !took_flag {
        return;
    }
    // We took the notify flag: the owner keeps the span until this notice arrives. The
    // push acquired the owner's arming (a release), so its reads of the notice link from
    // the span's previous notice come before our write.
    // SAFETY: the span's owner id is its heap's record address with the record's
    // provenance, and records are never unmapped. Only the shared part is reached: the
    // owner may be mutating the rest.
    let shared = unsafe { Heap::<C>::shared_of(heap) };
    let (notices, orphaned) = (&shared.notices, &shared.orphaned);
    // SAFETY: the span's notice link is ours to write until the push publishes it. Taken
    // without a reference, so the pointer keeps the span's provenance: the owner masks it
    // back to the span header (Stacked Borrows rejected a pointer from `get()`, confined
    // to the link's 8 bytes).
    unsafe {
        notices.push(core::cell::UnsafeCell::raw_get(
            &raw const (*span).notice_link,
        ))
    };
    global.leave_notice_window();
    // SeqCst pairs with `Heap::orphan`: either we see the flag, or its take sees our push.
    if orphaned.load(Ordering::SeqCst) {
        // SAFETY: the span's owner id, read above.
        unsafe { drain_orphan::<C>(heap) };
    }
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
unsafe fn drain_orphan<C: Instance>(heap: *mut u8) {
    // SAFETY: per the contract, a heap record, never unmapped. Outside the lock only the
    // shared part is reached.
    let shared = unsafe { Heap::<C>::shared_of(heap) };
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

/// `GlobalAlloc::realloc` for configuration `C`: in place when the block's class or span
/// run already fits the new size (and is not more than twice it), `mremap` for huge
/// blocks, else allocate, copy and free.
///
/// # Safety
/// As `GlobalAlloc::realloc`.
#[inline]
pub unsafe fn realloc<C: Instance>(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    let align = layout.align();
    // The block's usable size where known: the basis of the move's headroom.
    let mut usable = layout.size();
    if align < C::SPAN_SIZE {
        let span = addr::mask::<_, Span>(ptr, C::SPAN_MASK);
        // SAFETY: a live block with alignment below the span size: valid header.
        unsafe {
            usable = match (*span).kind {
                Kind::Small => {
                    block_start(span, ptr) as usize + (*span).block_size as usize - ptr as usize
                }
                Kind::Large => {
                    let usable =
                        span as usize + (*span).span_count as usize * C::SPAN_SIZE - ptr as usize;
                    if new_size > usable && grow_large_in_place::<C>(span, ptr, new_size) {
                        return resized_in_place::<C>(ptr, layout.size(), new_size);
                    }
                    usable
                }
                Kind::Huge => {
                    if new_size > C::LARGE_LIMIT {
                        let moved = huge::realloc::<C>(ptr, new_size);
                        if !moved.is_null() {
                            return resized_in_place::<C>(moved, layout.size(), new_size);
                        }
                    }
                    return realloc_move::<C>(ptr, layout, layout.size(), new_size);
                }
            };
            // Shrinking to under half moves, so a small block does not pin a big one;
            // the smallest classes are not worth moving. A block that grows stays where it
            // fits, however much room is left (a growing block may have been given a whole
            // cached run to grow into).
            if new_size <= usable
                && (new_size >= layout.size()
                    || new_size >= usable / 2
                    || usable <= 2 * C::NATURAL_ALIGN)
            {
                return resized_in_place::<C>(ptr, layout.size(), new_size);
            }
        }
    }
    // SAFETY: forwarded contract (the new layout is valid per GlobalAlloc::realloc).
    unsafe { realloc_move::<C>(ptr, layout, usable, new_size) }
}

/// Counts a block resized without a copy (statistics on) and returns it.
#[inline(always)]
fn resized_in_place<C: Instance>(ptr: *mut u8, old: usize, new: usize) -> *mut u8 {
    if C::ENABLE_STATISTICS {
        with_counters::<C>(|c, w| c.resized(old, new, w));
    }
    ptr
}

/// Grows a large block over the spans that follow its run when they are the calling
/// thread's unused reserve (runs are carved from the reserve in order, so a growing buffer
/// often sits right before it): no copy.
///
/// # Safety
/// `span` is the header of the live large block at `ptr`.
#[cold]
unsafe fn grow_large_in_place<C: Instance>(span: *mut Span, ptr: *mut u8, new_size: usize) -> bool {
    let bins = thread_state::<C>().heap.get();
    if bins == empty_bins() {
        return false;
    }
    let Some(end) = (ptr as usize - span as usize).checked_add(new_size) else {
        return false;
    };
    let needed = end.div_ceil(C::SPAN_SIZE);
    if needed > LARGE_CLASS_COUNT {
        return false;
    }
    // SAFETY: a live thread's heap, used by its own thread; `span` is a live large run.
    unsafe { Heap::<C>::from_bins(bins).extend_run(span, needed) }
}

/// Allocates the new home of a block growing by `realloc`: as `alloc`, except that a
/// large block comes from the front of the thread's reserve when it has room, so the next
/// growth can take the spans behind it without copying (a `Vec` doubling to 1 MiB copied
/// 7.5 × the instructions when its runs came from the cache instead).
///
/// # Safety
/// As `GlobalAlloc::alloc`.
unsafe fn alloc_growing<C: Instance>(layout: Layout) -> *mut u8 {
    if layout.size() <= C::MEDIUM_LIMIT && layout.align() <= C::NATURAL_ALIGN {
        // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
        return unsafe { alloc::<C>(layout) };
    }
    // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
    let p = unsafe { alloc_slow::<C, false, true>(layout) };
    if C::ENABLE_STATISTICS {
        // SAFETY: null or a block just allocated with `layout`.
        unsafe { count_alloc::<C>(p, layout) };
    }
    p
}

/// Moves a block. A block that grows gets at least 37.5 % headroom over its usable size
/// (rpmalloc's rule), so a buffer growing in small steps is copied O(log n) times instead
/// of once per step; the headroom is used by later in-place reallocs. A medium size is
/// then rounded up to [`REALLOC_GRANULARITY`]. Only the caller's
/// `layout.size()` bytes are copied: the rest of the usable size holds nothing it asked for.
///
/// # Safety
/// As `GlobalAlloc::realloc`; `usable >= layout.size()` is the block's usable size.
#[cold]
unsafe fn realloc_move<C: Instance>(
    ptr: *mut u8,
    layout: Layout,
    usable: usize,
    new_size: usize,
) -> *mut u8 {
    let mut new = ptr::null_mut();
    // Whether `new_size` itself was already asked for (and refused, if `new` is null).
    let mut asked_exact = false;
    if new_size > usable {
        let headroom = usable + (usable >> 2) + (usable >> 3);
        let mut padded = headroom.max(new_size);
        if padded > SMALL_SIZE_LIMIT && padded <= C::MEDIUM_LIMIT {
            padded = padded
                .next_multiple_of(REALLOC_GRANULARITY)
                .min(C::MEDIUM_LIMIT);
        }
        asked_exact = padded == new_size;
        if let Ok(padded) = Layout::from_size_align(padded, layout.align()) {
            // SAFETY: a valid non-zero layout.
            new = unsafe { alloc_growing::<C>(padded) };
        }
    }
    // SAFETY: GlobalAlloc::realloc guarantees the new size with the old alignment is a
    // valid layout.
    unsafe {
        if new.is_null() && !asked_exact {
            new = alloc::<C>(Layout::from_size_align_unchecked(new_size, layout.align()));
        }
        if !new.is_null() {
            ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            dealloc::<C>(ptr, layout);
        }
        new
    }
}

/// Gives cached memory of configuration `C` back to the OS now: the calling thread's
/// notices are taken and its span reserve released, orphaned heaps are settled and their
/// reserves released, and every run of every thread cache and of the global cache, with
/// every spare span, is unmapped or has its pages released.
pub fn collect<C: Instance>() {
    let state = thread_state::<C>();
    if state.status.get() == LIVE {
        // SAFETY: a live slot holds this thread's heap, used by this thread only.
        unsafe { Heap::<C>::from_bins(state.heap.get()) }.collect();
    }
    Heap::<C>::collect_all();
}

/// The counters of configuration `C`, or `None` without `enable_statistics`.
pub fn statistics<C: Instance>() -> Option<Statistics> {
    C::global().statistics()
}

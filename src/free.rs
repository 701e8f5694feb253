//! Freeing: the inline fast path (a block of a small span the calling thread owns goes on
//! the span's free list), and the slow path: blocks of other threads' spans (the remote
//! free: a lock-free push onto the span's remote list, and a notice to the owning heap
//! when the push took the span's notify flag), offset-aligned blocks, large and huge
//! blocks.
//!
//! The fast path reads the span header the block's address masks to, compares its owner
//! with the thread's heap, and pushes; only when the span changes state (emptied, or no
//! longer full) does it call the heap's state machine (`heap::small`).

use crate::bins::{empty_bins, Bins};
use crate::block::Block;
use crate::counting::{count_free, with_counters};
use crate::heap::Heap;
use crate::huge;
use crate::instance::Instance;
use crate::os::addr;
use crate::params::Params;
use crate::span::{Kind, Run, SmallSpan, Span, State};
use crate::stats::Writer;
use crate::thread::tick;
use core::alloc::Layout;
use core::sync::atomic::Ordering;

/// `GlobalAlloc::dealloc` for configuration `C`.
///
/// # Safety
/// As `GlobalAlloc::dealloc`.
#[inline(always)]
pub(crate) unsafe fn dealloc<C: Instance>(ptr: *mut u8, layout: Layout) {
    if C::ENABLE_STATISTICS {
        // SAFETY: the caller's `GlobalAlloc` contract, which this function has too.
        unsafe { count_free::<C>(ptr, layout) };
    }
    // SAFETY: the caller's contract; `bins` are the calling thread's.
    unsafe { dealloc_with::<C>(ptr, layout, C::slot().heap.get()) }
}

/// Frees `ptr` as the user of the heap whose bins are `bins` (uncounted): the calling
/// thread's heap for `dealloc`, a first-class heap for `rpmalloc::Heap`.
///
/// # Safety
/// As `GlobalAlloc::dealloc`; `bins` are the empty bins or a heap's whose user the caller
/// is (its thread, or the holder of a first-class heap).
#[inline(always)]
pub(crate) unsafe fn dealloc_with<C: Instance>(ptr: *mut u8, layout: Layout, bins: *mut Bins) {
    if layout.align() < C::SPAN_SIZE {
        let span = addr::mask::<_, Span>(ptr, C::SPAN_MASK);
        // SAFETY: with alignment below the span size a block lies in the first span of its
        // run, whose header is valid; `fast_owner` equals our bins only for small spans
        // this thread owns, so the list and count are ours to update.
        unsafe {
            if Span::fast_owner(span).load(Ordering::Relaxed) == bins.cast() {
                // The link is written through the program's pointer (the block is still
                // its own until `dealloc` returns), the list keeps the mapping's.
                let block = ptr.cast::<Block>();
                let head = SmallSpan(span).free_list();
                (*block).next = head;
                SmallSpan(span).set_free_list(addr::own(block));
                let used = SmallSpan(span).used() - 1;
                SmallSpan(span).set_used(used);
                if used != 0 && SmallSpan(span).state() != State::Full {
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
/// As `GlobalAlloc::dealloc`; `bins` are the empty bins or a heap's whose user the caller
/// is (as [`dealloc_with`]: its thread, or the holder of a first-class heap).
#[cold]
#[inline(never)]
unsafe fn dealloc_slow<C: Instance>(ptr: *mut u8, layout: Layout, bins: *mut Bins) {
    if layout.align() >= C::SPAN_SIZE {
        tick::<C>();
        // SAFETY: such blocks are always huge.
        return unsafe { free_huge::<C>(ptr, layout.align()) };
    }
    let span = addr::mask::<_, Span>(ptr, C::SPAN_MASK);
    // SAFETY: a live block's header is valid (see `dealloc`).
    unsafe {
        match Span::kind(span) {
            Kind::Small => {
                let block = block_start(span, ptr);
                if SmallSpan(span).heap() == bins.cast() {
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
                let owner = Run(span).heap();
                if C::ENABLE_STATISTICS {
                    let bytes = Run(span).span_count() as usize * C::SPAN_SIZE;
                    let shared = Heap::<C>::shared_of(owner);
                    if shared.private {
                        // A first-class heap counts its runs itself (its drop clears them).
                        shared.counters.in_use(bytes.wrapping_neg(), Writer::Shared);
                    } else {
                        with_counters::<C>(|c, w| c.in_use(bytes.wrapping_neg(), w));
                    }
                }
                if owner == bins.cast() {
                    Heap::<C>::from_bins(bins).release_spans(span);
                } else if Heap::<C>::shared_of(owner).private {
                    // A first-class heap's run goes back to it alone (its mappings are
                    // unmapped whole at its drop).
                    Heap::<C>::return_run(owner, span);
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
                free_huge::<C>(ptr, layout.align());
            }
        }
    }
}

/// Unmaps a huge block, unlisting it from its first-class heap if it has one. Inline
/// into the (cold) slow path: a call of its own cost 15 instructions per huge free.
///
/// # Safety
/// `ptr` is a live huge block of this configuration allocated with alignment `align`.
#[inline(always)]
unsafe fn free_huge<C: Instance>(ptr: *mut u8, align: usize) {
    // SAFETY: a live huge block (the contract): its header is valid until it is unmapped.
    unsafe {
        Heap::<C>::unlist_huge(huge::header::<C>(ptr, align));
        huge::free::<C>(ptr, align);
    }
}

/// The start of the block holding `ptr` in a small span (`ptr` itself unless the span's
/// blocks were handed out at an offset; then with the mapping's provenance).
///
/// # Safety
/// `span` is the small span holding `ptr`.
#[inline]
pub(crate) unsafe fn block_start(span: *mut Span, ptr: *mut u8) -> *mut u8 {
    // SAFETY: `span` is the live small span holding `ptr` (the contract): its header is
    // valid to read.
    unsafe {
        if !SmallSpan(span).aligned_blocks().load(Ordering::Relaxed) {
            return ptr;
        }
        let data = Span::data(span).addr();
        let size = SmallSpan(span).block_size() as usize;
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
    let heap = unsafe { SmallSpan(span).heap() };
    let global = C::global();
    // SAFETY: per the contract; only the span's atomic word is shared. A push that may
    // take the flag first enters a notice window, which `fork` waits for (and leaves it
    // at once if it did not take the flag after all).
    let took_flag = unsafe {
        SmallSpan(span).remote().push_entering(
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
    // SAFETY: the span's notice link is ours to write until the push publishes it; the
    // link pointer keeps the span's provenance, so the owner can mask it back to the
    // header (`SmallSpan::notice_link`).
    unsafe { notices.push(SmallSpan(span).notice_link()) };
    global.leave_notice_window();
    // SeqCst pairs with `Heap::orphan`: either we see the flag, or its take sees our push.
    if orphaned.load(Ordering::SeqCst) {
        // SAFETY: the span's owner id, read above.
        unsafe { Heap::<C>::drain_orphan(heap) };
    }
}

//! The span: a span-size-aligned run of memory whose first 128 bytes describe it.
//!
//! A pointer's span is found by masking its low bits, so freeing needs no lookup table.
//! Spans come in three kinds:
//! * small: one span cut into blocks of one size class, owned by one heap;
//! * large: a run of 1..=63 spans holding one block;
//! * huge: a direct OS mapping holding one block.
//!
//! Spans are mapped `span_map_count` at a time. The first span of such a mapping is the
//! *master*: it counts the spans of the mapping that are not yet released and unmaps the
//! whole mapping when the count drops to zero. Every run records its offset from the master.
//!
//! - this file: the header and the operations on any span (its kind, its fast-path owner,
//!   its master, splitting a free run);
//! - `views.rs`: the role views through which the rest of the crate reaches the header's
//!   fields;
//! - `lists.rs`: the partial-span list and the span caches' stacks.

use crate::block::Block;
use crate::remote::RemoteList;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8};

mod lists;
mod views;

pub(crate) use lists::{SpanDList, SpanStack};
pub(crate) use views::{Batch, HugeHeader, Master, Run, SmallSpan};

/// Bytes reserved at the start of every span for its header.
pub(crate) const SPAN_HEADER_SIZE: usize = 128;
/// Runs of up to this many spans are "large"; bigger blocks are mapped directly.
pub(crate) const LARGE_CLASS_COUNT: usize = 63;

/// What a span holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum Kind {
    /// Blocks of one size class.
    Small = 0,
    /// One block spanning a run of spans.
    Large = 1,
    /// One block in a direct mapping.
    Huge = 2,
}

/// Where a small span sits in its heap.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum State {
    /// The span its size class allocates from (holds the heap's +1 reference on `used`).
    Active = 0,
    /// In the class's partial list: has free or never-used blocks.
    Partial = 1,
    /// Every block is allocated; in no list.
    Full = 2,
    /// Emptied while a remote-free notice was on its way to the heap: in no list, and
    /// released when the notice arrives (releasing it earlier would let the notice name a
    /// span that is already someone else's).
    Releasing = 3,
}

impl State {
    /// The state stored as `state as u8`.
    #[inline(always)]
    pub(crate) fn from_u8(v: u8) -> State {
        match v {
            0 => State::Active,
            1 => State::Partial,
            2 => State::Full,
            _ => State::Releasing,
        }
    }
}

/// The span header. Fields the free fast path reads come first.
///
/// The fields are private: the rest of the crate reaches them through the view of the
/// role the span plays ([`SmallSpan`], [`Run`], [`Master`], [`Batch`], [`HugeHeader`]),
/// so a field is read only in the role it has a meaning in (the global cache's batch
/// length lives in `block_count`, which means something else in a small span). The
/// views are `Copy` wrappers of the header pointer whose accessors inline to the same
/// loads and stores as a field access.
#[repr(C)]
pub(crate) struct Span {
    /// The owning heap's bins when every free of this span may take the fast path (a small
    /// span without offset-aligned blocks); null otherwise.
    /// Atomic (relaxed) because other threads read it while the owner may clear it.
    fast_owner: AtomicPtr<u8>,
    /// Free blocks of this span (small spans).
    free_list: *mut Block,
    /// Blocks other threads freed, not yet taken by the owner.
    remote: RemoteList,
    /// Carved blocks not on `free_list`: with users, in the bin, or remotely freed and not
    /// yet taken.
    used: u32,
    /// Blocks this span holds.
    block_count: u32,
    /// Blocks carved so far; blocks at and after `limit` were never handed out.
    limit: u32,
    /// Bytes per block.
    block_size: u32,
    /// Size class (small spans).
    class: u8,
    /// What the span holds.
    kind: Kind,
    /// Where it sits in its heap (small spans), a [`State`]. Written by the heap's user;
    /// atomic because a decay sweep reads it for the spans it takes from a heap's notices
    /// (`Heap::sweep_notices`), whose other fields it then reaches through the acquire of
    /// their remote-free word.
    state: AtomicU8,
    /// The owner armed `remote` (set its notify flag) and has not yet received the notice:
    /// the flag is still set, or a remote freer took it and is delivering the span to the
    /// heap. Owner-only.
    armed: bool,
    /// Some block was handed out at an offset inside it for alignment, so frees must round
    /// down to the block start.
    /// Atomic (relaxed) for the same reason as `fast_owner`.
    aligned_blocks: AtomicBool,
    /// The owning heap (small spans), type-erased `*mut Heap<C>`.
    heap: *mut u8,
    /// Links in a partial list or a span cache.
    prev: *mut Span,
    /// Links in a partial list or a span cache.
    next: *mut Span,
    /// Link in the owning heap's notice list (see [`RemoteList`]). In an `UnsafeCell`:
    /// the freer that takes the notify flag writes it while the owner may hold a `&Span`
    /// (`Span::state`), and a shared reference asserts that every byte outside an
    /// `UnsafeCell` is unchanging (Miri reported the retag and the write as a data race).
    notice_link: core::cell::UnsafeCell<Block>,
    /// Spans in this run.
    span_count: u32,
    /// Distance in spans to the master of the mapping.
    offset_from_master: u32,
    /// Spans in the whole mapping (master only).
    total_spans: u32,
    /// Spans of the mapping not yet released (master only).
    remaining_spans: AtomicU32,
    /// Huge blocks: bytes mapped, starting at the header.
    map_size: usize,
    /// Huge blocks: alignment slack mapped before the header (unmapped with the block).
    map_head: usize,
    /// Huge blocks: alignment slack mapped after `map_size`.
    map_tail: usize,
    /// Free runs in a cache: the decay sweep period (`Decay::epoch`) in which the run came
    /// into its thread cache, or its batch (stamped in the head) into the global cache.
    cached_at: u64,
}

const _: () = assert!(core::mem::size_of::<Span>() <= SPAN_HEADER_SIZE);

impl Span {
    /// What the span holds (any role: every header has it).
    ///
    /// # Safety
    /// `span` is a live span header.
    #[inline(always)]
    pub(crate) unsafe fn kind(span: *mut Span) -> Kind {
        // SAFETY: a live header (the contract).
        unsafe { (*span).kind }
    }

    /// The owning heap's bins when every free of this span may take the fast path (a
    /// small span without offset-aligned blocks), else null: the free fast path reads it
    /// before it knows the span's kind, so every header has it (any role).
    ///
    /// # Safety
    /// `span` is a live span header.
    #[inline(always)]
    pub(crate) unsafe fn fast_owner<'a>(span: *mut Span) -> &'a AtomicPtr<u8> {
        // SAFETY: a live header (the contract); the field is atomic.
        unsafe { &(*span).fast_owner }
    }

    /// Gives the span the role of `kind`.
    ///
    /// # Safety
    /// `span` is a live span header its caller is turning into a span of that kind, which
    /// no other thread reads meanwhile.
    #[inline(always)]
    pub(crate) unsafe fn set_kind(span: *mut Span, kind: Kind) {
        // SAFETY: per the contract.
        unsafe { (*span).kind = kind }
    }

    /// First block of a small span / data of a large span.
    #[inline(always)]
    pub(crate) fn data(span: *mut Span) -> *mut u8 {
        span.cast::<u8>().wrapping_add(SPAN_HEADER_SIZE)
    }

    /// The master of the mapping holding `span`.
    ///
    /// # Safety
    /// `span` is a live span header of a span-mapped run of `span_size`.
    #[inline]
    pub(crate) unsafe fn master(span: *mut Span, span_size: usize) -> *mut Span {
        // SAFETY: the caller guarantees a valid header.
        let offset = unsafe { (*span).offset_from_master } as usize;
        span.cast::<u8>().wrapping_sub(offset * span_size).cast()
    }
}

impl Span {
    /// Splits the free run at `span` after its first `count` spans: `span` becomes a run of
    /// `count` spans and the rest a run of its own, whose header is written afresh (it lay
    /// inside the run, under whatever the run's last block held); returns it. Both stay
    /// counted in their mapping's master, which the rest belongs to as well.
    ///
    /// # Safety
    /// `span` is a free run of more than `count` spans of a mapping of `span_size` spans,
    /// that no list holds; its memory (the rest's header included) is mapped.
    pub(crate) unsafe fn split(span: *mut Span, count: usize, span_size: usize) -> *mut Span {
        // SAFETY: per the contract both headers lie in the run's mapped memory.
        unsafe {
            let total = (*span).span_count as usize;
            debug_assert!(count < total);
            let rest = span.cast::<u8>().add(count * span_size).cast::<Span>();
            // All zeros is a valid header: null links, empty remote list, zero counts.
            rest.cast::<u8>()
                .write_bytes(0, core::mem::size_of::<Span>());
            (*rest).span_count = (total - count) as u32;
            (*rest).offset_from_master = (*span).offset_from_master + count as u32;
            (*span).span_count = count as u32;
            rest
        }
    }
}

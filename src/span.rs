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

use crate::block::Block;
use crate::remote::RemoteList;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, Ordering};

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

/// Declares a role view of a span header and its plain accessors (a getter and, where
/// named, a setter per field).
macro_rules! view {
    (
        $(#[$view_meta:meta])*
        $view:ident {
            $( $(#[$field_meta:meta])* $field:ident $(/ $setter:ident)? : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$view_meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        #[repr(transparent)]
        pub(crate) struct $view(pub(crate) *mut Span);

        // A view offers every field of its role, used or not.
        #[allow(dead_code)]
        impl $view {
            $(
                $(#[$field_meta])*
                ///
                /// # Safety
                #[doc = concat!("The view's header is live and in the role of a [`", stringify!($view), "`], and the caller may read the field (see the view's doc).")]
                #[inline(always)]
                pub(crate) unsafe fn $field(self) -> $ty {
                    // SAFETY: a live header (the contract).
                    unsafe { (*self.0).$field }
                }
                $(
                    #[doc = concat!("Sets [`", stringify!($view), "::", stringify!($field), "`].")]
                    ///
                    /// # Safety
                    #[doc = concat!("The view's header is live and in the role of a [`", stringify!($view), "`], and the caller may write the field (see the view's doc).")]
                    #[inline(always)]
                    pub(crate) unsafe fn $setter(self, value: $ty) {
                        // SAFETY: a live header (the contract).
                        unsafe { (*self.0).$field = value }
                    }
                )?
            )*
        }
    };
}

view! {
    /// A small span: blocks of one size class, owned by one heap. Owner-only fields (all
    /// plain ones but `block_size`, `class` and `heap`, which are fixed while the span is
    /// small and read by any thread holding one of its blocks) are touched only by the
    /// heap's user; `fast_owner`, `aligned_blocks`, `remote` and `state` are atomic for the
    /// threads that read them, and the notice link is written by the remote freer that
    /// took the notify flag.
    SmallSpan {
        /// Free blocks of this span (not in the bin).
        free_list / set_free_list: *mut Block,
        /// Carved blocks not on the free list: with users, in the bin, or remotely freed
        /// and not yet taken.
        used / set_used: u32,
        /// Blocks this span holds.
        block_count / set_block_count: u32,
        /// Blocks carved so far; blocks at and after it were never handed out.
        limit / set_limit: u32,
        /// Bytes per block.
        block_size / set_block_size: u32,
        /// Size class.
        class / set_class: u8,
        /// The owner armed the remote list and has not yet received the notice.
        armed / set_armed: bool,
        /// The owning heap (its record's address, with the record's provenance).
        heap / set_heap: *mut u8,
    }
}

impl SmallSpan {
    /// Whether some block was handed out at an offset (frees round down).
    ///
    /// # Safety
    /// The view's header is live and a small span's.
    #[inline(always)]
    pub(crate) unsafe fn aligned_blocks<'a>(self) -> &'a AtomicBool {
        // SAFETY: a live header (the contract); the field is atomic.
        unsafe { &(*self.0).aligned_blocks }
    }

    /// The remote-free word.
    ///
    /// # Safety
    /// The view's header is live and a small span's.
    #[inline(always)]
    pub(crate) unsafe fn remote<'a>(self) -> &'a RemoteList {
        // SAFETY: a live header (the contract); the list is atomic.
        unsafe { &(*self.0).remote }
    }

    /// The span's state word (a [`State`]), for the orderings [`SmallSpan::state`] does
    /// not give.
    ///
    /// # Safety
    /// The view's header is live and a small span's.
    #[inline(always)]
    pub(crate) unsafe fn state_word<'a>(self) -> &'a AtomicU8 {
        // SAFETY: a live header (the contract); the field is atomic.
        unsafe { &(*self.0).state }
    }

    /// Where the span sits in its heap (read by the heap's user).
    ///
    /// # Safety
    /// The view's header is live and a small span's.
    #[inline(always)]
    pub(crate) unsafe fn state(self) -> State {
        // SAFETY: a live header (the contract).
        State::from_u8(unsafe { self.state_word() }.load(Ordering::Relaxed))
    }

    /// Moves the span to `state` (the heap's user).
    ///
    /// # Safety
    /// The view's header is live and a small span's; the caller is its heap's user.
    #[inline(always)]
    pub(crate) unsafe fn set_state(self, state: State) {
        // SAFETY: a live header (the contract).
        unsafe { self.state_word() }.store(state as u8, Ordering::Relaxed);
    }

    /// The span's link in its heap's notice list, with the span's provenance (the owner
    /// masks it back to the header).
    ///
    /// # Safety
    /// The view's header is live and a small span's.
    #[inline(always)]
    pub(crate) unsafe fn notice_link(self) -> *mut Block {
        // SAFETY: a live header (the contract). Taken without a reference, so the
        // pointer keeps the span's provenance (a pointer from `get()` on a reference
        // would be confined to the link's 8 bytes under Stacked Borrows).
        unsafe { core::cell::UnsafeCell::raw_get(&raw const (*self.0).notice_link) }
    }
}

view! {
    /// A run of spans: free (in a cache, the reserve or a chain being released) or
    /// holding one large block. Touched by whoever holds the run: its cache's lock holder,
    /// the heap whose reserve it is, or the thread freeing its block.
    Run {
        /// Spans in this run.
        span_count / set_span_count: u32,
        /// Distance in spans to the master of the mapping.
        offset_from_master / set_offset_from_master: u32,
        /// The heap that allocated its large block (its record's address).
        heap / set_heap: *mut u8,
        /// Link in a span cache or a chain of runs.
        next / set_next: *mut Span,
        /// The decay sweep period in which the run came into its thread cache.
        cached_at / set_cached_at: u64,
    }
}

view! {
    /// The master of a mapping (its first span), which counts the spans of the mapping
    /// not yet released and unmaps the mapping when the count drops to zero.
    Master {
        /// Spans in the whole mapping.
        total_spans / set_total_spans: u32,
    }
}

impl Master {
    /// Spans of the mapping not yet released.
    ///
    /// # Safety
    /// The view's header is live and a master's.
    #[inline(always)]
    pub(crate) unsafe fn remaining_spans<'a>(self) -> &'a AtomicU32 {
        // SAFETY: a live header (the contract); the count is atomic.
        unsafe { &(*self.0).remaining_spans }
    }
}

view! {
    /// The head of a batch of cached runs (a chain linked by [`Run::next`]) in the global
    /// cache or a list of batches to release; touched under the cache's lock, or by the
    /// thread that cut the batch out.
    Batch {
        /// The next older batch.
        prev / set_prev: *mut Span,
        /// Runs in the batch (kept in `block_count`, which a free run does not use).
        block_count / set_block_count: u32,
        /// The sweep period in which the batch came into the cache.
        cached_at / set_cached_at: u64,
    }
}

view! {
    /// The header of a huge block: a direct mapping holding one block, touched by the
    /// thread that allocates or frees the block.
    HugeHeader {
        /// Bytes mapped, starting at the header.
        map_size / set_map_size: usize,
        /// Alignment slack mapped before the header (unmapped with the block).
        map_head / set_map_head: usize,
        /// Alignment slack mapped after `map_size`.
        map_tail / set_map_tail: usize,
    }
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

/// A doubly linked list of spans (a size class's partial spans).
pub(crate) struct SpanDList;

impl SpanDList {
    /// Pushes `span` at the head of the list at `head`.
    ///
    /// # Safety
    /// `span` is a valid header in no list; `head` points at a valid list.
    #[inline]
    pub(crate) unsafe fn push(head: *mut *mut Span, span: *mut Span) {
        // SAFETY: per the contract both are valid and exclusively owned by the heap.
        unsafe {
            let old = *head;
            (*span).prev = ptr::null_mut();
            (*span).next = old;
            if !old.is_null() {
                (*old).prev = span;
            }
            *head = span;
        }
    }

    /// Unlinks `span` from the list at `head`.
    ///
    /// # Safety
    /// `span` is in the list at `head`.
    #[inline]
    pub(crate) unsafe fn remove(head: *mut *mut Span, span: *mut Span) {
        // SAFETY: per the contract all linked headers are valid.
        unsafe {
            let prev = (*span).prev;
            let next = (*span).next;
            if prev.is_null() {
                *head = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            (*span).prev = ptr::null_mut();
            (*span).next = ptr::null_mut();
        }
    }
}

/// A singly linked stack of free span runs with a count (a span cache).
///
/// Invariant: `head` starts a null-terminated chain, linked by `next`, of exactly `count`
/// free run headers that no other list holds. Only [`SpanStack::push`] and
/// [`SpanStack::push_chain`] (unsafe, with that as their contract) add runs, and the
/// fields are private, so the safe methods that walk and cut the chain rely on it.
pub(crate) struct SpanStack {
    /// Top of the stack.
    head: *mut Span,
    /// Runs on the stack.
    count: usize,
}

impl SpanStack {
    /// An empty stack.
    pub(crate) const EMPTY: SpanStack = SpanStack {
        head: ptr::null_mut(),
        count: 0,
    };

    /// Runs on the stack.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Pushes a free run.
    ///
    /// # Safety
    /// `span` is a free run header no list holds.
    #[inline]
    pub(crate) unsafe fn push(&mut self, span: *mut Span) {
        // SAFETY: `span` is a free run header no list holds (the contract): its link is
        // ours to write.
        unsafe { (*span).next = self.head };
        self.head = span;
        self.count += 1;
    }

    /// Detaches up to `n` runs from the top as a null-terminated chain linked by `next`;
    /// returns its head and length.
    pub(crate) fn take_chain(&mut self, n: usize) -> (*mut Span, usize) {
        let head = self.head;
        let mut taken = 0;
        let mut last: *mut Span = ptr::null_mut();
        let mut cur = head;
        while taken < n && !cur.is_null() {
            last = cur;
            // SAFETY: every span on the stack is a valid header.
            cur = unsafe { (*cur).next };
            taken += 1;
        }
        if !last.is_null() {
            // SAFETY: `last` is on the stack.
            unsafe { (*last).next = ptr::null_mut() };
        }
        self.head = cur;
        self.count -= taken;
        (if taken == 0 { ptr::null_mut() } else { head }, taken)
    }

    /// Pushes a null-terminated chain of `n` free runs.
    ///
    /// # Safety
    /// `head` starts a chain of exactly `n` free run headers no list holds.
    pub(crate) unsafe fn push_chain(&mut self, head: *mut Span, n: usize) {
        if n == 0 {
            return;
        }
        let mut tail = head;
        // SAFETY: per the contract the chain has n valid headers.
        unsafe {
            while !(*tail).next.is_null() {
                tail = (*tail).next;
            }
            (*tail).next = self.head;
        }
        self.head = head;
        self.count += n;
    }

    /// Detaches the runs stamped at or before `cutoff` (`cached_at`), which lie at the
    /// bottom when stamps never decrease from bottom to top; returns the chain (linked by
    /// `next`, null-terminated) and its length.
    pub(crate) fn cut_stamped_before(&mut self, cutoff: u64) -> (*mut Span, usize) {
        let mut kept = 0;
        let mut above: *mut Span = ptr::null_mut();
        let mut cur = self.head;
        // SAFETY: every span on the stack is a valid header.
        unsafe {
            while !cur.is_null() && (*cur).cached_at > cutoff {
                above = cur;
                cur = (*cur).next;
                kept += 1;
            }
            if cur.is_null() {
                return (cur, 0);
            }
            if above.is_null() {
                self.head = ptr::null_mut();
            } else {
                (*above).next = ptr::null_mut();
            }
        }
        let cut = self.count - kept;
        self.count = kept;
        (cur, cut)
    }

    /// Pops a run, or null.
    #[inline]
    pub(crate) fn pop(&mut self) -> *mut Span {
        let span = self.head;
        if !span.is_null() {
            // SAFETY: every span on the stack is a valid header.
            self.head = unsafe { (*span).next };
            self.count -= 1;
        }
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> Box<Span> {
        // SAFETY: all-zero is a valid Span (null pointers, zero counts, discriminant 0).
        Box::new(unsafe { core::mem::zeroed() })
    }

    #[test]
    fn header_fits_and_data_follows_it() {
        assert!(core::mem::size_of::<Span>() <= SPAN_HEADER_SIZE);
        let mut s = blank();
        let p: *mut Span = &mut *s;
        assert_eq!(Span::data(p) as usize - p as usize, SPAN_HEADER_SIZE);
    }

    #[test]
    fn dlist_push_and_remove_in_any_order() {
        let mut spans: Vec<Box<Span>> = (0..4).map(|_| blank()).collect();
        let ptrs: Vec<*mut Span> = spans.iter_mut().map(|s| &mut **s as *mut Span).collect();
        let mut head = ptr::null_mut();
        // SAFETY: all headers live in `spans` for the whole test.
        unsafe {
            for &p in &ptrs {
                SpanDList::push(&mut head, p);
            }
            SpanDList::remove(&mut head, ptrs[1]);
            SpanDList::remove(&mut head, ptrs[3]);
            assert_eq!(head, ptrs[2]);
            assert_eq!((*ptrs[2]).next, ptrs[0]);
            assert_eq!((*ptrs[0]).prev, ptrs[2]);
            SpanDList::remove(&mut head, ptrs[0]);
            SpanDList::remove(&mut head, ptrs[2]);
        }
        assert!(head.is_null());
    }

    #[test]
    fn chains_move_between_stacks() {
        let mut spans: Vec<Box<Span>> = (0..5).map(|_| blank()).collect();
        let ptrs: Vec<*mut Span> = spans.iter_mut().map(|s| &mut **s as *mut Span).collect();
        let mut a = SpanStack::EMPTY;
        for &p in &ptrs {
            // SAFETY: headers outlive the stacks.
            unsafe { a.push(p) };
        }
        let (chain, n) = a.take_chain(3);
        assert_eq!((chain, n), (ptrs[4], 3));
        assert_eq!(a.count, 2);
        assert_eq!(a.head, ptrs[1]);
        let mut b = SpanStack::EMPTY;
        // SAFETY: a detached chain of 3.
        unsafe { b.push_chain(chain, n) };
        assert_eq!(b.count, 3);
        let popped: Vec<_> =
            std::iter::from_fn(|| Some(b.pop()).filter(|p| !p.is_null())).collect();
        assert_eq!(popped, vec![ptrs[4], ptrs[3], ptrs[2]]);
        assert_eq!(a.take_chain(10).1, 2);
        assert_eq!(a.take_chain(1), (ptr::null_mut(), 0));
    }

    #[test]
    fn cut_takes_the_old_bottom_of_a_stack() {
        let mut spans: Vec<Box<Span>> = (0..5).map(|_| blank()).collect();
        let p: Vec<*mut Span> = spans.iter_mut().map(|s| &mut **s as *mut Span).collect();
        let mut st = SpanStack::EMPTY;
        for (stamp, &s) in p.iter().enumerate() {
            // SAFETY: headers outlive the stack.
            unsafe {
                (*s).cached_at = stamp as u64;
                st.push(s);
            }
        }
        assert_eq!(st.cut_stamped_before(0), (p[0], 1));
        assert_eq!(st.count, 4);
        assert_eq!(st.cut_stamped_before(2), (p[2], 2));
        // SAFETY: as above.
        unsafe {
            assert_eq!((*p[2]).next, p[1]);
            assert!((*p[1]).next.is_null(), "the first cut ended the chain");
            assert!((*p[3]).next.is_null(), "the second cut ended the stack");
        }
        assert_eq!((st.count, st.head), (2, p[4]));
        assert_eq!(st.cut_stamped_before(2), (ptr::null_mut(), 0));
        assert_eq!(st.cut_stamped_before(10), (p[4], 2));
        assert!(st.head.is_null() && st.count == 0);
    }

    #[test]
    fn a_split_run_gets_a_clean_header_for_its_rest() {
        const SPAN: usize = 4096;
        // Three "spans" of 4 KiB, the second full of a block's old bytes.
        let mut memory = vec![0xA5u8; 3 * SPAN + SPAN];
        let base = memory
            .as_mut_ptr()
            .map_addr(|a| a.next_multiple_of(SPAN))
            .cast::<Span>();
        // SAFETY: `base` and the rest lie in `memory`, aligned for `Span`.
        unsafe {
            base.cast::<u8>()
                .write_bytes(0, core::mem::size_of::<Span>());
            (*base).span_count = 3;
            (*base).offset_from_master = 5;
            let rest = Span::split(base, 1, SPAN);
            assert_eq!(rest as usize, base as usize + SPAN);
            assert_eq!(((*base).span_count, (*rest).span_count), (1, 2));
            assert_eq!((*rest).offset_from_master, 6);
            assert!((*rest).remote.is_clear(), "no stale remote-free word");
            assert!((*rest).next.is_null() && (*rest).prev.is_null());
            assert_eq!((*rest).used, 0);
        }
    }

    #[test]
    fn stack_is_lifo_with_count() {
        let mut spans: Vec<Box<Span>> = (0..3).map(|_| blank()).collect();
        let mut st = SpanStack::EMPTY;
        for s in spans.iter_mut() {
            // SAFETY: headers outlive the stack.
            unsafe { st.push(&mut **s) };
        }
        assert_eq!(st.count, 3);
        assert_eq!(st.pop(), &mut *spans[2] as *mut Span);
        assert_eq!(st.count, 2);
        st.pop();
        st.pop();
        assert!(st.pop().is_null());
        assert_eq!(st.count, 0);
    }
}

//! The role views of a span header: `Copy` wrappers of the header pointer, one per role
//! a span plays, whose accessors reach only the fields that role gives a meaning to.

use super::{Span, State};
use crate::block::Block;
use crate::remote::RemoteList;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};

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
        /// The first-class heap the block belongs to (its record's address), or null for
        /// a block of the thread heaps (a fresh mapping reads as null).
        heap / set_heap: *mut u8,
        /// Links in the first-class heap's list of huge blocks (under its lock).
        prev / set_prev: *mut Span,
        /// Links in the first-class heap's list of huge blocks (under its lock).
        next / set_next: *mut Span,
    }
}

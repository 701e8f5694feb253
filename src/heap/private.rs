//! First-class heaps (`rpmalloc::Heap`): heaps not tied to a thread, whose drop releases
//! every block still in them at once.
//!
//! Such a heap is a heap record like a thread's, marked *private* (`HeapShared::private`,
//! and the owner part's copy): its spans come only from its own mappings (its cache, its
//! reserve, new mappings it lists in [`Mappings`]) and go back only to its own cache —
//! never to the global cache or another heap's — and decay sweeps leave it alone. So
//! every span it ever used lies in a mapping of its list, and dropping it unmaps those
//! whole: time proportional to its mappings, not its blocks. Its huge blocks are listed
//! too (`HeapShared::huge`, under its lock), since they are mappings of their own.
//!
//! Other threads may free its blocks through the configuration's `GlobalAlloc` (the
//! remote path): small blocks reach their span's remote list and the heap's notices as
//! for any heap; a large run goes onto the heap's `returned` chain instead of the freeing
//! thread's cache (`free.rs`); a huge block is unlinked under the heap's huge lock and
//! unmapped. Every such free happens before the drop (the caller's contract: the block
//! was live), so the drop sees a settled heap.
//!
//! The record outlives the heap: it goes back on the configuration's list of spare
//! records (`Global::spare_heaps`), cleared, for the next first-class heap.

use super::{Heap, HeapRecord};
use crate::instance::Instance;
use crate::os;
use crate::span::{HugeHeader, Run, Span};
use core::ptr;

/// One mapping of a first-class heap: its first span and its length in bytes.
#[derive(Clone, Copy)]
struct Mapped {
    master: *mut Span,
    len: usize,
}

/// The mappings of a first-class heap, in an array mapped from the OS (page-granular,
/// doubled when full); empty for a thread heap.
pub(crate) struct Mappings {
    list: *mut Mapped,
    len: usize,
    cap: usize,
}

impl Mappings {
    /// No mappings, nothing mapped for the list.
    pub(crate) const EMPTY: Mappings = Mappings {
        list: ptr::null_mut(),
        len: 0,
        cap: 0,
    };

    /// Adds a mapping; false when the OS refused memory for a longer list.
    fn push(&mut self, master: *mut Span, len: usize) -> bool {
        if self.len == self.cap {
            let page = os::page_size();
            let bytes = (2 * self.cap * core::mem::size_of::<Mapped>()).max(page);
            let list = os::map_aligned(bytes, page, 0, false).cast::<Mapped>();
            if list.is_null() {
                return false;
            }
            // SAFETY: the new list has room for `bytes / size_of::<Mapped>()` entries,
            // more than the old one's `len`; the old list is ours and unmapped once.
            unsafe {
                if !self.list.is_null() {
                    ptr::copy_nonoverlapping(self.list, list, self.len);
                    os::unmap(self.list.cast(), self.list_bytes());
                }
            }
            self.list = list;
            self.cap = bytes / core::mem::size_of::<Mapped>();
        }
        // SAFETY: `len < cap`, inside the list.
        unsafe { self.list.add(self.len).write(Mapped { master, len }) };
        self.len += 1;
        true
    }

    /// Bytes mapped for the list.
    fn list_bytes(&self) -> usize {
        (self.cap * core::mem::size_of::<Mapped>()).next_multiple_of(os::page_size())
    }

    /// Takes every mapping out, leaving none; the list's own memory is unmapped once the
    /// iterator has been run to the end.
    fn take_all(&mut self) -> impl Iterator<Item = Mapped> {
        let (list, len, bytes) = (self.list, self.len, self.list_bytes());
        *self = Mappings::EMPTY;
        let mut i = 0;
        core::iter::from_fn(move || {
            if i == len {
                if !list.is_null() {
                    // SAFETY: the list's own mapping, read to the end, not used again.
                    unsafe { os::unmap(list.cast(), bytes) };
                }
                return None;
            }
            // SAFETY: `i < len`: an entry of the list, still mapped.
            let m = unsafe { list.add(i).read() };
            i += 1;
            Some(m)
        })
        .fuse()
    }
}

impl<C: Instance> Heap<C> {
    /// A heap for `rpmalloc::Heap`: a spare first-class record, or a new one; null when
    /// the OS refuses. A record is private for good: the flag is set before a new record
    /// is published (sweeps skip it from the start) and dropped heaps' records are reused
    /// only as first-class heaps.
    pub(crate) fn create_private() -> *mut Heap<C> {
        let global = C::global();
        let spare = {
            let mut spares = global.spare_heaps.lock();
            let heap = (*spares).cast::<Heap<C>>();
            if !heap.is_null() {
                // SAFETY: spare records are valid and, under the lock, ours to take.
                unsafe {
                    *spares = (*heap).next_orphan.cast();
                    (*heap).next_orphan = ptr::null_mut();
                }
            }
            heap
        };
        if spare.is_null() {
            Self::create_record(true)
        } else {
            spare
        }
    }

    /// Whether this is a first-class heap.
    #[inline(always)]
    pub(crate) fn is_private(&self) -> bool {
        self.private
    }

    /// Lists a new mapping of this first-class heap; false (the caller unmaps it) when the
    /// OS refused memory for the list.
    pub(super) fn list_mapping(&mut self, master: *mut Span, len: usize) -> bool {
        self.mappings.push(master, len)
    }

    /// Takes back the large runs other threads freed into this first-class heap's
    /// `returned` chain, into its cache.
    pub(crate) fn take_returned(&mut self) {
        let shared = self.shared();
        let mut run = core::mem::replace(&mut *shared.returned.lock(), ptr::null_mut());
        while !run.is_null() {
            // SAFETY: runs on the chain are this heap's, freed, in no other list.
            unsafe {
                let next = Run(run).next();
                Run(run).set_next(ptr::null_mut());
                self.release_spans(run);
                run = next;
            }
        }
    }

    /// Frees a large run of the first-class heap `heap` from another thread: onto its
    /// `returned` chain.
    ///
    /// # Safety
    /// `heap` is a first-class heap's id and `span` a large run of it whose block is being
    /// freed (no longer used).
    pub(crate) unsafe fn return_run(heap: *mut u8, span: *mut Span) {
        // SAFETY: per the contract a heap record, never unmapped.
        let shared = unsafe { Self::shared_of(heap) };
        let mut returned = shared.returned.lock();
        // SAFETY: the run is free and in no list (the contract); the chain is under its lock.
        unsafe { Run(span).set_next(*returned) };
        *returned = span;
    }

    /// Lists a huge block (header `span`) of this first-class heap.
    ///
    /// # Safety
    /// `span` is the header of a huge block just mapped for this heap.
    pub(crate) unsafe fn list_huge(&mut self, span: *mut Span) {
        let id = self.id();
        let mut head = self.shared().huge.lock();
        // SAFETY: a fresh huge header (the contract) and the list's headers, under its lock.
        unsafe {
            HugeHeader(span).set_heap(id);
            HugeHeader(span).set_prev(ptr::null_mut());
            HugeHeader(span).set_next(*head);
            if !(*head).is_null() {
                HugeHeader(*head).set_prev(span);
            }
        }
        *head = span;
    }

    /// Unlists the huge block with header `span` from its first-class heap, if it has one
    /// (any thread, before unmapping the block).
    ///
    /// # Safety
    /// `span` is the header of a live huge block of this configuration being freed.
    #[inline(always)]
    pub(crate) unsafe fn unlist_huge(span: *mut Span) {
        // SAFETY: a live huge header (the contract); `heap` was written before the block
        // was handed out.
        let heap = unsafe { HugeHeader(span).heap() };
        if !heap.is_null() {
            // SAFETY: the contract, and the block has a first-class heap.
            unsafe { Self::unlist_listed_huge(heap, span) };
        }
    }

    /// [`Heap::unlist_huge`] for a block of the first-class heap `heap`.
    ///
    /// # Safety
    /// `span` is the header of a live huge block of the first-class heap `heap`, being
    /// freed.
    #[cold]
    unsafe fn unlist_listed_huge(heap: *mut u8, span: *mut Span) {
        // SAFETY: a first-class heap's record, never unmapped.
        let shared = unsafe { Self::shared_of(heap) };
        let mut head = shared.huge.lock();
        // SAFETY: the list's headers, under its lock.
        unsafe {
            let prev = HugeHeader(span).prev();
            let next = HugeHeader(span).next();
            if prev.is_null() {
                *head = next;
            } else {
                HugeHeader(prev).set_next(next);
            }
            if !next.is_null() {
                HugeHeader(next).set_prev(prev);
            }
        }
    }

    /// Drops a first-class heap: unmaps its huge blocks and every mapping it made (with
    /// every block still in them), clears the record and keeps it as a spare.
    ///
    /// # Safety
    /// `heap` came from [`Heap::create_private`] and was not destroyed; no block of it is
    /// used any more and no free of one is under way (each happened before this call).
    pub(crate) unsafe fn destroy_private(heap: *mut Heap<C>) {
        // SAFETY: per the contract the heap is ours alone and every block of it dead.
        let this = unsafe { &mut *heap };
        let shared = this.shared();
        let global = C::global();
        // Huge blocks: their own mappings.
        let mut huge = core::mem::replace(&mut *shared.huge.lock(), ptr::null_mut());
        while !huge.is_null() {
            // SAFETY: a listed huge block of this heap, dead; read before it is unmapped.
            unsafe {
                let next = HugeHeader(huge).next();
                global.unmap_huge(huge);
                huge = next;
            }
        }
        // Everything else lies in the heap's mappings: the notices, the returned runs, the
        // cache, the reserve, the bins and partial lists name only spans in them, so they
        // are forgotten, not walked.
        shared.notices.take_all();
        *shared.returned.lock() = ptr::null_mut();
        shared.cache.lock().forget_all();
        for mapping in this.mappings.take_all() {
            // SAFETY: a whole mapping this heap made (listed once), every span of it dead.
            unsafe { global.unmap_private_mapping(mapping.master, mapping.len) };
        }
        // The blocks and spans counted as this heap's are gone with the mappings.
        shared.counters.clear();
        let record = this.record;
        // SAFETY: the owner part is ours (the contract; `this` is not used again): a
        // cleared one, with its record, still private (for good, see `create_private`).
        unsafe {
            heap.write(HeapRecord::<C>::NEW.heap);
            (*heap).record = record;
            (*heap).private = true;
            let mut spares = global.spare_heaps.lock();
            (*heap).next_orphan = (*spares).cast();
            *spares = heap.cast();
        }
    }
}

//! First-class heaps: [`Heap`], a heap of one `define_rpmalloc!` allocator that is not
//! tied to a thread, whose drop releases every block still in it at once (rpmalloc's
//! `rpmalloc_heap_acquire` / `rpmalloc_heap_free_all`, mimalloc's `mi_heap_new` /
//! `mi_heap_destroy`), made safe by ownership: containers borrow the heap, so none can
//! outlive it.
//!
//! The heap's spans come from its own mappings only and go back to its own cache only,
//! and its drop unmaps those mappings whole (`heap/private.rs`).

use crate::heap::Heap as Core;
use crate::instance::Instance;
use crate::params::Params;
use crate::usable::usable_size;
use core::alloc::Layout;
use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr;

/// The configuration behind a `define_rpmalloc!` type (implemented by the macro; not a
/// stable interface).
///
/// # Safety
/// `Config` is the type's own configuration, used by no other type.
#[doc(hidden)]
pub unsafe trait Rpmalloc {
    /// The configuration.
    type Config: Instance;
}

/// A heap of the allocator `A` that is not tied to a thread: blocks allocated in it stay
/// until freed one by one or until the heap is dropped, which releases every one still
/// there at once, in time proportional to the heap's mappings, not its blocks.
///
/// Get one with `A::heap()` (every `define_rpmalloc!` type has it). `&heap` is an
/// `Allocator` (feature `allocator-api2`), so containers can live in it; they borrow it,
/// so none outlives it.
///
/// **Threads.** A heap is used by one thread at a time: it is `Send` (it may be created on
/// one thread and used or dropped on another) but not `Sync`, so `&heap` cannot be shared
/// between threads. A block of the heap may still be freed on any thread through `A`'s
/// `GlobalAlloc::dealloc` (with the same layout): the free then takes the cross-thread
/// path and the heap takes the block back when it next needs memory; it must happen
/// before the heap is dropped, as any free of a live block. `A`'s `GlobalAlloc::realloc`
/// takes such a block too: resized in place it stays the heap's, moved it becomes an
/// ordinary block of `A` (the old one goes back to the heap).
///
/// **Memory.** The heap keeps what is freed in it for its own reuse (its spans never go
/// to other threads or to the OS before the drop), so its footprint is its peak; drop it
/// to give everything back. Huge blocks (over the large limit) are the exception: each is
/// its own mapping, unmapped as soon as it is freed. The memory is counted in `A`'s
/// statistics while the heap lives (a heap's cached spans in `thread_cache`).
///
/// ```
/// use rpmalloc::allocator_api2::vec::Vec;
/// use rpmalloc::define_rpmalloc;
///
/// define_rpmalloc!(LeanAlloc, < enable_thread_cache: false, enable_statistics: true >);
///
/// let heap = LeanAlloc::heap();
/// let mut nodes: Vec<Vec<u64, &_>, _> = Vec::new_in(&heap);
/// for i in 0..1000u64 {
///     let mut node = Vec::new_in(&heap);
///     node.extend(0..i % 7);
///     nodes.push(node);
/// }
/// assert_eq!(nodes[999].len(), 5);
/// std::mem::forget(nodes); // no need to free block by block:
/// drop(heap); // the heap's drop releases them all
/// assert_eq!(LeanAlloc.statistics().unwrap().live, 0);
/// ```
///
/// A container cannot outlive its heap:
///
/// ```compile_fail
/// use rpmalloc::allocator_api2::vec::Vec;
/// rpmalloc::define_rpmalloc!(LeanAlloc);
///
/// let v = {
///     let heap = LeanAlloc::heap();
///     let mut v = Vec::new_in(&heap);
///     v.push(1u8);
///     v
/// }; // error: `heap` does not live long enough
/// ```
pub struct Heap<A: Rpmalloc> {
    /// The heap's bins (its record's address), null until the first allocation.
    bins: Cell<*mut u8>,
    _alloc: PhantomData<A>,
}

// SAFETY: a heap is reached only through `&self` on one thread at a time (it is not
// `Sync`); its record is not tied to the thread that made it, and other threads reach it
// only through its shared part (atomics and locks), as for any heap.
unsafe impl<A: Rpmalloc> Send for Heap<A> {}

impl<A: Rpmalloc> Heap<A> {
    /// A new, empty heap. Nothing is mapped until its first allocation.
    pub const fn new() -> Self {
        Heap {
            bins: Cell::new(ptr::null_mut()),
            _alloc: PhantomData,
        }
    }

    /// The heap's core (its bins: its record's address), made on first use; `None` when
    /// the OS refused memory for it.
    #[inline]
    fn core(&self) -> Option<*mut crate::bins::Bins> {
        let mut bins = self.bins.get();
        if bins.is_null() {
            // The fork handlers take this heap's locks too: a program may use only
            // first-class heaps, so they are installed here as well as at a thread's setup.
            crate::thread::install_hooks::<A::Config>();
            bins = Core::<A::Config>::create_private().cast();
            if bins.is_null() {
                return None;
            }
            self.bins.set(bins);
        }
        Some(bins.cast())
    }

    /// Allocates a block of `layout` (of non-zero size) in this heap; null when the OS
    /// refuses. With `zero`, the block reads as zero.
    fn alloc_in(&self, layout: Layout, zero: bool) -> *mut u8 {
        debug_assert!(layout.size() != 0);
        let Some(bins) = self.core() else {
            return ptr::null_mut();
        };
        // SAFETY: a first-class heap's record, used by this thread alone (the heap is not
        // `Sync`); the reference lives for this call, which calls back into nothing that
        // could form another.
        let core = unsafe { Core::<A::Config>::from_bins(bins) };
        let p = crate::alloc::alloc_from(core, layout, zero, false);
        if <A::Config as crate::config::Config>::ENABLE_STATISTICS {
            let shared = core.shared();
            // SAFETY: null or a block just allocated with `layout`.
            unsafe { crate::counting::count_alloc_in::<A::Config>(shared, p, layout) };
        }
        p
    }

    /// Allocates a block of `layout` in this heap; null when the OS refuses.
    ///
    /// # Safety
    /// `layout` has a non-zero size (as `GlobalAlloc::alloc`).
    pub unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.alloc_in(layout, false)
    }

    /// Allocates a zeroed block of `layout` in this heap; null when the OS refuses.
    ///
    /// # Safety
    /// `layout` has a non-zero size (as `GlobalAlloc::alloc_zeroed`).
    pub unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.alloc_in(layout, true)
    }

    /// Frees a block of this heap.
    ///
    /// # Safety
    /// `ptr` is a live block this heap allocated with `layout`.
    pub unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let bins = self.bins.get();
        debug_assert!(
            !bins.is_null(),
            "a block freed into a heap that never allocated"
        );
        if <A::Config as crate::config::Config>::ENABLE_STATISTICS {
            // SAFETY: a live block of the configuration with `layout` (the contract).
            unsafe { crate::counting::count_free::<A::Config>(ptr, layout) };
        }
        // SAFETY: a live block of this heap (the contract), freed as its user: this
        // thread alone uses the heap.
        unsafe { crate::free::dealloc_with::<A::Config>(ptr, layout, bins.cast()) }
    }

    /// Resizes a block of this heap to `new` (both sizes non-zero): in place when the
    /// block already fits and is not more than twice too big, with the same alignment
    /// placement; else moved within the heap. Null (the block untouched) when the OS
    /// refuses.
    ///
    /// # Safety
    /// `ptr` is a live block this heap allocated with `old`; `new` has a non-zero size.
    pub unsafe fn resize(&self, ptr: *mut u8, old: Layout, new: Layout) -> *mut u8 {
        let span_size = <A::Config as Params>::SPAN_SIZE;
        // A block aligned to the span size or more is found by its alignment (`huge.rs`):
        // it stays only with the same one.
        let same_placement =
            new.align() == old.align() || (new.align() < old.align() && old.align() < span_size);
        if same_placement && ptr.addr().is_multiple_of(new.align()) {
            // SAFETY: a live block of the configuration (the contract).
            let usable = unsafe { usable_size::<A::Config>(ptr) };
            if new.size() <= usable && (new.size() >= usable / 2 || usable <= 64) {
                if <A::Config as crate::config::Config>::ENABLE_STATISTICS {
                    if let Some(bins) = self.core() {
                        // SAFETY: this heap's record, as mapped (its bins are its address).
                        let shared = unsafe { Core::<A::Config>::shared_of(bins.cast()) };
                        shared.counters.resized(
                            old.size(),
                            new.size(),
                            crate::stats::Writer::Shared,
                        );
                    }
                }
                return ptr;
            }
        }
        let fresh = self.alloc_in(new, false);
        if !fresh.is_null() {
            // SAFETY: both blocks are live and distinct, each at least as long as the
            // copy; the old one is this heap's, freed with its layout.
            unsafe {
                ptr::copy_nonoverlapping(ptr, fresh, old.size().min(new.size()));
                self.dealloc(ptr, old);
            }
        }
        fresh
    }
}

impl<A: Rpmalloc> Default for Heap<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Rpmalloc> core::fmt::Debug for Heap<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Heap")
            .field("record", &self.bins.get())
            .finish()
    }
}

impl<A: Rpmalloc> Drop for Heap<A> {
    /// Releases every block still in the heap, with its spans and mappings, at once.
    fn drop(&mut self) {
        let bins = self.bins.get();
        if !bins.is_null() {
            // SAFETY: the heap's record from `create_private`, destroyed once: `&mut self`
            // means no container borrows the heap any more, and every free of its blocks
            // from other threads happened before (they were live when freed).
            unsafe { Core::<A::Config>::destroy_private(bins.cast()) };
        }
    }
}

#[cfg(feature = "allocator-api2")]
mod allocator {
    use super::{Heap, Rpmalloc};
    use crate::allocator_api::{allocate_in, deallocate_in, grow_in, shrink_in, Blocks};
    use allocator_api2::alloc::{AllocError, Allocator};
    use core::alloc::Layout;
    use core::ptr::NonNull;

    // SAFETY: `alloc_in` gives blocks of the layout (zeroed when asked) or null; `dealloc`
    // and `resize` keep their documented contracts, which are the trait's.
    unsafe impl<A: Rpmalloc> Blocks for Heap<A> {
        #[inline]
        fn alloc(&self, layout: Layout, zeroed: bool) -> *mut u8 {
            self.alloc_in(layout, zeroed)
        }

        #[inline]
        unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: a live block of this heap with `layout` (the trait's contract).
            unsafe { self.dealloc(ptr, layout) }
        }

        #[inline]
        unsafe fn resize(&self, ptr: *mut u8, old: Layout, new: Layout) -> *mut u8 {
            // SAFETY: a live block of this heap with `old`; `new` non-zero (the contract).
            unsafe { Heap::resize(self, ptr, old, new) }
        }
    }

    // SAFETY: blocks stay valid until freed through the heap (or `A`'s `GlobalAlloc`) or
    // until the heap is dropped, which needs `&mut` and so waits for every borrow (every
    // container using `&heap`); zero-sized requests get dangling aligned pointers that
    // are never freed. Every method forwards to `allocator_api`'s, over the heap.
    unsafe impl<A: Rpmalloc> Allocator for Heap<A> {
        fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            allocate_in(self, layout, false)
        }

        fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            allocate_in(self, layout, true)
        }

        unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
            // SAFETY: the trait's contract, which `deallocate_in` has.
            unsafe { deallocate_in(self, ptr, layout) }
        }

        unsafe fn grow(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: the trait's contract, which `grow_in` has.
            unsafe { grow_in(self, ptr, old, new, false) }
        }

        unsafe fn grow_zeroed(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: the trait's contract, which `grow_in` has.
            unsafe { grow_in(self, ptr, old, new, true) }
        }

        unsafe fn shrink(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: the trait's contract, which `shrink_in` has.
            unsafe { shrink_in(self, ptr, old, new) }
        }
    }
}

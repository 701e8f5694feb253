//! The `Allocator` trait for every `define_rpmalloc!` type: `allocator_api2`'s (feature
//! `allocator-api2`, on by default; it works on stable, and `hashbrown` and
//! `allocator_api2::vec::Vec` take it), which is `core::alloc::Allocator` itself with the
//! `nightly` feature.
//!
//! Each trait method forwards to a function here, generic over the configuration; the
//! expansion of `define_rpmalloc!` calls [`__impl_allocator!`](crate::__impl_allocator),
//! which writes the `impl` (or nothing without the feature: the user's crate does not see
//! rpmalloc's features, so the choice is made by which macro rpmalloc was compiled with).
//!
//! Zero-sized requests never reach the heap: they get a dangling pointer aligned to the
//! layout, and freeing one does nothing, as the trait allows. Growing and shrinking keep
//! the block where its size class or span run fits the new size (`realloc.rs`); a new
//! alignment above the old one moves the block.

use crate::instance::Instance;
use crate::params::Params as _;
use allocator_api2::alloc::AllocError;
use core::alloc::Layout;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

/// The answer of a successful request: `ptr` with `len` bytes.
type Block = Result<NonNull<[u8]>, AllocError>;

/// A dangling, non-null pointer aligned to `layout`, for a zero-sized block.
#[inline]
pub(crate) fn dangling(layout: Layout) -> NonNull<[u8]> {
    // The alignment is a non-zero power of two.
    let ptr = ptr::without_provenance_mut::<u8>(layout.align());
    NonNull::slice_from_raw_parts(NonNull::new(ptr).unwrap_or(NonNull::dangling()), 0)
}

/// `ptr` with `len` bytes, or the error for null.
#[inline]
pub(crate) fn answer(ptr: *mut u8, len: usize) -> Block {
    match NonNull::new(ptr) {
        Some(ptr) => Ok(NonNull::slice_from_raw_parts(ptr, len)),
        None => Err(AllocError),
    }
}

/// What the `Allocator` methods are made of, for both kinds of rpmalloc allocator: a
/// configuration's entry points ([`Entry`]) and a first-class heap (`first_class.rs`).
/// The methods themselves — zero-sized requests, zeroing a grown block's new bytes — are
/// written once, over this trait ([`allocate_in`], [`deallocate_in`], [`grow_in`],
/// [`shrink_in`]).
///
/// # Safety
/// `alloc` returns null or a block of at least `layout.size()` bytes aligned to
/// `layout.align()` (reading as zero when asked), valid until it is given to `free` or
/// `resize`; `resize` returns null leaving the block as it was, or a block of `new` that
/// holds the old contents up to the smaller size (the old one is then gone).
pub(crate) unsafe trait Blocks {
    /// A block of `layout` (of non-zero size), zeroed with `zeroed`; null when the OS
    /// refuses.
    fn alloc(&self, layout: Layout, zeroed: bool) -> *mut u8;

    /// Frees a block.
    ///
    /// # Safety
    /// `ptr` is a live block of this allocator given with `layout` (of non-zero size).
    unsafe fn free(&self, ptr: *mut u8, layout: Layout);

    /// Resizes a block to `new`, in place or moved; null (the block untouched) when that
    /// cannot be done.
    ///
    /// # Safety
    /// `ptr` is a live block of this allocator given with `old` (of non-zero size); `new`
    /// has a non-zero size.
    unsafe fn resize(&self, ptr: *mut u8, old: Layout, new: Layout) -> *mut u8;
}

/// The entry points of configuration `C` as [`Blocks`].
pub(crate) struct Entry<C>(PhantomData<C>);

impl<C> Entry<C> {
    /// The handle (zero-sized).
    const NEW: Self = Entry(PhantomData);
}

// SAFETY: `alloc`, `alloc_zeroed`, `dealloc` and `realloc` keep `GlobalAlloc`'s
// contracts; `resize` keeps the block's placement rules (below) or moves it.
unsafe impl<C: Instance> Blocks for Entry<C> {
    #[inline(always)]
    fn alloc(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        // SAFETY: a valid layout of non-zero size (the trait's contract), as
        // `GlobalAlloc::alloc` and `alloc_zeroed` require.
        unsafe {
            if zeroed {
                crate::alloc::alloc_zeroed::<C>(layout)
            } else {
                crate::alloc::alloc::<C>(layout)
            }
        }
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: a live block of `C` with this layout (the contract), which is what
        // `dealloc` requires.
        unsafe { crate::free::dealloc::<C>(ptr, layout) }
    }

    /// `realloc` (in place where the class or run fits) when the old alignment covers the
    /// new one, else a move.
    ///
    /// `realloc` keeps the block's alignment, and a block aligned to the span size or
    /// more is found from its address only with that alignment (its header sits one span
    /// before it, `huge.rs`): such a block is freed later with the new layout, so it keeps
    /// its place only if the alignment stays the same.
    #[inline]
    unsafe fn resize(&self, ptr: *mut u8, old: Layout, new: Layout) -> *mut u8 {
        if new.align() == old.align() || (new.align() < old.align() && old.align() < C::SPAN_SIZE) {
            // `realloc` keeps the old alignment: the new size must fit a layout with it.
            if Layout::from_size_align(new.size(), old.align()).is_err() {
                return ptr::null_mut();
            }
            // SAFETY: a live block with its layout (the contract); the new size is
            // non-zero and valid with the old alignment (checked above).
            return unsafe { crate::realloc::realloc::<C>(ptr, old, new.size()) };
        }
        // SAFETY: forwarded contract.
        unsafe { relocate::<C>(ptr, old, new) }
    }
}

/// Moves the block to a fresh one of `new` (allocate, copy `min` of the sizes, free),
/// leaving it untouched when that fails.
///
/// # Safety
/// `ptr` is a live block of `C` with `old` (non-zero size), `new` has a non-zero size.
#[cold]
unsafe fn relocate<C: Instance>(ptr: *mut u8, old: Layout, new: Layout) -> *mut u8 {
    // SAFETY: `new` is a valid layout of non-zero size (the contract).
    let fresh = unsafe { crate::alloc::alloc::<C>(new) };
    if !fresh.is_null() {
        // SAFETY: both blocks are live and distinct, each at least as long as the copy;
        // the old block is freed with the layout it was allocated with.
        unsafe {
            ptr::copy_nonoverlapping(ptr, fresh, old.size().min(new.size()));
            crate::free::dealloc::<C>(ptr, old);
        }
    }
    fresh
}

/// `Allocator::allocate` (or `allocate_zeroed`, with `zeroed`) over `blocks`.
#[inline]
pub(crate) fn allocate_in<B: Blocks>(blocks: &B, layout: Layout, zeroed: bool) -> Block {
    if layout.size() == 0 {
        return Ok(dangling(layout));
    }
    answer(blocks.alloc(layout, zeroed), layout.size())
}

/// `Allocator::deallocate` over `blocks`.
///
/// # Safety
/// As `Allocator::deallocate`: `ptr` is a block `blocks` gave (currently allocated) and
/// `layout` the layout it was given with.
#[inline]
pub(crate) unsafe fn deallocate_in<B: Blocks>(blocks: &B, ptr: NonNull<u8>, layout: Layout) {
    if layout.size() != 0 {
        // SAFETY: a non-zero-sized block came from `blocks` with this layout (the
        // contract).
        unsafe { blocks.free(ptr.as_ptr(), layout) }
    }
}

/// `Allocator::grow` (or `grow_zeroed`, with `zeroed`) over `blocks`.
///
/// # Safety
/// As `Allocator::grow`: `ptr` is a live block `blocks` gave with `old`, and
/// `new.size() >= old.size()`.
#[inline]
pub(crate) unsafe fn grow_in<B: Blocks>(
    blocks: &B,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
    zeroed: bool,
) -> Block {
    debug_assert!(new.size() >= old.size());
    if old.size() == 0 {
        return allocate_in(blocks, new, zeroed);
    }
    // SAFETY: forwarded contract; `new` is at least as large as `old`, so non-zero.
    let block = answer(unsafe { blocks.resize(ptr.as_ptr(), old, new) }, new.size())?;
    if zeroed {
        // SAFETY: the block is `new.size()` bytes long; the bytes past the old size are
        // the new ones, which the caller asked to be zero.
        unsafe {
            block
                .cast::<u8>()
                .as_ptr()
                .add(old.size())
                .write_bytes(0, new.size() - old.size());
        }
    }
    Ok(block)
}

/// `Allocator::shrink` over `blocks`.
///
/// # Safety
/// As `Allocator::shrink`: `ptr` is a live block `blocks` gave with `old`, and
/// `new.size() <= old.size()`.
#[inline]
pub(crate) unsafe fn shrink_in<B: Blocks>(
    blocks: &B,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
) -> Block {
    debug_assert!(new.size() <= old.size());
    if new.size() == 0 {
        // SAFETY: forwarded contract.
        unsafe { deallocate_in(blocks, ptr, old) };
        return Ok(dangling(new));
    }
    // SAFETY: forwarded contract; `old` is at least as large as `new`, so non-zero.
    answer(unsafe { blocks.resize(ptr.as_ptr(), old, new) }, new.size())
}

/// `Allocator::allocate` for configuration `C`.
#[inline]
pub fn allocate<C: Instance>(layout: Layout) -> Block {
    allocate_in(&Entry::<C>::NEW, layout, false)
}

/// `Allocator::allocate_zeroed` for configuration `C`.
#[inline]
pub fn allocate_zeroed<C: Instance>(layout: Layout) -> Block {
    allocate_in(&Entry::<C>::NEW, layout, true)
}

/// `Allocator::deallocate` for configuration `C`.
///
/// # Safety
/// As `Allocator::deallocate`: `ptr` is a block this configuration's `Allocator` gave
/// (currently allocated) and `layout` the layout it was given with.
#[inline]
pub unsafe fn deallocate<C: Instance>(ptr: NonNull<u8>, layout: Layout) {
    // SAFETY: forwarded contract.
    unsafe { deallocate_in(&Entry::<C>::NEW, ptr, layout) }
}

/// `Allocator::grow` for configuration `C`.
///
/// # Safety
/// As `Allocator::grow`: `ptr` is a live block of this configuration's `Allocator` given
/// with `old`, and `new.size() >= old.size()`.
#[inline]
pub unsafe fn grow<C: Instance>(ptr: NonNull<u8>, old: Layout, new: Layout) -> Block {
    // SAFETY: forwarded contract.
    unsafe { grow_in(&Entry::<C>::NEW, ptr, old, new, false) }
}

/// `Allocator::grow_zeroed` for configuration `C`.
///
/// # Safety
/// As [`grow`].
#[inline]
pub unsafe fn grow_zeroed<C: Instance>(ptr: NonNull<u8>, old: Layout, new: Layout) -> Block {
    // SAFETY: forwarded contract.
    unsafe { grow_in(&Entry::<C>::NEW, ptr, old, new, true) }
}

/// `Allocator::shrink` for configuration `C`.
///
/// # Safety
/// As `Allocator::shrink`: `ptr` is a live block of this configuration's `Allocator`
/// given with `old`, and `new.size() <= old.size()`.
#[inline]
pub unsafe fn shrink<C: Instance>(ptr: NonNull<u8>, old: Layout, new: Layout) -> Block {
    // SAFETY: forwarded contract.
    unsafe { shrink_in(&Entry::<C>::NEW, ptr, old, new) }
}

/// Implements `Allocator` for a `define_rpmalloc!` type `$name` with configuration
/// `$config`, forwarding to [`crate::allocator_api`]. Used by the macro's expansion; not a
/// stable interface.
#[doc(hidden)]
#[macro_export]
#[cfg_attr(feature = "nightly", allow_internal_unstable(allocator_api))]
macro_rules! __impl_allocator {
    ($name:ty, $config:ty) => {
        // SAFETY: every method forwards to rpmalloc's function of the same name for this
        // configuration, which keeps the trait's contract: blocks stay valid until freed
        // through any copy of this zero-sized handle (all copies are the same allocator),
        // and zero-sized requests get dangling aligned pointers that are never freed.
        unsafe impl $crate::__private::allocator_api2::alloc::Allocator for $name {
            #[inline]
            fn allocate(
                &self,
                layout: ::core::alloc::Layout,
            ) -> ::core::result::Result<
                ::core::ptr::NonNull<[u8]>,
                $crate::__private::allocator_api2::alloc::AllocError,
            > {
                $crate::__private::allocator_api::allocate::<$config>(layout)
            }

            #[inline]
            fn allocate_zeroed(
                &self,
                layout: ::core::alloc::Layout,
            ) -> ::core::result::Result<
                ::core::ptr::NonNull<[u8]>,
                $crate::__private::allocator_api2::alloc::AllocError,
            > {
                $crate::__private::allocator_api::allocate_zeroed::<$config>(layout)
            }

            #[inline]
            unsafe fn deallocate(
                &self,
                ptr: ::core::ptr::NonNull<u8>,
                layout: ::core::alloc::Layout,
            ) {
                // SAFETY: the caller keeps `Allocator::deallocate`'s contract.
                unsafe { $crate::__private::allocator_api::deallocate::<$config>(ptr, layout) }
            }

            #[inline]
            unsafe fn grow(
                &self,
                ptr: ::core::ptr::NonNull<u8>,
                old_layout: ::core::alloc::Layout,
                new_layout: ::core::alloc::Layout,
            ) -> ::core::result::Result<
                ::core::ptr::NonNull<[u8]>,
                $crate::__private::allocator_api2::alloc::AllocError,
            > {
                // SAFETY: the caller keeps `Allocator::grow`'s contract.
                unsafe {
                    $crate::__private::allocator_api::grow::<$config>(ptr, old_layout, new_layout)
                }
            }

            #[inline]
            unsafe fn grow_zeroed(
                &self,
                ptr: ::core::ptr::NonNull<u8>,
                old_layout: ::core::alloc::Layout,
                new_layout: ::core::alloc::Layout,
            ) -> ::core::result::Result<
                ::core::ptr::NonNull<[u8]>,
                $crate::__private::allocator_api2::alloc::AllocError,
            > {
                // SAFETY: the caller keeps `Allocator::grow_zeroed`'s contract.
                unsafe {
                    $crate::__private::allocator_api::grow_zeroed::<$config>(
                        ptr, old_layout, new_layout,
                    )
                }
            }

            #[inline]
            unsafe fn shrink(
                &self,
                ptr: ::core::ptr::NonNull<u8>,
                old_layout: ::core::alloc::Layout,
                new_layout: ::core::alloc::Layout,
            ) -> ::core::result::Result<
                ::core::ptr::NonNull<[u8]>,
                $crate::__private::allocator_api2::alloc::AllocError,
            > {
                // SAFETY: the caller keeps `Allocator::shrink`'s contract.
                unsafe {
                    $crate::__private::allocator_api::shrink::<$config>(ptr, old_layout, new_layout)
                }
            }
        }
    };
}

//! The per-thread slot of one configuration: the thread's heap (or the shared empty
//! bins), its status, and its count of allocator events towards the next clock read.
//!
//! Each `define_rpmalloc!` expansion declares its own slot ([`__thread_slot!`]): by
//! default a `thread_local!` holding a [`ThreadState`] with a `const` initialiser. The type
//! has no `Drop`, so the standard library compiles it to a bare `#[thread_local]` static:
//! in an executable reading it is one `fs`-relative load, with no lazy-init test and no
//! destructor registration, and it stays readable while the thread's other destructors
//! run. Setup and thread exit are in `thread.rs`.
//!
//! In a shared library (`cdylib`, such as the C ABI's `librpmalloc.so`) rustc compiles a
//! thread-local with the general-dynamic model: every access calls `__tls_get_addr`, two
//! calls (22 instructions) per `malloc` + `free` pair, a quarter of the pair's cost. C
//! allocators declare their slot `initial-exec` (one load from the GOT plus the thread
//! pointer), and rustc's switch for it (`-Z tls-model`) is nightly only. With the key
//! `initial_exec_tls: true` the expansion declares the slot itself, in assembly, on x86-64
//! Linux: the slot's initial image in `.tdata` and a two-instruction access. The library
//! is then marked `STATIC_TLS`; glibc keeps spare static TLS space for libraries that are
//! `dlopen`ed later (these 16 bytes fit), as it does for jemalloc's and mimalloc's.

use crate::bins::{empty_bins, Bins, Ticks};
use crate::params::TICKS_PER_CLOCK_READ;
use core::cell::Cell;
use core::mem::{align_of, offset_of, size_of};

/// No heap yet; the next slow-path allocation sets one up.
pub(crate) const UNINIT: u8 = 0;
/// The thread owns the heap in `heap`.
pub(crate) const LIVE: u8 = 1;
/// The thread's heap has been orphaned at thread exit.
pub(crate) const DEAD: u8 = 2;

/// The per-thread slot of one allocator instance (used by `define_rpmalloc!`).
///
/// `repr(C)`: an initial-exec slot writes its initial image in assembly, laid out by
/// [`slot_image`].
#[repr(C)]
pub struct ThreadState {
    /// The thread's heap, or the shared empty bins before setup and after exit.
    pub(crate) heap: Cell<*mut Bins>,
    /// [`UNINIT`], [`LIVE`] or [`DEAD`].
    pub(crate) status: Cell<u8>,
    /// Allocator events outside a heap (large blocks of other threads freed, huge blocks)
    /// left until this thread next reads the clock: a thread without a heap (one that only
    /// frees) ticks too. A heap counts its own events (`Heap::ticks`).
    pub(crate) ticks: Ticks,
}

impl ThreadState {
    /// The state of a thread that has not allocated yet.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        ThreadState {
            heap: Cell::new(empty_bins()),
            status: Cell::new(UNINIT),
            ticks: Ticks::new(),
        }
    }
}

/// The layout of [`ThreadState::new`]'s value, for a slot whose initial image is written in
/// assembly ([`__thread_slot!`]): the heap pointer (the empty bins) at offset 0, then the
/// status and the tick count; the rest is zero.
#[doc(hidden)]
pub mod slot_image {
    use super::*;

    /// `log2` of the slot's alignment.
    pub const ALIGN_LOG2: u32 = align_of::<ThreadState>().trailing_zeros();
    /// The slot's size in bytes.
    pub const SIZE: usize = size_of::<ThreadState>();
    /// Offset of the status byte.
    pub const STATUS_OFFSET: usize = offset_of!(ThreadState, status);
    /// Offset of the tick count (a `u32`).
    pub const TICKS_OFFSET: usize = offset_of!(ThreadState, ticks);
    /// The status of a new slot.
    pub const STATUS: u8 = UNINIT;
    /// The tick count of a new slot.
    pub const TICKS: u32 = TICKS_PER_CLOCK_READ;
    /// Zero bytes between the heap pointer and the status.
    pub const PAD_BEFORE_STATUS: usize = STATUS_OFFSET - size_of::<usize>();
    /// Zero bytes between the status and the tick count.
    pub const PAD_BEFORE_TICKS: usize = TICKS_OFFSET - STATUS_OFFSET - 1;
    /// Zero bytes after the tick count.
    pub const PAD_AFTER_TICKS: usize = SIZE - TICKS_OFFSET - size_of::<u32>();

    // The image is written field by field in this order, with these sizes.
    const _: () = {
        assert!(offset_of!(ThreadState, heap) == 0);
        assert!(size_of::<Cell<*mut Bins>>() == size_of::<usize>());
        assert!(size_of::<Cell<u8>>() == 1);
        assert!(size_of::<Ticks>() == size_of::<u32>());
        assert!(STATUS_OFFSET >= size_of::<usize>() && TICKS_OFFSET > STATUS_OFFSET);
        assert!(TICKS_OFFSET + size_of::<u32>() <= SIZE);
    };
}

/// Declares one expansion's per-thread slot and `fn __rpmalloc_thread_state() -> *const
/// ThreadState`, the address of the calling thread's slot (used by `define_rpmalloc!`).
///
/// - `thread_local`: a `const`-initialised `thread_local!`.
/// - `initial_exec "symbol"`: on x86-64 Linux outside Miri, a thread-local `symbol` (hidden,
///   unique to the expansion) defined in `.tdata` with [`ThreadState::new`]'s value, read
///   through its GOT entry with the initial-exec model; elsewhere the `thread_local` form.
#[doc(hidden)]
#[macro_export]
macro_rules! __thread_slot {
    (thread_local) => {
        ::std::thread_local! {
            static __RPMALLOC_THREAD: $crate::__private::ThreadState =
                const { $crate::__private::ThreadState::new() };
        }

        #[inline(always)]
        fn __rpmalloc_thread_state() -> *const $crate::__private::ThreadState {
            __RPMALLOC_THREAD.with(|t| t as *const $crate::__private::ThreadState)
        }
    };
    (initial_exec $symbol:literal) => {
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri))))]
        $crate::__thread_slot!(thread_local);

        // The slot: `ThreadState::new()` as bytes, laid out by `slot_image`. (In a module:
        // the expansion is a block, where `global_asm!` may not stand as a statement.)
        #[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
        mod __rpmalloc_thread_slot {
            ::core::arch::global_asm!(
                ::core::concat!(".pushsection .tdata.", $symbol, ",\"awT\",@progbits"),
                ".p2align {align}",
                ::core::concat!(".globl ", $symbol),
                ::core::concat!(".hidden ", $symbol),
                ::core::concat!(".type ", $symbol, ",@object"),
                ::core::concat!(".size ", $symbol, ", {size}"),
                ::core::concat!($symbol, ":"),
                ".quad {empty_bins}",
                ".zero {pad_before_status}",
                ".byte {status}",
                ".zero {pad_before_ticks}",
                ".long {ticks}",
                ".zero {pad_after_ticks}",
                ".popsection",
                align = const $crate::__private::slot_image::ALIGN_LOG2,
                size = const $crate::__private::slot_image::SIZE,
                empty_bins = sym $crate::__private::EMPTY_BINS,
                pad_before_status = const $crate::__private::slot_image::PAD_BEFORE_STATUS,
                status = const $crate::__private::slot_image::STATUS,
                pad_before_ticks = const $crate::__private::slot_image::PAD_BEFORE_TICKS,
                ticks = const $crate::__private::slot_image::TICKS,
                pad_after_ticks = const $crate::__private::slot_image::PAD_AFTER_TICKS,
                options(att_syntax),
            );
        }

        #[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
        #[inline(always)]
        fn __rpmalloc_thread_state() -> *const $crate::__private::ThreadState {
            let slot: *const $crate::__private::ThreadState;
            // SAFETY: the initial-exec sequence: the slot's offset from the thread pointer
            // (its GOT entry, which the loader fills once) plus the thread pointer (the
            // word at `%fs:0` holds it on x86-64 Linux). It reads no memory that changes
            // while the thread runs, touches no stack and writes only `slot` (and flags).
            unsafe {
                ::core::arch::asm!(
                    ::core::concat!("movq ", $symbol, "@GOTTPOFF(%rip), {slot}"),
                    "addq %fs:0, {slot}",
                    slot = out(reg) slot,
                    options(att_syntax, pure, readonly, nostack),
                );
            }
            slot
        }
    };
}

//! The C ABI of the allocator: `librpmalloc.so` (for `LD_PRELOAD` or linking) and
//! `librpmalloc.a`, exporting the C library's allocation functions with glibc's
//! semantics, the C++ `operator new`/`delete` family, and rpmalloc's own names
//! (`include/rpmalloc.h`).
//!
//! One configuration serves them: [`CAlloc`], `define_rpmalloc!`'s defaults (64 KiB spans,
//! thread and global caches, no statistics) with `initial_exec_tls: true`. To build with
//! another, change its keys here and rebuild (`cargo build --release -p rpmalloc-capi`).
//!
//! `initial_exec_tls` matters here: rustc compiles a thread-local in a shared library with
//! the general-dynamic TLS model, a call to `__tls_get_addr` at every `malloc` and `free`
//! (22 of a pair's 105 instructions). With the key the per-thread slot is initial-exec, as
//! C allocators declare theirs (80 instructions per pair; C rpmalloc's `malloc.c` 83). The
//! library is then marked `STATIC_TLS`: preloading and linking are unaffected, and a
//! `dlopen` after start-up takes 16 bytes of the spare static TLS glibc keeps for this.
//!
//! # The hard parts
//! - **Before initialisation.** There is none to wait for: the allocator's state is
//!   `const`-initialised statics and a `const` thread-local, so the first call — from the
//!   dynamic loader, a constructor, or before `main` — finds it ready.
//! - **Recursion.** The allocator never allocates through `malloc`: it maps memory
//!   itself, and this library's own Rust code allocates through [`CAlloc`] directly (it is
//!   the `#[global_allocator]` here). The thread-exit hooks glibc sets up may call
//!   `malloc` while a thread is being set up; the core installs them before it makes the
//!   thread's heap and sets the key's value after, so the nested call is served (see
//!   `thread.rs` in the core).
//! - **Threads made by C.** Thread exit is a pthread key destructor, which runs for every
//!   pthread however it was made; `rpmalloc_thread_finalize` gives a thread's heap back
//!   early.
//! - **`fork`.** `pthread_atfork` handlers take every lock of the allocator before a fork
//!   and release (parent) or reset (child) them after, so a child of a multi-threaded
//!   program can allocate, with or without `exec`.
//! - **Foreign pointers.** `free`, `realloc` and `malloc_usable_size` check a pointer
//!   against the allocator's registry of its mappings before they read anything at it. A
//!   pointer from another allocator (the dynamic loader's blocks from before the
//!   library's symbols were bound, memory allocated before it was loaded) is not freed:
//!   `free` leaves it alone (a leak, never a corruption), `realloc` copies what
//!   glibc's `malloc_usable_size` says it holds when glibc's allocator made it, and
//!   the first such pointer is reported on standard error once.
#![cfg(target_os = "linux")]

use core::ffi::{c_int, c_void};
use core::ptr;
use rp::__private::c_style;
use rp::__private::Rpmalloc;

rp::define_rpmalloc!(CAlloc, < initial_exec_tls: true >);

/// The configuration's internals, named for the core's C-style functions.
type Config = <CAlloc as Rpmalloc>::Config;

// This library's own Rust allocations go straight to the allocator, not through the
// exported `malloc` (which would be the same allocator, one call further).
#[global_allocator]
static GLOBAL: CAlloc = CAlloc;

/// The alignment `malloc` guarantees (glibc's: `2 * sizeof(size_t)`).
const MALLOC_ALIGN: usize = 16;

/// Sets the calling thread's `errno`.
#[inline]
fn set_errno(value: c_int) {
    // SAFETY: `__errno_location` returns the calling thread's `errno`, always valid.
    unsafe { *libc::__errno_location() = value };
}

/// Returns `p`, setting `errno` to `ENOMEM` when it is null.
#[inline]
fn or_enomem(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

/// The page size.
fn page_size() -> usize {
    // SAFETY: `sysconf` has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 {
        page as usize
    } else {
        4096
    }
}

/// A pointer not from this allocator, seen by `free`/`realloc`/`malloc_usable_size`:
/// reported once on standard error.
#[cold]
fn foreign(what: &str, p: *mut c_void) {
    use core::sync::atomic::{AtomicBool, Ordering};
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if REPORTED.swap(true, Ordering::Relaxed) {
        return;
    }
    // Formatted into a stack buffer: no allocation while reporting.
    let mut line = [0u8; 160];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        for &b in bytes {
            if len < line.len() {
                line[len] = b;
                len += 1;
            }
        }
    };
    put(b"rpmalloc: ");
    put(what.as_bytes());
    put(b"(0x");
    let addr = p as usize;
    for shift in (0..usize::BITS).step_by(4).rev() {
        put(&[b"0123456789abcdef"[(addr >> shift) & 0xF]]);
    }
    put(b"): not a block of this allocator; left alone (reported once)\n");
    // SAFETY: writing our own initialised buffer to standard error.
    unsafe { libc::write(2, line.as_ptr().cast(), len) };
}

/// glibc's own `malloc_usable_size`, for a block glibc's allocator made (a pointer from
/// before this library was bound); null if there is none.
fn glibc_usable_size() -> Option<unsafe extern "C" fn(*mut c_void) -> usize> {
    // SAFETY: looking up a symbol by a NUL-terminated name.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"malloc_usable_size".as_ptr()) };
    // SAFETY: glibc's `malloc_usable_size` has this signature.
    (!f.is_null()).then(|| unsafe {
        core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void) -> usize>(f)
    })
}

// ---------------------------------------------------------------------------------------
// The C library's functions.

/// `malloc(size)`: a block of `size` bytes aligned to 16; `malloc(0)` returns a distinct
/// block; null with `errno = ENOMEM` on failure.
///
/// # Safety
/// None beyond C's: the block is freed at most once, with this library's `free`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: 16 is a power of two.
    or_enomem(unsafe { c_style::malloc::<Config>(size, MALLOC_ALIGN, false) })
}

/// `calloc(n, size)`: `n * size` zeroed bytes; null with `ENOMEM` when the product
/// overflows or memory is refused.
///
/// # Safety
/// As [`malloc`].
#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    // SAFETY: 16 is a power of two.
    or_enomem(unsafe { c_style::malloc::<Config>(total, MALLOC_ALIGN, true) })
}

/// `free(p)`: frees a block of this allocator; null is a no-op; a pointer from another
/// allocator is left alone (and reported once).
///
/// # Safety
/// `p` is null, a live block of this allocator, or not in its memory at all.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: the caller's contract, which `c_style::free` has too.
    if !unsafe { c_style::free::<Config>(p.cast()) } {
        foreign("free", p);
    }
}

/// `cfree(p)`: an old name of `free`.
///
/// # Safety
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { free(p) }
}

/// `realloc(p, size)` with glibc's semantics: `realloc(NULL, n)` is `malloc(n)`;
/// `realloc(p, 0)` frees `p` and returns null; on failure null with `ENOMEM` and `p`
/// untouched. The alignment kept is `malloc`'s.
///
/// # Safety
/// `p` is null or a live block (of this allocator, or of the C library's before this
/// one was loaded); on success it is freed.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        // SAFETY: the caller's contract.
        return unsafe { malloc(size) };
    }
    if size == 0 {
        // SAFETY: the caller's contract.
        unsafe { free(p) };
        return ptr::null_mut();
    }
    // SAFETY: a live block (the contract), ours or not: `c_style::realloc` checks.
    match unsafe { c_style::realloc::<Config>(p.cast(), size) } {
        Ok(q) => or_enomem(q),
        Err(()) => {
            // SAFETY: a live foreign block (the contract).
            unsafe { realloc_foreign(p, size) }
        }
    }
}

/// `realloc` of another allocator's block: moved into a new block of ours, as much copied
/// as glibc says it holds (the old block is left alone); null when its size is unknown.
///
/// # Safety
/// `p` is a live block of another allocator.
#[cold]
unsafe fn realloc_foreign(p: *mut c_void, size: usize) -> *mut c_void {
    foreign("realloc", p);
    let Some(usable) = glibc_usable_size() else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    // SAFETY: a live block of the C library's allocator (the contract).
    let old = unsafe { usable(p) };
    // SAFETY: the caller's contract is C's.
    let q = unsafe { malloc(size) };
    if !q.is_null() {
        // SAFETY: both blocks hold at least the bytes copied, and do not overlap.
        unsafe { ptr::copy_nonoverlapping(p.cast::<u8>(), q.cast::<u8>(), old.min(size)) };
    }
    q
}

/// `reallocarray(p, n, size)`: `realloc(p, n * size)`, null with `ENOMEM` on overflow.
///
/// # Safety
/// As [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    // SAFETY: the caller's contract.
    unsafe { realloc(p, total) }
}

/// An aligned block: `align` a power of two (at least 16 taken); null with `ENOMEM` when
/// refused.
fn aligned(align: usize, size: usize) -> *mut c_void {
    // SAFETY: a power of two (checked by every caller).
    or_enomem(unsafe { c_style::malloc::<Config>(size, align.max(MALLOC_ALIGN), false) })
}

/// `posix_memalign(out, align, size)`: `EINVAL` unless `align` is a power of two and a
/// multiple of `sizeof(void *)`; `ENOMEM` when refused (`*out` untouched); 0 otherwise.
///
/// # Safety
/// `out` is valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    let errno = errno();
    let p = aligned(align, size);
    if p.is_null() {
        // `posix_memalign` reports through its result, not `errno`.
        set_errno(errno);
        return libc::ENOMEM;
    }
    // SAFETY: `out` is valid for a write (the contract).
    unsafe { *out = p };
    0
}

/// The calling thread's `errno`.
fn errno() -> c_int {
    // SAFETY: as in `set_errno`.
    unsafe { *libc::__errno_location() }
}

/// `aligned_alloc(align, size)`: `EINVAL` (null) unless `align` is a power of two (as
/// glibc 2.38 on); any size.
///
/// # Safety
/// As [`malloc`].
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    aligned(align, size)
}

/// `memalign(align, size)`: as glibc, an alignment that is not a power of two is rounded
/// up to one; `EINVAL` when that overflows.
///
/// # Safety
/// As [`malloc`].
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let Some(align) = align.checked_next_power_of_two() else {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    };
    aligned(align, size)
}

/// `valloc(size)`: page-aligned.
///
/// # Safety
/// As [`malloc`].
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(page_size(), size)
}

/// `pvalloc(size)`: page-aligned, the size rounded up to whole pages (one page for 0).
///
/// # Safety
/// As [`malloc`].
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    match size.max(1).checked_next_multiple_of(page) {
        Some(size) => aligned(page, size),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `malloc_usable_size(p)`: the bytes the block may hold (0 for null, and for a pointer
/// not from this allocator: that one is asked of glibc's allocator when it made it).
///
/// # Safety
/// `p` is null or a live block.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: the caller's contract; `c_style::usable_size` checks ownership.
    match unsafe { c_style::usable_size::<Config>(p.cast()) } {
        Some(size) => size,
        None => {
            foreign("malloc_usable_size", p);
            0
        }
    }
}

/// `malloc_trim(pad)`: gives cached memory back to the OS now; returns 1.
#[no_mangle]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    CAlloc.collect();
    1
}

// ---------------------------------------------------------------------------------------
// C++: `operator new` and `operator delete` (Itanium C++ ABI names), as rpmalloc's
// `malloc.c` exports them. A throwing `new` cannot throw from here (there is no C++
// runtime to throw with): when memory is refused it reports and aborts, which is what an
// uncaught `std::bad_alloc` does; the `nothrow` forms return null.

/// `operator new` out of memory: report and abort (see above).
#[cold]
fn new_failed() -> ! {
    let line = b"rpmalloc: operator new: out of memory\n";
    // SAFETY: writing a static buffer to standard error, then aborting.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::abort()
    }
}

/// The block for a throwing `new`.
fn new_block(size: usize, align: usize) -> *mut c_void {
    let p = aligned(align, size);
    if p.is_null() {
        new_failed();
    }
    p
}

macro_rules! cpp_new {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) => $body:expr;)*) => {$(
        $(#[$doc])*
        ///
        /// # Safety
        /// As the C++ operator: the block is freed once, with a matching `delete`.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> *mut c_void {
            $body
        }
    )*};
}

cpp_new! {
    /// `operator new(size_t)`.
    _Znwm(size: usize) => new_block(size, MALLOC_ALIGN);
    /// `operator new[](size_t)`.
    _Znam(size: usize) => new_block(size, MALLOC_ALIGN);
    /// `operator new(size_t, const std::nothrow_t &)`.
    _ZnwmRKSt9nothrow_t(size: usize, _tag: *const c_void) => aligned(MALLOC_ALIGN, size);
    /// `operator new[](size_t, const std::nothrow_t &)`.
    _ZnamRKSt9nothrow_t(size: usize, _tag: *const c_void) => aligned(MALLOC_ALIGN, size);
    /// `operator new(size_t, std::align_val_t)`.
    _ZnwmSt11align_val_t(size: usize, align: usize) => new_block(size, checked_align(align));
    /// `operator new[](size_t, std::align_val_t)`.
    _ZnamSt11align_val_t(size: usize, align: usize) => new_block(size, checked_align(align));
    /// `operator new(size_t, std::align_val_t, const std::nothrow_t &)`.
    _ZnwmSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, _tag: *const c_void) =>
        aligned(checked_align(align), size);
    /// `operator new[](size_t, std::align_val_t, const std::nothrow_t &)`.
    _ZnamSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, _tag: *const c_void) =>
        aligned(checked_align(align), size);
}

/// A C++ alignment argument: a power of two by the language's rules; anything else is
/// a caller's bug, reported and aborted on rather than served wrongly.
fn checked_align(align: usize) -> usize {
    if !align.is_power_of_two() {
        let line = b"rpmalloc: operator new: alignment is not a power of two\n";
        // SAFETY: writing a static buffer to standard error, then aborting.
        unsafe {
            libc::write(2, line.as_ptr().cast(), line.len());
            libc::abort()
        }
    }
    align
}

macro_rules! cpp_delete {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        $(#[$doc])*
        ///
        /// # Safety
        /// As the C++ operator: `p` is null or a live block of a matching `new`.
        #[no_mangle]
        pub unsafe extern "C" fn $name(p: *mut c_void $(, $arg: $ty)*) {
            $(let _ = $arg;)*
            // SAFETY: the caller's contract.
            unsafe { free(p) }
        }
    )*};
}

cpp_delete! {
    /// `operator delete(void *)`.
    _ZdlPv();
    /// `operator delete[](void *)`.
    _ZdaPv();
    /// `operator delete(void *, size_t)`.
    _ZdlPvm(size: usize);
    /// `operator delete[](void *, size_t)`.
    _ZdaPvm(size: usize);
    /// `operator delete(void *, const std::nothrow_t &)`.
    _ZdlPvRKSt9nothrow_t(tag: *const c_void);
    /// `operator delete[](void *, const std::nothrow_t &)`.
    _ZdaPvRKSt9nothrow_t(tag: *const c_void);
    /// `operator delete(void *, std::align_val_t)`.
    _ZdlPvSt11align_val_t(align: usize);
    /// `operator delete[](void *, std::align_val_t)`.
    _ZdaPvSt11align_val_t(align: usize);
    /// `operator delete(void *, size_t, std::align_val_t)`.
    _ZdlPvmSt11align_val_t(size: usize, align: usize);
    /// `operator delete[](void *, size_t, std::align_val_t)`.
    _ZdaPvmSt11align_val_t(size: usize, align: usize);
    /// `operator delete(void *, std::align_val_t, const std::nothrow_t &)`.
    _ZdlPvSt11align_val_tRKSt9nothrow_t(align: usize, tag: *const c_void);
    /// `operator delete[](void *, std::align_val_t, const std::nothrow_t &)`.
    _ZdaPvSt11align_val_tRKSt9nothrow_t(align: usize, tag: *const c_void);
}

// ---------------------------------------------------------------------------------------
// rpmalloc's own names (`include/rpmalloc.h`).

/// `rpmalloc_initialize()`: nothing to do (the allocator is ready from the start); 0.
#[no_mangle]
pub extern "C" fn rpmalloc_initialize() -> c_int {
    0
}

/// `rpmalloc_finalize()`: gives cached memory back to the OS.
#[no_mangle]
pub extern "C" fn rpmalloc_finalize() {
    CAlloc.collect();
}

/// `rpmalloc_thread_initialize()`: nothing to do (a thread is set up on first use).
#[no_mangle]
pub extern "C" fn rpmalloc_thread_initialize() {}

/// `rpmalloc_thread_finalize(release_caches)`: gives the calling thread's heap back now,
/// as its exit would (its cached spans go to the global cache whatever `release_caches`
/// says; the heap waits for another thread); the thread gets a heap again if it
/// allocates later.
#[no_mangle]
pub extern "C" fn rpmalloc_thread_finalize(_release_caches: c_int) {
    rp::__private::thread_finalize::<Config>();
}

/// `rpmalloc(size)`: as [`malloc`].
///
/// # Safety
/// As [`malloc`].
#[no_mangle]
pub unsafe extern "C" fn rpmalloc(size: usize) -> *mut c_void {
    // SAFETY: the same contract.
    unsafe { malloc(size) }
}

/// `rpfree(p)`: as [`free`].
///
/// # Safety
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn rpfree(p: *mut c_void) {
    // SAFETY: the same contract.
    unsafe { free(p) }
}

/// `rpcalloc(n, size)`: as [`calloc`].
///
/// # Safety
/// As [`calloc`].
#[no_mangle]
pub unsafe extern "C" fn rpcalloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: the same contract.
    unsafe { calloc(n, size) }
}

/// `rprealloc(p, size)`: as [`realloc`].
///
/// # Safety
/// As [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn rprealloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the same contract.
    unsafe { realloc(p, size) }
}

/// `rpaligned_alloc(align, size)`: as [`aligned_alloc`].
///
/// # Safety
/// As [`malloc`].
#[no_mangle]
pub unsafe extern "C" fn rpaligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: the same contract.
    unsafe { aligned_alloc(align, size) }
}

/// `rpmalloc_usable_size(p)`: as [`malloc_usable_size`].
///
/// # Safety
/// As [`malloc_usable_size`].
#[no_mangle]
pub unsafe extern "C" fn rpmalloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: the same contract.
    unsafe { malloc_usable_size(p) }
}

// ---------------------------------------------------------------------------------------
// rpmalloc's first-class heap API over `rp::Heap` (one thread at a time per heap, as
// rpmalloc requires: no function of a heap is thread-safe).

/// A first-class heap (what a C `rpmalloc_heap_t *` points to).
type HeapT = rp::Heap<CAlloc>;

/// `rpmalloc_heap_t`: opaque to C; a pointer to it is a pointer to a [`HeapT`].
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct rpmalloc_heap_t {
    _opaque: [u8; 0],
}

/// `rpmalloc_heap_realloc` flag: fail (null) rather than move the block.
const RPMALLOC_GROW_OR_FAIL: u32 = 2;

/// The layout a heap's block is taken back with: its usable size, and the alignment of
/// its address (capped below the span size; a span-aligned block is a huge block found
/// by that alignment), so `Heap::resize` keeps it in place when it can.
///
/// # Safety
/// `p` is a live block of this allocator.
unsafe fn heap_block_layout(p: *mut u8) -> core::alloc::Layout {
    let span = c_style::span_size::<Config>();
    let align = if p.addr().is_multiple_of(span) {
        span
    } else {
        (1usize << p.addr().trailing_zeros()).min(span / 2)
    };
    // SAFETY: a live block of this allocator (the contract).
    let size = unsafe { rp::__private::usable_size::<Config>(p) };
    // SAFETY: a power of two; the usable size of a live block, inside one mapping.
    unsafe { core::alloc::Layout::from_size_align_unchecked(size, align) }
}

/// A block of `size` bytes (one for zero) aligned to `align` in `heap`, zeroed if `zero`;
/// null with `ENOMEM` when refused, `EINVAL` for a bad alignment.
///
/// # Safety
/// `heap` came from `rpmalloc_heap_acquire` and is used by this thread alone.
unsafe fn heap_alloc(
    heap: *mut rpmalloc_heap_t,
    align: usize,
    size: usize,
    zero: bool,
) -> *mut c_void {
    let heap = heap.cast::<HeapT>();
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    let Ok(layout) = core::alloc::Layout::from_size_align(size.max(1), align.max(MALLOC_ALIGN))
    else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    // SAFETY: a live heap of this thread (the contract); a non-zero size.
    let p = unsafe {
        if zero {
            (*heap).alloc_zeroed(layout)
        } else {
            (*heap).alloc(layout)
        }
    };
    or_enomem(p)
}

/// `rpmalloc_heap_acquire()`: a new first-class heap (null with `ENOMEM` if refused).
#[no_mangle]
pub extern "C" fn rpmalloc_heap_acquire() -> *mut rpmalloc_heap_t {
    let layout = core::alloc::Layout::new::<HeapT>();
    // SAFETY: a non-zero size (the heap holds a pointer).
    let p = unsafe { c_style::malloc::<Config>(layout.size(), layout.align(), false) };
    if p.is_null() {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    let heap = p.cast::<HeapT>();
    // SAFETY: a fresh block of the heap's size and alignment.
    unsafe { heap.write(CAlloc::heap()) };
    heap.cast()
}

/// `rpmalloc_heap_release(heap)`: releases the heap. Unlike C rpmalloc, whose release
/// keeps the heap's blocks (and asks for `rpmalloc_heap_free_all` first), this frees every
/// block still in it too; null is a no-op.
///
/// # Safety
/// `heap` is null or came from `rpmalloc_heap_acquire`, is not used again, and none of
/// its blocks is used after.
#[no_mangle]
pub unsafe extern "C" fn rpmalloc_heap_release(heap: *mut rpmalloc_heap_t) {
    if heap.is_null() {
        return;
    }
    let heap = heap.cast::<HeapT>();
    // SAFETY: a heap from `rpmalloc_heap_acquire` (the contract), dropped once, then its
    // block freed.
    unsafe {
        ptr::drop_in_place(heap);
        c_style::free::<Config>(heap.cast());
    }
}

/// `rpmalloc_heap_free_all(heap)`: frees every block of the heap at once (in time
/// proportional to its mappings); the heap stays usable.
///
/// # Safety
/// `heap` came from `rpmalloc_heap_acquire`, used by this thread alone; none of its
/// blocks is used after.
#[no_mangle]
pub unsafe extern "C" fn rpmalloc_heap_free_all(heap: *mut rpmalloc_heap_t) {
    let heap = heap.cast::<HeapT>();
    // SAFETY: a live heap (the contract): dropped (releasing its blocks) and replaced by
    // a new, empty one in the same place.
    unsafe {
        ptr::drop_in_place(heap);
        heap.write(CAlloc::heap());
    }
}

/// `rpmalloc_heap_alloc(heap, size)`.
///
/// # Safety
/// `heap` came from `rpmalloc_heap_acquire` and is used by this thread alone.
#[no_mangle]
pub unsafe extern "C" fn rpmalloc_heap_alloc(
    heap: *mut rpmalloc_heap_t,
    size: usize,
) -> *mut c_void {
    // SAFETY: the caller's contract.
    unsafe { heap_alloc(heap, MALLOC_ALIGN, size, false) }
}

/// `rpmalloc_heap_aligned_alloc(heap, align, size)`.
///
/// # Safety
/// As [`rpmalloc_heap_alloc`].
#[no_mangle]
pub unsafe extern "C" fn rpmalloc_heap_aligned_alloc(
    heap: *mut rpmalloc_heap_t,
    align: usize,
    size: usize,
) -> *mut c_void {
    // SAFETY: the caller's contract.
    unsafe { heap_alloc(heap, align, size, false) }
}

/// `rpmalloc_heap_calloc(heap, num, size)`: null with `ENOMEM` on overflow.
///
/// # Safety
/// As [`rpmalloc_heap_alloc`].
#[no_mangle]
pub unsafe extern "C" fn rpmalloc_heap_calloc(
    heap: *mut rpmalloc_heap_t,
    num: usize,
    size: usize,
) -> *mut c_void {
    // SAFETY: the caller's contract.
    unsafe { rpmalloc_heap_aligned_calloc(heap, MALLOC_ALIGN, num, size) }
}

/// `rpmalloc_heap_aligned_calloc(heap, align, num, size)`.
///
/// # Safety
/// As [`rpmalloc_heap_alloc`].
#[no_mangle]
pub unsafe extern "C" fn rpmalloc_heap_aligned_calloc(
    heap: *mut rpmalloc_heap_t,
    align: usize,
    num: usize,
    size: usize,
) -> *mut c_void {
    let Some(total) = num.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    // SAFETY: the caller's contract.
    unsafe { heap_alloc(heap, align, total, true) }
}

/// `rpmalloc_heap_aligned_realloc(heap, p, align, size, flags)`: `p` resized in the heap
/// (null `p`: a new block); with `RPMALLOC_GROW_OR_FAIL` null rather than a move.
///
/// # Safety
/// As [`rpmalloc_heap_alloc`]; `p` is null or a live block of `heap`.
#[no_mangle]
pub unsafe extern "C" fn rpmalloc_heap_aligned_realloc(
    heap: *mut rpmalloc_heap_t,
    p: *mut c_void,
    align: usize,
    size: usize,
    flags: u32,
) -> *mut c_void {
    if p.is_null() {
        // SAFETY: the caller's contract.
        return unsafe { heap_alloc(heap, align, size, false) };
    }
    if !c_style::owns::<Config>(p.cast()) {
        foreign("rpmalloc_heap_realloc", p);
        return ptr::null_mut();
    }
    let Ok(new) = core::alloc::Layout::from_size_align(size.max(1), align.max(MALLOC_ALIGN)) else {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    };
    // SAFETY: a live block of `heap` (the contract).
    let old = unsafe { heap_block_layout(p.cast()) };
    if flags & RPMALLOC_GROW_OR_FAIL != 0
        && (new.size() > old.size() || !p.addr().is_multiple_of(new.align()))
    {
        return ptr::null_mut();
    }
    // SAFETY: a live block of this thread's heap, taken back with a layout it fits.
    or_enomem(unsafe { (*heap.cast::<HeapT>()).resize(p.cast(), old, new) })
}

/// `rpmalloc_heap_realloc(heap, p, size, flags)`.
///
/// # Safety
/// As [`rpmalloc_heap_aligned_realloc`].
#[no_mangle]
pub unsafe extern "C" fn rpmalloc_heap_realloc(
    heap: *mut rpmalloc_heap_t,
    p: *mut c_void,
    size: usize,
    flags: u32,
) -> *mut c_void {
    // SAFETY: the caller's contract.
    unsafe { rpmalloc_heap_aligned_realloc(heap, p, MALLOC_ALIGN, size, flags) }
}

/// `rpmalloc_heap_free(heap, p)`: frees a block of `heap`; null is a no-op.
///
/// # Safety
/// As [`rpmalloc_heap_alloc`]; `p` is null or a live block of `heap`.
#[no_mangle]
pub unsafe extern "C" fn rpmalloc_heap_free(heap: *mut rpmalloc_heap_t, p: *mut c_void) {
    if p.is_null() {
        return;
    }
    if !c_style::owns::<Config>(p.cast()) {
        foreign("rpmalloc_heap_free", p);
        return;
    }
    // SAFETY: a live block of this thread's heap (the contract), with a layout it fits.
    unsafe { (*heap.cast::<HeapT>()).dealloc(p.cast(), heap_block_layout(p.cast())) }
}

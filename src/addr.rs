//! Pointers to computed addresses — a span header found by masking a block's address, a
//! block rounded to its alignment — with their provenance kept.
//!
//! Under Miri these are the strict-provenance methods (`with_addr`), so Miri checks every
//! such pointer against the allocation it came from. In other builds the same operation
//! goes through exposed provenance (`expose_provenance` / `with_exposed_provenance_mut`):
//! `with_addr` compiles to a subtract and an add around the mask (LLVM cannot fold the
//! offset without the unstable `ptrmask`), two instructions more on every free's fast path,
//! while an exposed round trip is the single `and`. Both are defined behaviour in Rust's
//! model and give the same pointer: the one derived from `p`, at `addr`.

/// `p` moved to `addr`, which must lie in the same allocation (mapping) as `p`.
#[inline(always)]
pub(crate) fn with_addr<T>(p: *mut T, addr: usize) -> *mut T {
    #[cfg(miri)]
    {
        p.with_addr(addr)
    }
    #[cfg(not(miri))]
    {
        let _ = p.expose_provenance();
        core::ptr::with_exposed_provenance_mut(addr)
    }
}

/// `p` with its address masked by `mask` (a span header from a block's address).
#[inline(always)]
pub(crate) fn mask<T, U>(p: *mut T, mask: usize) -> *mut U {
    with_addr(p, p.addr() & mask).cast()
}

//! Pointers to computed addresses — a span header found by masking a block's address, a
//! block rounded to its alignment — with the *allocator's* provenance.
//!
//! A block pointer a program frees carries the program's provenance: under Rust's aliasing
//! models, a tag of the program's own references (a `Box`, a `&mut [T]`), valid for the
//! block only, and possibly disabled for the span header by the writes other frees made
//! there. The allocator must reach its headers, and keep blocks on its lists, with the
//! provenance of the mapping it made, never the program's.
//!
//! - Under Miri the OS layer knows every mapping's base pointer (`os::miri::root_at`), and these
//!   functions derive the result from it with the strict-provenance `with_addr`, so Miri
//!   checks every access against the mapping. (Addresses outside any mapping — unit tests'
//!   stand-in spans — keep `p`'s provenance.)
//! - In other builds the same comes from exposed provenance: the OS layer exposes each
//!   mapping's pointer when it maps it, and `with_exposed_provenance_mut` picks it up. It
//!   compiles to nothing: the mask is a single `and` (`with_addr` would add a subtract and
//!   an add around it, which LLVM cannot fold without the unstable `ptrmask`: two
//!   instructions more on every free's fast path).

/// A pointer to `addr`, which lies in the same mapping as `p`, with the mapping's
/// provenance (see the module doc).
#[inline(always)]
pub(crate) fn with_addr<T>(p: *mut T, addr: usize) -> *mut T {
    #[cfg(miri)]
    {
        match super::miri::root_at(addr) {
            Some(root) => root.with_addr(addr).cast(),
            None => p.with_addr(addr),
        }
    }
    #[cfg(not(miri))]
    {
        let _ = p.expose_provenance();
        core::ptr::with_exposed_provenance_mut(addr)
    }
}

/// `p` itself, with its mapping's provenance: a freed block before it goes on one of the
/// allocator's lists (from which it is handed out again).
#[inline(always)]
pub(crate) fn own<T>(p: *mut T) -> *mut T {
    #[cfg(miri)]
    {
        with_addr(p, p.addr())
    }
    #[cfg(not(miri))]
    {
        p
    }
}

/// `p` with its address masked by `mask` (a span header from a block's address).
#[inline(always)]
pub(crate) fn mask<T, U>(p: *mut T, mask: usize) -> *mut U {
    with_addr(p, p.addr() & mask).cast()
}

//! The atomics (and spin-wait hints) of the lock-free parts, switched to `loom`'s models
//! under `--cfg loom` so `loom` can explore their interleavings.
//!
//! In a normal build these are plain re-exports of `core`/`std` items: the same types and
//! functions, so the generated code is unchanged. Only `src/deferred.rs`, `src/remote.rs`
//! and `src/lock.rs` use them; the rest of the crate keeps `core::sync::atomic` (its statics
//! need `const` constructors, which `loom`'s atomics do not have, so it is compiled out
//! under `--cfg loom`; see `lib.rs`).

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use core::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

/// Explores `f` under `loom`, exhaustively or with at most `bound` preemptions per
/// execution (models with spin or wait loops need a bound to finish in seconds).
#[cfg(all(test, loom))]
pub(crate) fn loom_model(bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = bound;
    builder.check(f);
}

/// Busy-wait hint inside a spin loop (`loom`: a yield to the model's scheduler).
#[cfg(not(loom))]
pub(crate) use core::hint::spin_loop;
/// Busy-wait hint inside a spin loop (`loom`: a yield to the model's scheduler).
#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;

/// Gives up the CPU while waiting for a lock (`loom`: lets another modelled thread run).
#[cfg(loom)]
pub(crate) use loom::thread::yield_now;
/// Gives up the CPU while waiting for a lock (`loom`: lets another modelled thread run).
#[cfg(not(loom))]
pub(crate) use std::thread::yield_now;

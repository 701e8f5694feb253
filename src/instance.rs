//! The handles of one allocator instance to its singleton state: the configuration's
//! [`Global`] static and its per-thread slot. `define_rpmalloc!` implements [`Instance`]
//! beside [`Config`] for every expansion; everything that reaches shared state is generic
//! over `C: Instance`.

use crate::config::Config;
use crate::global::Global;
use crate::thread_state::ThreadState;

/// One configuration's singleton state (implemented by `define_rpmalloc!`).
///
/// # Safety
/// [`Instance::global`] must return the same static for every call, and
/// [`Instance::thread_state`] a pointer to a thread-local that lives as long as the calling
/// thread; neither may be used by any other configuration. Two configurations sharing
/// either would hand one heap's blocks to another.
pub unsafe trait Instance: Config {
    /// This configuration's global state.
    fn global() -> &'static Global<Self>;
    /// This configuration's per-thread slot for the calling thread.
    fn thread_state() -> *const ThreadState;

    /// The calling thread's slot.
    #[inline(always)]
    fn slot() -> &'static ThreadState {
        // SAFETY: per the trait's contract the slot is a thread-local of this
        // configuration that lives as long as the calling thread; it has no destructor,
        // so it stays valid while the thread's other destructors run.
        unsafe { &*Self::thread_state() }
    }
}

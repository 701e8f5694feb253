//! Per-thread slot (stub).
use core::cell::Cell;
/// The per-thread slot of one configuration.
pub struct ThreadState {
    _h: Cell<usize>,
}
impl ThreadState {
    /// Const constructor for the macro's thread-local.
    pub const fn new() -> Self {
        ThreadState { _h: Cell::new(0) }
    }
}
impl Default for ThreadState { fn default() -> Self { Self::new() } }

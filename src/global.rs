//! Per-configuration global state (stub).
use core::marker::PhantomData;
/// The global state of one configuration.
pub struct Global<C> {
    _c: PhantomData<C>,
}
impl<C> Global<C> {
    /// Const constructor for the macro's static.
    pub const fn new() -> Self {
        Global { _c: PhantomData }
    }
}
// SAFETY: stub
unsafe impl<C> Sync for Global<C> {}

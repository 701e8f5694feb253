//! Hand-written configurations for the crate's unit tests (the proc-macro is exercised by
//! the integration tests).

/// Defines a unit struct `$name` implementing `Config` and `Instance` with its own statics, overriding
/// the given constants.
macro_rules! test_config {
    ($name:ident, $span:ty $(, $key:ident : $ty:ty = $value:expr)* $(,)?) => {
        pub(crate) struct $name;
        const _: () = {
            static GLOBAL: crate::global::Global<$name> = crate::global::Global::new();
            std::thread_local! {
                static THREAD: crate::thread_state::ThreadState =
                    const { crate::thread_state::ThreadState::new() };
            }
            impl crate::Config for $name {
                type SpanSize = $span;
                $(const $key: $ty = $value;)*
            }
            // SAFETY: one static and one thread-local of its own, as the trait requires.
            unsafe impl crate::instance::Instance for $name {
                fn global() -> &'static crate::global::Global<Self> {
                    &GLOBAL
                }
                fn thread_state() -> *const crate::thread_state::ThreadState {
                    THREAD.with(|t| t as *const _)
                }
            }
        };
    };
}
pub(crate) use test_config;

/// A configuration whose `mapped` counter shows every released span: no span caches (a
/// released span is unmapped at once), one span per mapping, statistics on. Each test that
/// reads the counter defines its own, so it sees nothing else.
macro_rules! span_counting_config {
    ($name:ident, $span:ty) => {
        crate::test_config::test_config!(
            $name,
            $span,
            ENABLE_THREAD_CACHE: bool = false,
            ENABLE_GLOBAL_CACHE: bool = false,
            ENABLE_STATISTICS: bool = true,
            SPAN_MAP_COUNT: usize = 1,
        );
    };
}
pub(crate) use span_counting_config;

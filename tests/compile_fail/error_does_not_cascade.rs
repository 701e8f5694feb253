//! A bad key is the only error: the type is still declared, so code using it compiles.
use rpmalloc::define_rpmalloc;
use std::alloc::{GlobalAlloc, Layout};

define_rpmalloc!(pub Alloc, < max_thread_span_cache: 0 >);

fn main() {
    let layout = Layout::new::<u64>();
    // SAFETY: a non-zero layout; `p` is freed once, with it.
    let p = unsafe { Alloc.alloc(layout) };
    // SAFETY: as above.
    unsafe { Alloc.dealloc(p, layout) };
    let _ = Alloc.statistics();
}

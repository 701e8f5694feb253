use rpmalloc::define_rpmalloc;

define_rpmalloc!(Alloc, < span_size: 65535 >);

fn main() {}

use rpmalloc::define_rpmalloc;

define_rpmalloc!(Alloc, < span_size: 65536, enable_statistics: true, span_size: 8192 >);

fn main() {}

use rpmalloc::define_rpmalloc;

define_rpmalloc!(Alloc, < span_map_count: true >);

fn main() {}

use rpmalloc::define_rpmalloc;

define_rpmalloc!();

fn main() {}

// A first-class heap is used by one thread at a time: `&heap` cannot go to another
// thread (the heap is `Send`, not `Sync`).
use rpmalloc::define_rpmalloc;

define_rpmalloc!(LeanAlloc);

fn main() {
    let heap = LeanAlloc::heap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _ = rpmalloc::allocator_api2::boxed::Box::new_in(1u8, &heap);
        });
    });
}

//! `initial_exec_tls: true`: the per-thread slot declared in assembly with the
//! initial-exec TLS model (x86-64 Linux; the `thread_local!` slot elsewhere). The slot must
//! be per thread — every live thread gets its own heap — and must outlive the thread's
//! other destructors, so that a thread's exit gives its heap back and a later thread reuses
//! it. This test binary's global allocator uses such a slot too, so the test harness, its
//! threads and their teardown all run on one.
//!
//! Under Miri the expansion declares the `thread_local!` slot every other test covers (Miri
//! runs no assembly), so these tests are skipped there.

mod common;

use common::{layout, Raw};
use rpmalloc::define_rpmalloc;
use std::cell::RefCell;
use std::sync::{mpsc, Barrier};
use std::thread;

define_rpmalloc!(SlottedGlobal, < initial_exec_tls: true >);
// Used only by `every_live_thread_has_its_own_heap_and_gives_it_back`, for its heap count.
define_rpmalloc!(Counted, < initial_exec_tls: true, enable_statistics: true >);

#[global_allocator]
static GLOBAL: SlottedGlobal = SlottedGlobal;

const THREADS: usize = 4;
const BLOCKS: usize = 300;

/// Runs `THREADS` threads at once, each allocating `BLOCKS` blocks of mixed sizes from
/// `Counted` and keeping them until every thread has allocated; each frees half itself and
/// hands the rest to the caller, which checks and frees them after the threads exited.
fn round(seed: u64) {
    let barrier = Barrier::new(THREADS);
    let (sender, receiver) = mpsc::channel::<Vec<Raw>>();
    thread::scope(|scope| {
        for t in 0..THREADS as u64 {
            let (barrier, sender) = (&barrier, sender.clone());
            scope.spawn(move || {
                let mut rng = common::XorShift::new(seed * 100 + t + 1);
                let mut blocks: Vec<Raw> = (0..BLOCKS as u64)
                    .map(|i| {
                        let size = rng.log_size(8, 300_000);
                        Raw::new(&Counted, layout(size, 16), seed * 10_000 + t * 1000 + i)
                    })
                    .collect();
                // Every thread holds its heap now.
                barrier.wait();
                let handed = blocks.split_off(BLOCKS / 2);
                for block in blocks {
                    block.check_and_free(&Counted, "freed by its thread");
                }
                sender.send(handed).unwrap();
            });
        }
    });
    drop(sender);
    for block in receiver.iter().flatten() {
        block.check_and_free(&Counted, "freed by another thread after its thread exited");
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "the initial-exec slot is assembly; Miri gets the thread_local! slot"
)]
fn every_live_thread_has_its_own_heap_and_gives_it_back() {
    let heaps = || Counted.statistics().unwrap().heaps;
    let before = heaps();
    round(1);
    let after_first = heaps();
    // A slot shared between threads would have given them one heap between them.
    assert!(
        after_first - before >= THREADS,
        "{THREADS} live threads made {} heaps",
        after_first - before
    );
    // The first round's threads gave their heaps back at exit (the slot was still
    // readable from their exit hook): the second round reuses them.
    round(2);
    assert_eq!(
        heaps(),
        after_first,
        "the exited threads' heaps were not reused"
    );
    assert_eq!(Counted.statistics().unwrap().live, 0, "blocks left live");
}

thread_local! {
    /// A thread-local with a destructor that allocates through the global allocator.
    static LATE: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

#[test]
#[cfg_attr(
    miri,
    ignore = "the initial-exec slot is assembly; Miri gets the thread_local! slot"
)]
fn thread_local_destructors_allocate_through_the_slot() {
    let (sender, receiver) = mpsc::channel::<String>();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let sender = sender.clone();
            thread::spawn(move || {
                struct SendOnDrop(mpsc::Sender<String>, usize);
                impl Drop for SendOnDrop {
                    fn drop(&mut self) {
                        // Runs during thread teardown: allocates, fills, hands over.
                        let text = format!("{}:{}", self.1, "x".repeat(10_000 + self.1));
                        let _ = self.0.send(text);
                    }
                }
                thread_local! {
                    static GUARD: RefCell<Option<SendOnDrop>> = const { RefCell::new(None) };
                }
                GUARD.with(|g| *g.borrow_mut() = Some(SendOnDrop(sender, t)));
                LATE.with(|late| late.borrow_mut().push("early".repeat(100 + t)));
            })
        })
        .collect();
    drop(sender);
    for thread in threads {
        thread.join().unwrap();
    }
    let mut texts: Vec<String> = receiver.iter().collect();
    texts.sort();
    assert_eq!(texts.len(), THREADS);
    for (t, text) in texts.iter().enumerate() {
        assert_eq!(*text, format!("{t}:{}", "x".repeat(10_000 + t)));
    }
}

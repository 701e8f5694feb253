//! The lock-free list of blocks other threads freed into a heap.
//!
//! Any thread may push a block; only the heap's user (its thread, or whoever holds the
//! orphan lock) takes them, and always the whole list at once with one `swap`. Since
//! nothing is ever popped singly there is no ABA problem: a push's compare-exchange only
//! has to see the head it linked its block to.
//!
//! Under `--cfg loom` the atomics are `loom`'s (see `sync.rs`) and the tests at the end
//! of this file model-check the list and the orphan hand-off protocol.

use crate::block::Block;
use crate::sync::{AtomicPtr, Ordering};
use core::ptr;

/// A multi-producer, take-all list of free blocks, linked through their first word.
pub(crate) struct DeferredList {
    head: AtomicPtr<Block>,
}

impl DeferredList {
    /// An empty list.
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        DeferredList {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// An empty list (`loom`'s atomics have no `const` constructor).
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        DeferredList {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Pushes `block` (a CAS loop).
    ///
    /// The successful exchange is `SeqCst`: it pairs with `Heap::orphan`, which stores the
    /// heap's `orphaned` flag (`SeqCst`) and fences (`SeqCst`: [`DeferredList::take_all`]
    /// is only `Acquire`) before its last take, while `api::free_remote` loads the flag
    /// (`SeqCst`) after this push — so either the pusher sees the flag or the orphaning
    /// thread's take sees the block (model-checked below). It also releases the block's
    /// link and contents to the thread that takes it.
    ///
    /// # Safety
    /// `block` is valid for writing one pointer at its start, is not on any list, and is
    /// not used by the caller after the push.
    #[inline]
    pub(crate) unsafe fn push(&self, block: *mut Block) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the block is being freed; its first word becomes the link.
            unsafe { (*block).next = head };
            match self
                .head
                .compare_exchange_weak(head, block, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(current) => head = current,
            }
        }
    }

    /// Takes every block pushed so far, as a null-terminated list linked through
    /// [`Block::next`], leaving the list empty. Acquire: pairs with the pushes' release,
    /// so the links (and everything the pushers wrote before pushing) are visible.
    #[inline]
    pub(crate) fn take_all(&self) -> *mut Block {
        self.head.swap(ptr::null_mut(), Ordering::Acquire)
    }

    /// Whether the list looked empty (a relaxed hint: a push may land right after).
    #[inline]
    pub(crate) fn is_empty_relaxed(&self) -> bool {
        self.head.load(Ordering::Relaxed).is_null()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn push_then_take_all_is_lifo_and_empties() {
        let mut blocks: Vec<Block> = (0..3)
            .map(|_| Block {
                next: ptr::null_mut(),
            })
            .collect();
        let ptrs: Vec<*mut Block> = blocks.iter_mut().map(|b| b as *mut Block).collect();
        let list = DeferredList::new();
        assert!(list.is_empty_relaxed());
        assert!(list.take_all().is_null());
        for &p in &ptrs {
            // SAFETY: each block lives in `blocks` for the whole test and is pushed once.
            unsafe { list.push(p) };
        }
        assert!(!list.is_empty_relaxed());
        let mut got = Vec::new();
        let mut b = list.take_all();
        while !b.is_null() {
            got.push(b);
            // SAFETY: every block on the taken list is one of `blocks`.
            b = unsafe { (*b).next };
        }
        assert_eq!(got, ptrs.iter().rev().copied().collect::<Vec<_>>());
        assert!(list.is_empty_relaxed());
        assert!(list.take_all().is_null());
    }
}

/// `loom` models: `RUSTFLAGS="--cfg loom" cargo test --release --lib loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::{fence, AtomicBool};
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    /// With two pushers and the owner, unbounded models take over five minutes each.
    use crate::sync::loom_model as model;

    /// A test block: the link the list uses, then a payload tracked by `loom`, so that
    /// reading it without a happens-before edge from the pusher's write fails the model.
    #[repr(C)]
    struct TestBlock {
        link: Block,
        payload: UnsafeCell<usize>,
    }

    /// Leaks `n` blocks (freed by [`free_blocks`]), as addresses so threads can share them.
    fn new_blocks(n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                let b = Box::new(TestBlock {
                    link: Block {
                        next: ptr::null_mut(),
                    },
                    payload: UnsafeCell::new(0),
                });
                Box::into_raw(b) as usize
            })
            .collect()
    }

    fn free_blocks(blocks: &[usize]) {
        for &b in blocks {
            // SAFETY: each came from Box::into_raw in `new_blocks` and is freed once, after
            // every thread that used it was joined.
            drop(unsafe { Box::from_raw(b as *mut TestBlock) });
        }
    }

    /// Writes the block's payload (as a freeing thread writes the block) and pushes it.
    fn push_tagged(list: &DeferredList, block: usize, tag: usize) {
        let b = block as *mut TestBlock;
        // SAFETY: the block is leaked, owned by this thread until pushed.
        unsafe {
            (*b).payload.with_mut(|p| *p = tag);
            list.push(b.cast());
        }
    }

    /// Takes the whole list, reading each payload (which must be the pusher's write),
    /// and appends `(block, payload)` to `seen`.
    fn take_and_read(list: &DeferredList, seen: &mut Vec<(usize, usize)>) {
        let mut b = list.take_all();
        while !b.is_null() {
            let t = b.cast::<TestBlock>();
            // SAFETY: blocks on the list are live test blocks, handed to us by the take.
            unsafe {
                let payload = (*t).payload.with(|p| *p);
                seen.push((t as usize, payload));
                b = (*b).next;
            }
        }
    }

    /// `threads` threads push two blocks each while the owner takes the list twice; a
    /// final take after the joins. Every block is seen exactly once, with its payload.
    fn pushes_and_takes(threads: usize, bound: Option<usize>) {
        model(bound, move || {
            let list = Arc::new(DeferredList::new());
            let blocks = new_blocks(2 * threads);
            let pushers: Vec<_> = (0..threads)
                .map(|t| {
                    let list = Arc::clone(&list);
                    let mine = [blocks[2 * t], blocks[2 * t + 1]];
                    thread::spawn(move || {
                        for (i, &b) in mine.iter().enumerate() {
                            push_tagged(&list, b, 100 + 2 * t + i);
                        }
                    })
                })
                .collect();
            let mut seen = Vec::new();
            take_and_read(&list, &mut seen);
            take_and_read(&list, &mut seen);
            for p in pushers {
                p.join().unwrap();
            }
            take_and_read(&list, &mut seen);
            assert!(list.is_empty_relaxed());
            seen.sort_unstable();
            let expected: Vec<(usize, usize)> = {
                let mut e: Vec<_> = blocks
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| (b, 100 + i))
                    .collect();
                e.sort_unstable();
                e
            };
            assert_eq!(seen, expected, "a block was lost or seen twice");
            free_blocks(&blocks);
        });
    }

    #[test]
    fn loom_one_pusher_and_takes_see_every_block_once() {
        pushes_and_takes(1, None);
    }

    #[test]
    fn loom_two_pushers_and_takes_see_every_block_once() {
        pushes_and_takes(2, Some(4));
    }

    /// The orphan hand-off (`api::free_remote` against `Heap::orphan`), with their exact
    /// orderings: a remote free pushes, then loads the `orphaned` flag (`SeqCst`); the
    /// exiting thread stores the flag (`SeqCst`), fences (`SeqCst`), then takes the list.
    /// In every interleaving either the pusher sees the flag (and drains on the heap's
    /// behalf) or the take sees the block.
    ///
    /// Without the fence (`take_all` is `Acquire` only) this fails: when the take's swap
    /// comes first in the list's modification order, the pusher's CAS reads from it without
    /// synchronising and its `SeqCst` load may still read the flag as false (allowed by
    /// the C++20/Rust model, though not on x86, where every swap is a locked `xchg`), so
    /// the block waited for the heap's adoption. `loom` found that interleaving in the
    /// first version of this test.
    fn orphan_flag_or_take(fenced: bool) {
        model(None, move || {
            let list = Arc::new(DeferredList::new());
            let orphaned = Arc::new(AtomicBool::new(false));
            let blocks = new_blocks(2);
            let pushers: Vec<_> = (0..2)
                .map(|t| {
                    let list = Arc::clone(&list);
                    let orphaned = Arc::clone(&orphaned);
                    let b = blocks[t];
                    thread::spawn(move || {
                        push_tagged(&list, b, 100 + t);
                        orphaned.load(Ordering::SeqCst)
                    })
                })
                .collect();
            orphaned.store(true, Ordering::SeqCst);
            if fenced {
                fence(Ordering::SeqCst);
            }
            let mut seen = Vec::new();
            take_and_read(&list, &mut seen);
            for (t, p) in pushers.into_iter().enumerate() {
                let saw_flag = p.join().unwrap();
                let taken = seen.contains(&(blocks[t], 100 + t));
                assert!(
                    saw_flag || taken,
                    "block {t} stranded: its pusher missed the flag and the take missed it"
                );
            }
            free_blocks(&blocks);
        });
    }

    #[test]
    fn loom_orphan_flag_or_fenced_take_sees_each_push() {
        orphan_flag_or_take(true);
    }

    /// The same protocol without the fence: `loom` must find the stranded block.
    #[test]
    #[should_panic(expected = "stranded")]
    fn loom_orphan_without_fence_strands_a_push() {
        orphan_flag_or_take(false);
    }

    /// The whole orphan hand-off as the allocator runs it. Remote frees push, load the
    /// flag and, seeing it, run `Heap::drain_orphan`: claim the heap's `draining` flag (or
    /// leave it to the thread that holds it), drain under the orphan lock while the heap is
    /// orphaned and its list non-empty, drop the flag, fence, and look again. The exiting
    /// thread takes the orphan lock, sets `orphaned`, fences and drains (`Heap::orphan`).
    /// Every block is collected exactly once, with the contents its pusher wrote, and the
    /// heap's state (a `loom` cell) is only touched by one drainer at a time. With `strict`,
    /// also: once the pushers and the exiting thread are done, no block is left on the
    /// list, so none waits for the heap's adoption.
    ///
    /// `strict` holds for one pusher. With two it is beyond `loom`: one pusher drains and
    /// its second look, after `draining.store(false)` and the fence, must see the other's
    /// push, because that pusher's CAS and `draining` swap (which read `true`) precede the
    /// store in the `SeqCst` total order, and a `SeqCst` fence before a load orders it after
    /// every `SeqCst` operation the load could miss (C++20 [atomics.order] p4). `loom`
    /// models `SeqCst` loads, stores and read-modify-writes as acquire/release only (its
    /// `Set::seq_cst` is a no-op, by its own comment "may fail to model correct code") and
    /// orders only fences totally, so it reports exactly that execution: the drainer's
    /// second look empty, the other pusher gone ("left to drainer"), one block on the list.
    /// `loom_orphan_hand_off_two_pushers_leave_nothing_queued` (ignored) shows it.
    fn orphan_hand_off(np: usize, bound: Option<usize>, strict: bool) {
        use crate::lock::SpinLock;

        /// What drainers share: the collected blocks, in a `loom` cell so unsynchronised
        /// use of the heap fails the model.
        struct Collected(UnsafeCell<Vec<(usize, usize)>>);
        // SAFETY: only used under the orphan lock or by the joined main thread.
        unsafe impl Sync for Collected {}

        fn drain(list: &DeferredList, collected: &Collected) {
            // SAFETY: called by one drainer at a time; loom checks that claim.
            collected
                .0
                .with_mut(|v| take_and_read(list, unsafe { &mut *v }));
        }

        model(bound, move || {
            let list = Arc::new(DeferredList::new());
            let orphaned = Arc::new(AtomicBool::new(false));
            let draining = Arc::new(AtomicBool::new(false));
            let orphans = Arc::new(SpinLock::new(()));
            let collected = Arc::new(Collected(UnsafeCell::new(Vec::new())));
            let blocks = new_blocks(np);
            let pushers: Vec<_> = (0..np)
                .map(|t| {
                    let (list, orphaned) = (Arc::clone(&list), Arc::clone(&orphaned));
                    let (draining, orphans) = (Arc::clone(&draining), Arc::clone(&orphans));
                    let collected = Arc::clone(&collected);
                    let b = blocks[t];
                    thread::spawn(move || {
                        push_tagged(&list, b, 100 + t);
                        if !orphaned.load(Ordering::SeqCst) {
                            return;
                        }
                        // `Heap::drain_orphan`.
                        loop {
                            if draining.swap(true, Ordering::SeqCst) {
                                return;
                            }
                            {
                                let _g = orphans.lock();
                                while orphaned.load(Ordering::Relaxed) && !list.is_empty_relaxed() {
                                    drain(&list, &collected);
                                }
                            }
                            draining.store(false, Ordering::SeqCst);
                            fence(Ordering::SeqCst);
                            if !orphaned.load(Ordering::Relaxed) || list.is_empty_relaxed() {
                                return;
                            }
                        }
                    })
                })
                .collect();
            {
                // `Heap::orphan`.
                let _g = orphans.lock();
                orphaned.store(true, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                drain(&list, &collected);
            }
            for p in pushers {
                p.join().unwrap();
            }
            assert!(
                !strict || list.is_empty_relaxed(),
                "a remote free was left on the orphaned heap until its adoption"
            );
            {
                // Adoption, then the new owner's first refill.
                let _g = orphans.lock();
                orphaned.store(false, Ordering::Relaxed);
                drain(&list, &collected);
            }
            // SAFETY: every other thread was joined.
            let mut seen = collected.0.with(|v| unsafe { (*v).clone() });
            seen.sort_unstable();
            let mut expected: Vec<_> = (0..np).map(|t| (blocks[t], 100 + t)).collect();
            expected.sort_unstable();
            assert_eq!(seen, expected, "a block was lost or collected twice");
            free_blocks(&blocks);
        });
    }

    #[test]
    fn loom_orphan_hand_off_one_pusher_leaves_nothing_queued() {
        orphan_hand_off(1, None, true);
    }

    #[test]
    fn loom_orphan_hand_off_two_pushers_lose_no_block() {
        orphan_hand_off(2, Some(4), false);
    }

    /// A false positive of `loom`'s `SeqCst` model; see [`orphan_hand_off`].
    #[test]
    #[ignore = "loom models SeqCst operations as AcqRel: false positive, see orphan_hand_off"]
    fn loom_orphan_hand_off_two_pushers_leave_nothing_queued() {
        orphan_hand_off(2, Some(4), true);
    }
}

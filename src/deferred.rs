//! The lock-free list of blocks other threads freed into a heap.
//!
//! Any thread may push a block; only the heap's user (its thread, or whoever holds the
//! orphan lock) takes them, and always the whole list at once with one `swap`. Since
//! nothing is ever popped singly there is no ABA problem: a push's compare-exchange only
//! has to see the head it linked its block to.
//!
//! Under `--cfg loom` the atomics are `loom`'s (see `sync.rs`) and the tests at the end
//! of this file model-check the list and the orphan hand-off protocol.

use crate::span::Block;
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
    /// heap's `orphaned` flag (`SeqCst`) before its last [`DeferredList::take_all`], while
    /// `api::free_remote` loads the flag (`SeqCst`) after this push — so either the pusher
    /// sees the flag or the orphaning thread's take sees the block. It also releases the
    /// block's link and contents to the thread that takes it.
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
    use crate::sync::AtomicBool;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

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

    /// Two threads push two blocks each while the owner takes the list twice; a final take
    /// after the joins. Every block is seen exactly once, with its payload.
    #[test]
    fn loom_concurrent_pushes_and_takes_see_every_block_once() {
        loom::model(|| {
            let list = Arc::new(DeferredList::new());
            let blocks = new_blocks(4);
            let pushers: Vec<_> = (0..2)
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

    /// The orphan hand-off (`api::free_remote` against `Heap::orphan`), with their exact
    /// orderings: a remote free pushes, then loads the `orphaned` flag (`SeqCst`); the
    /// exiting thread stores the flag (`SeqCst`), then takes the list. In every
    /// interleaving either the pusher sees the flag (and would drain on the heap's behalf)
    /// or the take sees the block: no block is stranded on an orphaned heap.
    #[test]
    fn loom_orphan_flag_or_take_sees_each_push() {
        loom::model(|| {
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
}

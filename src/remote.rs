//! A span's remote-free list: blocks other threads freed into a span, waiting for the
//! owner.
//!
//! The whole list is one 64-bit word: the head and tail as 16-byte offsets from the span,
//! the block count, and the [`NOTIFY`](RemoteList::arm) flag. A remote free is one
//! compare-exchange on it; the owner takes every waiting block with one RMW and splices
//! them onto the span's free list through the tail, without touching the blocks in between
//! (an earlier per-heap list made the owner walk every block, one cache miss each: 14 % of
//! the time at 8 threads in `rpbench` std1).
//!
//! Offsets fit 16 bits because spans are at most 256 KiB (`MAX_SPAN_SIZE`) and blocks sit
//! at 16-byte multiples; counts fit because a span holds at most 16 376 blocks.
//!
//! The flag is how a span in none of the owner's lists (a full span) gets back into use,
//! and how a partial span that other threads empty gets released: the owner *arms* the
//! span ([`RemoteList::arm`], [`RemoteList::watch`]), and the one remote free whose
//! exchange clears the flag must send the span to the owner heap as a notice. Nobody else
//! clears it except the owner's [`RemoteList::disarm`], which tells the owner whether it
//! beat that freer; the owner arms again only after the notice arrived, so a span is on a
//! notice list at most once.
//!
//! Under `--cfg loom` the atomics are `loom`'s and the tests at the end model-check the
//! list and the flag hand-off.
//!
//! Over half of this file is its unit tests and `loom` models (the protocol is the
//! allocator's subtlest; its models sit beside it).

use crate::block::Block;
use crate::sync::{AtomicU64, Ordering};
use core::ptr;

/// Bits per offset or count field.
const FIELD_BITS: u32 = 16;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
/// Offsets are in units of this many bytes (blocks sit at multiples of it).
const UNIT: usize = 16;
/// Set by the owner: the next remote free must deliver the span as a notice.
const NOTIFY: u64 = 1 << (3 * FIELD_BITS);

/// The remote-free word of one span (see the module documentation).
pub(crate) struct RemoteList {
    word: AtomicU64,
}

/// Blocks taken off a [`RemoteList`]: a null-terminated chain from `head` to `tail`.
pub(crate) struct Taken {
    /// First block (null when `count` is 0).
    pub head: *mut Block,
    /// Last block, whose link is null (null when `count` is 0).
    pub tail: *mut Block,
    /// Blocks on the chain.
    pub count: u32,
}

impl RemoteList {
    /// An empty, unarmed list (spans reset theirs in place; this is for the tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) const fn new() -> Self {
        RemoteList {
            word: AtomicU64::new(0),
        }
    }

    /// An empty, unarmed list (`loom`'s atomics have no `const` constructor).
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        RemoteList {
            word: AtomicU64::new(0),
        }
    }

    /// Whether blocks are waiting (a relaxed hint for the owner's refill path).
    #[inline(always)]
    pub(crate) fn has_blocks(&self) -> bool {
        self.word.load(Ordering::Relaxed) & (FIELD_MASK << (2 * FIELD_BITS)) != 0
    }

    /// Whether the list is empty and unarmed, as a span must be when it is released.
    pub(crate) fn is_clear(&self) -> bool {
        self.word.load(Ordering::Relaxed) == 0
    }

    /// Pushes `block`, which lies at a 16-byte multiple less than 1 MiB past `base`.
    /// Returns true if the push took the notify flag: the caller must then deliver the
    /// span as a notice. Release: the block's link and contents reach the owner's take.
    /// Acquire too: a push that takes the flag sees everything the owner did before it
    /// armed or watched the span (its reads of the span's notice link from the previous
    /// notice), before the caller writes that link. (An acquire fence after a successful
    /// flag-taking push did the same, but ThreadSanitizer does not model fences and
    /// reported the link write as a race; on x86-64 both cost nothing.)
    ///
    /// # Safety
    /// `block` is a block the caller gives up (its first word becomes the link), inside
    /// the span at `base` that owns this list.
    #[cfg(test)]
    #[inline]
    pub(crate) unsafe fn push(&self, base: *mut u8, block: *mut Block) -> bool {
        // SAFETY: the same contract as this function's.
        unsafe { self.push_entering(base, block, || {}, || {}) }
    }

    /// A push (`push`, a test-only wrapper), calling `enter` once before the first exchange that could
    /// take the notify flag (one from a word with the flag set), and `leave` if it called
    /// `enter` but the push then did not take the flag: a caller that must not be caught
    /// between taking the flag and delivering the notice (by `fork`) marks itself there,
    /// and leaves once the notice is delivered. True if the push took the flag.
    ///
    /// # Safety
    /// `block` is a block the caller gives up (its first word becomes the link), inside
    /// the span at `base` that owns this list.
    #[inline]
    pub(crate) unsafe fn push_entering(
        &self,
        base: *mut u8,
        block: *mut Block,
        enter: impl Fn(),
        leave: impl Fn(),
    ) -> bool {
        let index = ((block as usize - base as usize) / UNIT) as u64;
        debug_assert!(index <= FIELD_MASK && (block as usize - base as usize).is_multiple_of(UNIT));
        let mut old = self.word.load(Ordering::Relaxed);
        loop {
            if old & NOTIFY != 0 {
                // SAFETY: `block` is the caller's, inside the span at `base` (the contract);
                // `index` is its offset field, computed above.
                return unsafe { self.push_notifying(base, block, index, enter, leave) };
            }
            // SAFETY: the block is ours until the exchange publishes it.
            let new = unsafe { Self::link(base, block, index, old) };
            // Release only: an exchange from a word without the flag takes no flag.
            match self
                .word
                .compare_exchange_weak(old, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return false,
                Err(current) => old = current,
            }
        }
    }

    /// The rest of [`RemoteList::push_entering`] once the flag was seen set (the first
    /// free into an armed span: rare).
    ///
    /// # Safety
    /// As [`RemoteList::push_entering`]; `index` is the block's offset field.
    #[cold]
    #[inline(never)]
    unsafe fn push_notifying(
        &self,
        base: *mut u8,
        block: *mut Block,
        index: u64,
        enter: impl Fn(),
        leave: impl Fn(),
    ) -> bool {
        enter();
        let mut old = self.word.load(Ordering::Relaxed);
        loop {
            // SAFETY: the block is ours until the exchange publishes it.
            let new = unsafe { Self::link(base, block, index, old) };
            match self
                .word
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    let took = old & NOTIFY != 0;
                    if !took {
                        leave();
                    }
                    return took;
                }
                Err(current) => old = current,
            }
        }
    }

    /// Links `block` (offset field `index`) in front of the chain of the word `old` and
    /// returns the word after the push (the flag cleared).
    ///
    /// # Safety
    /// `block` is the caller's, inside the span at `base`.
    #[inline(always)]
    unsafe fn link(base: *mut u8, block: *mut Block, index: u64, old: u64) -> u64 {
        let count = (old >> (2 * FIELD_BITS)) & FIELD_MASK;
        let (next, tail) = if count == 0 {
            (ptr::null_mut(), index)
        } else {
            (at(base, old), (old >> FIELD_BITS) & FIELD_MASK)
        };
        // SAFETY: `block` is the caller's until the exchange publishes it (the contract).
        unsafe { (*block).next = next };
        index | tail << FIELD_BITS | (count + 1) << (2 * FIELD_BITS)
    }

    /// Takes every waiting block, leaving the notify flag as it was (a watched partial
    /// span stays watched). Acquire: pairs with the pushes. Only the owner takes.
    #[inline]
    pub(crate) fn take(&self, base: *mut u8) -> Taken {
        let old = self.word.fetch_and(NOTIFY, Ordering::Acquire);
        let count = ((old >> (2 * FIELD_BITS)) & FIELD_MASK) as u32;
        if count == 0 {
            return Taken {
                head: ptr::null_mut(),
                tail: ptr::null_mut(),
                count: 0,
            };
        }
        Taken {
            head: at(base, old),
            tail: at(base, old >> FIELD_BITS),
            count,
        }
    }

    /// Blocks waiting (relaxed).
    #[inline]
    pub(crate) fn pending(&self) -> u32 {
        ((self.word.load(Ordering::Relaxed) >> (2 * FIELD_BITS)) & FIELD_MASK) as u32
    }

    /// Blocks waiting, read with acquire: it synchronises with the owner's arming (a
    /// release) through the pushes that followed it, so a thread that is not the owner sees
    /// what the owner wrote to the span before arming it (`Heap::sweep_notices`).
    #[inline]
    pub(crate) fn pending_acquire(&self) -> u32 {
        ((self.word.load(Ordering::Acquire) >> (2 * FIELD_BITS)) & FIELD_MASK) as u32
    }

    /// Sets the notify flag if no block is waiting; false (nothing set) if blocks are
    /// waiting, which the caller takes instead: a full span must not keep blocks that no
    /// later free will report. The owner calls it on an unarmed span only.
    ///
    /// Release, like [`RemoteList::watch`]: the freer whose push takes the flag acquires
    /// (the push is `AcqRel`) before it writes the span's notice link, so the owner's
    /// reads of that link from the previous notice come before the write.
    #[inline]
    pub(crate) fn arm(&self) -> bool {
        self.word
            .compare_exchange(0, NOTIFY, Ordering::Release, Ordering::Relaxed)
            .is_ok()
    }

    /// Sets the notify flag on a span that may keep blocks waiting (a partial span, which
    /// the owner reaches through its partial list anyway): the flag is only there so that
    /// the span is released once every block is back. False, and nothing set, if all
    /// `outstanding` blocks the owner handed out are already waiting: no free will come,
    /// and the caller takes them and releases the span. The owner calls it on an unarmed
    /// span only.
    #[inline]
    pub(crate) fn watch(&self, outstanding: u32) -> bool {
        let mut old = self.word.load(Ordering::Relaxed);
        loop {
            if ((old >> (2 * FIELD_BITS)) & FIELD_MASK) as u32 == outstanding {
                return false;
            }
            match self.word.compare_exchange_weak(
                old,
                old | NOTIFY,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => old = current,
            }
        }
    }

    /// Clears the notify flag of an armed span. True if it was still set (no notice will
    /// come); false if a remote free took it (a notice is, or is about to be, on the
    /// owner's list).
    #[inline]
    pub(crate) fn disarm(&self) -> bool {
        self.word.fetch_and(!NOTIFY, Ordering::Relaxed) & NOTIFY != 0
    }

    /// Empties and unarms the list of a span that no other thread can reach.
    pub(crate) fn reset(&self) {
        self.word.store(0, Ordering::Relaxed);
    }
}

/// The block at the offset in the low field of `field`, from `base`.
#[inline(always)]
fn at(base: *mut u8, field: u64) -> *mut Block {
    base.wrapping_add((field & FIELD_MASK) as usize * UNIT)
        .cast()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[repr(C, align(16))]
    struct Area([[usize; 2]; 8]);

    #[test]
    fn push_take_keeps_order_tail_and_count() {
        let mut area = Area([[0; 2]; 8]);
        let base = area.0.as_mut_ptr().cast::<u8>();
        let block = |i: usize| base.wrapping_add(i * UNIT).cast::<Block>();
        let list = RemoteList::new();
        assert!(list.is_clear() && !list.has_blocks());
        assert_eq!(list.take(base).count, 0);
        for i in [3, 0, 7] {
            // SAFETY: blocks of `area`, each pushed once.
            assert!(!unsafe { list.push(base, block(i)) });
        }
        assert!(list.has_blocks());
        let t = list.take(base);
        assert_eq!((t.head, t.tail, t.count), (block(7), block(3), 3));
        // SAFETY: the chain's blocks live in `area`.
        unsafe {
            assert_eq!((*block(7)).next, block(0));
            assert_eq!((*block(0)).next, block(3));
            assert!((*block(3)).next.is_null());
        }
        assert!(list.is_clear());
    }

    #[test]
    fn notify_is_taken_by_exactly_one_push_or_the_disarm() {
        let mut area = Area([[0; 2]; 8]);
        let base = area.0.as_mut_ptr().cast::<u8>();
        let block = |i: usize| base.wrapping_add(i * UNIT).cast::<Block>();
        let list = RemoteList::new();
        assert!(list.arm());
        // SAFETY: blocks of `area`, each pushed once.
        unsafe {
            assert!(list.push(base, block(1)), "the first push takes the flag");
            assert!(!list.push(base, block(2)), "and only the first");
        }
        assert!(!list.disarm(), "taken: the owner must wait for the notice");
        assert!(!list.arm(), "blocks are waiting");
        assert_eq!(list.take(base).count, 2);
        assert!(
            list.arm() && list.disarm(),
            "armed and not taken: disarm wins"
        );
        assert!(list.is_clear());
        assert!(list.arm());
        assert_eq!(list.take(base).count, 0);
        assert!(!list.is_clear(), "a take keeps the flag");
    }

    #[test]
    fn watch_keeps_waiting_blocks_and_declines_when_all_are_back() {
        let mut area = Area([[0; 2]; 8]);
        let base = area.0.as_mut_ptr().cast::<u8>();
        let block = |i: usize| base.wrapping_add(i * UNIT).cast::<Block>();
        let list = RemoteList::new();
        // SAFETY: blocks of `area`, each pushed once.
        unsafe { list.push(base, block(1)) };
        assert!(
            !list.watch(1),
            "the only outstanding block is back: nothing to wait for"
        );
        assert!(list.watch(3), "two blocks are still out");
        assert_eq!(list.pending(), 1, "watching leaves the waiting block");
        // SAFETY: as above.
        assert!(
            unsafe { list.push(base, block(2)) },
            "the next free takes the flag"
        );
        let t = list.take(base);
        assert_eq!((t.head, t.tail, t.count), (block(2), block(1), 2));
        assert!(list.is_clear());
    }
}

/// `loom` models: `RUSTFLAGS="--cfg loom" cargo test --release --lib loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::deferred::DeferredList;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    /// A test block: the link, then a payload `loom` tracks, so reading it without a
    /// happens-before edge from the freeing thread's write fails the model.
    #[repr(C, align(16))]
    struct TestBlock {
        link: Block,
        payload: UnsafeCell<usize>,
    }

    /// A span stand-in: a notice link and four blocks at 16-byte multiples from its base.
    #[repr(C, align(16))]
    struct TestSpan {
        notice_link: Block,
        blocks: [TestBlock; 4],
    }

    /// Shares a leaked `TestSpan` between modelled threads.
    #[derive(Clone, Copy)]
    struct SpanRef(usize);
    // SAFETY: the span outlives every thread (freed after the joins); its cells are
    // checked by loom.
    unsafe impl Send for SpanRef {}

    impl SpanRef {
        fn new() -> Self {
            let span = Box::new(TestSpan {
                notice_link: Block {
                    next: ptr::null_mut(),
                },
                blocks: core::array::from_fn(|_| TestBlock {
                    link: Block {
                        next: ptr::null_mut(),
                    },
                    payload: UnsafeCell::new(0),
                }),
            });
            SpanRef(Box::into_raw(span) as usize)
        }
        fn base(self) -> *mut u8 {
            self.0 as *mut u8
        }
        fn block(self, i: usize) -> *mut TestBlock {
            // SAFETY: the span is live (see `Send`).
            unsafe { &raw mut (*(self.0 as *mut TestSpan)).blocks[i] }
        }
        fn free(self) {
            // SAFETY: from Box::into_raw in `new`, freed once after the joins.
            drop(unsafe { Box::from_raw(self.0 as *mut TestSpan) });
        }
    }

    /// At most 3 preemptions per execution: unbounded, the owner's wait loops take over
    /// five minutes.
    fn model(f: impl Fn() + Sync + Send + 'static) {
        crate::sync::loom_model(Some(3), f);
    }

    /// A remote free as `api::free_remote` does it: write the block, push it, and deliver
    /// the notice if the push took the flag. Returns whether it did.
    fn remote_free(list: &RemoteList, notices: &DeferredList, span: SpanRef, i: usize) -> bool {
        let b = span.block(i);
        // SAFETY: the block is this thread's until pushed; the notice link is ours to
        // write once the push took the flag.
        unsafe {
            (*b).payload.with_mut(|p| *p = 100 + i);
            let took = list.push(span.base(), b.cast());
            if took {
                notices.push(span.base().cast());
            }
            took
        }
    }

    /// Takes the list and reads every block's payload (which must be its writer's).
    fn take_and_read(list: &RemoteList, span: SpanRef, seen: &mut Vec<usize>) {
        let t = list.take(span.base());
        let mut b = t.head;
        let mut n = 0;
        let mut last = ptr::null_mut();
        while !b.is_null() {
            // SAFETY: taken blocks are the span's, handed over by the acquire.
            unsafe {
                seen.push(b.cast::<TestBlock>().as_ref().unwrap().payload.with(|p| *p));
                last = b;
                b = (*b).next;
            }
            n += 1;
        }
        assert_eq!(n, t.count, "count and chain disagree");
        assert_eq!(last, t.tail, "tail is not the chain's end");
    }

    /// Two freers push two blocks each while the owner takes; a last take after the
    /// joins. Every block is seen once, with its payload, and each chain's count and tail
    /// match it.
    #[test]
    fn loom_remote_pushes_and_takes_see_every_block_once() {
        model(|| {
            let span = SpanRef::new();
            let list = Arc::new(RemoteList::new());
            let notices = Arc::new(DeferredList::new());
            let freers: Vec<_> = (0..2)
                .map(|t| {
                    let (list, notices) = (Arc::clone(&list), Arc::clone(&notices));
                    thread::spawn(move || {
                        remote_free(&list, &notices, span, 2 * t);
                        remote_free(&list, &notices, span, 2 * t + 1);
                    })
                })
                .collect();
            let mut seen = Vec::new();
            take_and_read(&list, span, &mut seen);
            for f in freers {
                f.join().unwrap();
            }
            take_and_read(&list, span, &mut seen);
            seen.sort_unstable();
            assert_eq!(
                seen,
                vec![100, 101, 102, 103],
                "a block was lost or seen twice"
            );
            assert!(
                notices.take_all().is_null(),
                "an unarmed span sent a notice"
            );
            span.free();
        });
    }

    /// The flag hand-off against the owner giving the span up (`Heap::release_small`):
    /// the owner arms the span, two freers free a block each, and the owner, having
    /// taken both blocks back, disarms. Exactly one of them wins the flag: the disarm (no
    /// notice is ever sent) or one freer (whose notice is on the list once the freers are
    /// done, exactly once) — so the owner never releases a span a notice will name.
    #[test]
    fn loom_notify_goes_to_one_freer_or_the_disarm() {
        model(|| {
            let span = SpanRef::new();
            let list = Arc::new(RemoteList::new());
            let notices = Arc::new(DeferredList::new());
            assert!(list.arm());
            let freers: Vec<_> = (0..2)
                .map(|t| {
                    let (list, notices) = (Arc::clone(&list), Arc::clone(&notices));
                    thread::spawn(move || remote_free(&list, &notices, span, t))
                })
                .collect();
            let mut seen = Vec::new();
            while seen.len() < 2 {
                take_and_read(&list, span, &mut seen);
                thread::yield_now();
            }
            let disarmed = list.disarm();
            let took: usize = freers.into_iter().map(|f| f.join().unwrap() as usize).sum();
            assert_eq!(
                took + disarmed as usize,
                1,
                "the flag went to {took} freers, disarm {disarmed}"
            );
            let mut notice = notices.take_all();
            let mut n = 0;
            while !notice.is_null() {
                assert_eq!(notice.cast::<u8>(), span.base());
                // SAFETY: the notice link is the span's, handed over by the acquire.
                notice = unsafe { (*notice).next };
                n += 1;
            }
            assert_eq!(n, took, "a taken flag must give exactly one notice");
            assert!(list.is_clear());
            span.free();
        });
    }

    /// Re-arming after a notice (`Heap::settle` after `Heap::take_notices`): the owner
    /// reads the span's notice link (here a `loom` cell standing for it), then arms again;
    /// the next freer that takes the flag writes the link. The owner's read must come
    /// before that write: `arm` releases, and the freer's push acquires. With either one
    /// `Relaxed`, `loom` reports the concurrent access.
    #[test]
    fn loom_rearmed_span_orders_the_link_read_before_the_next_notice() {
        model(|| {
            let span = SpanRef::new();
            let list = Arc::new(RemoteList::new());
            let notices = Arc::new(DeferredList::new());
            let link = Arc::new(UnsafeCell::new(0usize));
            assert!(list.arm());
            let freer = {
                let (list, notices, link) =
                    (Arc::clone(&list), Arc::clone(&notices), Arc::clone(&link));
                thread::spawn(move || {
                    for i in 0..2 {
                        // SAFETY: each block is pushed once; the link is ours to write
                        // once the push took the flag.
                        unsafe {
                            if list.push(span.base(), span.block(i).cast()) {
                                link.with_mut(|p| *p = 1 + i);
                                notices.push(span.base().cast());
                            }
                        }
                    }
                })
            };
            // The first free always takes the flag: wait for its notice.
            while notices.take_all().is_null() {
                thread::yield_now();
            }
            // SAFETY: loom checks this read against the freer's writes.
            assert_ne!(link.with(|p| unsafe { *p }), 0);
            loop {
                let _ = list.take(span.base());
                if list.arm() {
                    break;
                }
            }
            freer.join().unwrap();
            span.free();
        });
    }
}

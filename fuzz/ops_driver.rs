//! The operation-sequence driver shared by the `ops` fuzz target (`fuzz/fuzz_targets/ops.rs`)
//! and the corpus replay test (`tests/fuzz_corpus.rs`), both of which include this file with
//! `#[path]`.
//!
//! [`run`] decodes the input bytes into up to [`MAX_OPS`] operations — `alloc`,
//! `alloc_zeroed`, `realloc` and `dealloc` with sizes from 1 B to 4 MiB and alignments from
//! 1 B to 1 MiB, on two `define_rpmalloc!` configurations, some of them run on a short-lived
//! second thread (remote frees and reallocs, blocks that outlive the thread that allocated
//! them) — executes them and checks the allocator against a shadow model: every block is
//! aligned, `alloc_zeroed` blocks read as zero, no two live blocks overlap, contents survive
//! other operations and `realloc`. Any mismatch panics, which is what the fuzzer reports.
//!
//! Input format (bytes; an input ending mid-operation stops there): one tag byte per
//! operation, `tag % 10` selecting it, then its arguments —
//!
//! | tag % 10 | operation | arguments |
//! |---|---|---|
//! | 0–3 | allocate | flags (bit 0: lean configuration, bit 1: zeroed), size, alignment |
//! | 4 | `realloc` | index, size |
//! | 5, 6 | `dealloc` | index |
//! | 7 | `dealloc` on another thread | index |
//! | 8 | allocate 1–4 blocks on a thread that then exits | flags (+ count in bits 2–3), size, alignment |
//! | 9 | `realloc` on another thread | index, size |
//!
//! An index picks a live block modulo their number. A size is a selector byte and three
//! value bytes (small / medium / large / huge ranges, or a power of two ± 16); an
//! alignment is one byte (mostly 1–16 B, else any power of two up to 1 MiB). Live blocks
//! are capped at [`MAX_LIVE`] and [`MAX_LIVE_BYTES`]: operations beyond the caps are
//! skipped.

use rpmalloc::define_rpmalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;

// Caches on, with small limits so spills to and refills from the global cache happen all
// the time. (With the default limits — up to 100 − k/2 cached runs of every span count k
// per thread, 8× that globally — replaying the same inputs keeps growing the caches for
// 80+ rounds: 2 GiB resident, libFuzzer's RSS limit, within a minute of fuzzing. With
// these limits resident memory stays flat at ~60 MiB.)
define_rpmalloc!(FuzzFast, <
    max_thread_span_cache: 16,
    max_thread_span_large_cache: 4,
    max_global_span_cache: 16,
    global_cache_multiplier: 1,
>);
define_rpmalloc!(FuzzLean, <
    enable_thread_cache: false,
    enable_global_cache: false,
    span_size: 4096,
    span_map_count: 3,
>);

/// Operations decoded from one input at most.
pub const MAX_OPS: usize = 256;
/// Live blocks at most; allocations beyond are skipped.
pub const MAX_LIVE: usize = 64;
/// Live bytes at most; allocations and growth beyond are skipped.
pub const MAX_LIVE_BYTES: usize = 48 << 20;
/// Largest size decoded.
pub const MAX_SIZE: usize = 4 << 20;
/// Largest alignment decoded (log2).
pub const MAX_ALIGN_LOG: u32 = 20;

/// One decoded operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `alloc` or `alloc_zeroed` on this thread.
    Alloc {
        /// The lean configuration (no caches, 4 KiB spans) instead of the default one.
        lean: bool,
        /// `alloc_zeroed`.
        zeroed: bool,
        /// Requested size.
        size: usize,
        /// Requested alignment.
        align: usize,
    },
    /// `realloc` of a live block, on this thread or another.
    Realloc {
        /// Picks the block (modulo the live count).
        index: usize,
        /// New size.
        size: usize,
        /// Run on a second, short-lived thread.
        remote: bool,
    },
    /// `dealloc` of a live block, on this thread or another.
    Free {
        /// Picks the block (modulo the live count).
        index: usize,
        /// Run on a second, short-lived thread.
        remote: bool,
    },
    /// `count` allocations on a thread that exits while the blocks stay live.
    ThreadAlloc {
        /// The lean configuration.
        lean: bool,
        /// `alloc_zeroed`.
        zeroed: bool,
        /// Blocks to allocate (1–4).
        count: usize,
        /// Requested size of each.
        size: usize,
        /// Requested alignment of each.
        align: usize,
    },
}

/// A cursor over the input bytes.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn u24(&mut self) -> Option<usize> {
        Some(
            usize::from(self.byte()?)
                | usize::from(self.byte()?) << 8
                | usize::from(self.byte()?) << 16,
        )
    }

    /// A size from 1 B to [`MAX_SIZE`], spread over the small, medium, large and huge
    /// ranges of the default configuration, with extra weight on powers of two ± 16.
    fn size(&mut self) -> Option<usize> {
        let sel = self.byte()?;
        let v = self.u24()?;
        let in_range = |lo: usize, hi: usize| lo + v % (hi - lo + 1);
        Some(match sel % 16 {
            0..=5 => in_range(1, 1024),
            6..=8 => in_range(1025, 65_536),
            9..=10 => in_range(65_537, 1 << 20),
            11 => in_range((1 << 20) + 1, MAX_SIZE),
            _ => {
                let pow = 1usize << (v % 23);
                (pow + (v >> 5) % 33).saturating_sub(16).clamp(1, MAX_SIZE)
            }
        })
    }

    /// An alignment: mostly 1–16 B, as most requests are, else 1 B to 1 MiB.
    fn align(&mut self) -> Option<usize> {
        let a = self.byte()?;
        let log = if a < 160 {
            u32::from(a) % 5
        } else {
            u32::from(a) % (MAX_ALIGN_LOG + 1)
        };
        Some(1 << log)
    }

    fn index(&mut self) -> Option<usize> {
        self.byte().map(usize::from)
    }

    fn op(&mut self) -> Option<Op> {
        let tag = self.byte()?;
        Some(match tag % 10 {
            0..=3 => {
                let flags = self.byte()?;
                Op::Alloc {
                    lean: flags & 1 != 0,
                    zeroed: flags & 2 != 0,
                    size: self.size()?,
                    align: self.align()?,
                }
            }
            4 | 9 => Op::Realloc {
                index: self.index()?,
                size: self.size()?,
                remote: tag % 10 == 9,
            },
            5..=7 => Op::Free {
                index: self.index()?,
                remote: tag % 10 == 7,
            },
            _ => {
                let flags = self.byte()?;
                Op::ThreadAlloc {
                    lean: flags & 1 != 0,
                    zeroed: flags & 2 != 0,
                    count: 1 + usize::from(flags >> 2) % 4,
                    size: self.size()?,
                    align: self.align()?,
                }
            }
        })
    }
}

/// The operations `data` decodes to (at most [`MAX_OPS`]).
pub fn decode(data: &[u8]) -> Vec<Op> {
    let mut input = Input { data };
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS {
        match input.op() {
            Some(op) => ops.push(op),
            None => break,
        }
    }
    ops
}

fn allocator(lean: bool) -> &'static dyn GlobalAlloc {
    if lean {
        &FuzzLean
    } else {
        &FuzzFast
    }
}

/// A live block of the shadow model.
#[derive(Clone, Copy, Debug)]
struct Live {
    addr: usize,
    layout: Layout,
    lean: bool,
    seed: u32,
}

/// Offsets written and checked: the first and last 64 bytes and one every 4 KiB.
fn probes(size: usize) -> impl Iterator<Item = usize> {
    let head = 0..size.min(64);
    let tail = size.saturating_sub(64).max(size.min(64))..size;
    head.chain(tail).chain((64..size).step_by(4096))
}

/// The byte the model expects at `offset` of a block written with `seed`.
fn pattern(seed: u32, offset: usize) -> u8 {
    let x = (seed as usize).wrapping_mul(0x9E37_79B9) ^ offset.wrapping_mul(31) ^ (offset >> 8);
    (x ^ (x >> 13)) as u8
}

fn write(b: &Live) {
    for o in probes(b.layout.size()) {
        // SAFETY: o < size of the live block.
        unsafe { *(b.addr as *mut u8).add(o) = pattern(b.seed, o) };
    }
}

/// Checks the probes of `b` below `upto`.
fn verify(b: &Live, upto: usize, what: &str) {
    for o in probes(b.layout.size()).filter(|&o| o < upto) {
        // SAFETY: o < size of the live block.
        let got = unsafe { *(b.addr as *const u8).add(o) };
        assert_eq!(
            got,
            pattern(b.seed, o),
            "{what}: block {:#x} {:?} (lean {}) byte {o} changed",
            b.addr,
            b.layout,
            b.lean
        );
    }
}

/// Checks the first and last 8 bytes of `b` (where free-list links would land).
fn verify_ends(b: &Live) {
    let size = b.layout.size();
    for o in (0..size.min(8)).chain(size.saturating_sub(8)..size) {
        // SAFETY: o < size of the live block.
        let got = unsafe { *(b.addr as *const u8).add(o) };
        assert_eq!(
            got,
            pattern(b.seed, o),
            "block {:#x} {:?} (lean {}) byte {o} changed by another operation",
            b.addr,
            b.layout,
            b.lean
        );
    }
}

fn assert_zeroed(p: *const u8, layout: Layout, lean: bool) {
    let size = layout.size();
    let check = |o: usize| {
        // SAFETY: o < size of the fresh block.
        let got = unsafe { *p.add(o) };
        assert_eq!(
            got, 0,
            "alloc_zeroed {layout:?} (lean {lean}) byte {o} is {got:#x}"
        );
    };
    if size <= 65_536 {
        (0..size).for_each(check);
    } else {
        probes(size).for_each(check);
    }
}

/// The shadow model: live blocks, their address ranges, and the live byte count.
#[derive(Default)]
struct Model {
    live: Vec<Live>,
    /// Start → end of every live block.
    ranges: BTreeMap<usize, usize>,
    bytes: usize,
    next_seed: u32,
}

impl Model {
    /// Records a fresh block from `alloc`/`alloc_zeroed`/`realloc`: non-null, aligned, not
    /// overlapping any live block; writes its pattern.
    fn insert(&mut self, p: *mut u8, layout: Layout, lean: bool, seed: Option<u32>) -> Live {
        assert!(!p.is_null(), "{layout:?} (lean {lean}) refused");
        let addr = p as usize;
        assert_eq!(
            addr % layout.align(),
            0,
            "{layout:?} (lean {lean}) misaligned at {addr:#x}"
        );
        let end = addr + layout.size();
        if let Some((&s, &e)) = self.ranges.range(..end).next_back() {
            assert!(
                e <= addr,
                "new block {addr:#x}..{end:#x} {layout:?} (lean {lean}) overlaps live block {s:#x}..{e:#x}"
            );
        }
        self.ranges.insert(addr, end);
        self.bytes += layout.size();
        let seed = seed.unwrap_or_else(|| {
            self.next_seed += 1;
            self.next_seed
        });
        let b = Live {
            addr,
            layout,
            lean,
            seed,
        };
        self.live.push(b);
        b
    }

    /// Takes block `index` (modulo the live count) out of the model, checking its
    /// contents first.
    fn remove(&mut self, index: usize, what: &str) -> Option<Live> {
        if self.live.is_empty() {
            return None;
        }
        let b = self.live.swap_remove(index % self.live.len());
        verify(&b, usize::MAX, what);
        self.ranges.remove(&b.addr);
        self.bytes -= b.layout.size();
        Some(b)
    }

    /// Whether `n` more blocks of `size` bytes stay within the caps.
    fn room_for(&self, n: usize, size: usize) -> bool {
        self.live.len() + n <= MAX_LIVE && self.bytes + n * size <= MAX_LIVE_BYTES
    }
}

/// Runs `f` on a second thread and waits for it (it exits before this returns).
fn on_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .expect("operation on a second thread panicked")
    })
}

fn alloc_one(lean: bool, zeroed: bool, layout: Layout) -> usize {
    let a = allocator(lean);
    // SAFETY: layouts here have a non-zero size.
    (unsafe {
        if zeroed {
            a.alloc_zeroed(layout)
        } else {
            a.alloc(layout)
        }
    }) as usize
}

/// Executes `op`, checking the allocator against the model.
fn step(model: &mut Model, op: &Op) {
    match *op {
        Op::Alloc {
            lean,
            zeroed,
            size,
            align,
        } => {
            if !model.room_for(1, size) {
                return;
            }
            let layout = Layout::from_size_align(size, align).unwrap();
            let p = alloc_one(lean, zeroed, layout) as *mut u8;
            if zeroed && !p.is_null() {
                assert_zeroed(p, layout, lean);
            }
            let b = model.insert(p, layout, lean, None);
            write(&b);
        }
        Op::ThreadAlloc {
            lean,
            zeroed,
            count,
            size,
            align,
        } => {
            let count = (1..=count).take_while(|&n| model.room_for(n, size)).count();
            if count == 0 {
                return;
            }
            let layout = Layout::from_size_align(size, align).unwrap();
            let blocks: Vec<usize> = on_thread(|| {
                (0..count)
                    .map(|_| alloc_one(lean, zeroed, layout))
                    .collect()
            });
            for p in blocks {
                let p = p as *mut u8;
                if zeroed && !p.is_null() {
                    assert_zeroed(p, layout, lean);
                }
                let b = model.insert(p, layout, lean, None);
                write(&b);
            }
        }
        Op::Free { index, remote } => {
            let Some(b) = model.remove(index, "before dealloc") else {
                return;
            };
            let free = move || {
                // SAFETY: a live block of this allocator with its layout, freed once.
                unsafe { allocator(b.lean).dealloc(b.addr as *mut u8, b.layout) }
            };
            if remote {
                on_thread(free);
            } else {
                free();
            }
        }
        Op::Realloc {
            index,
            size,
            remote,
        } => {
            if model.live.is_empty() {
                return;
            }
            let old_size = model.live[index % model.live.len()].layout.size();
            if size > old_size && model.bytes + (size - old_size) > MAX_LIVE_BYTES {
                return;
            }
            let b = model.remove(index, "before realloc").unwrap();
            let go = move || {
                // SAFETY: a live block with its layout; the new size is non-zero and, with
                // the block's alignment (at most 1 MiB), cannot overflow isize.
                (unsafe { allocator(b.lean).realloc(b.addr as *mut u8, b.layout, size) }) as usize
            };
            let p = if remote { on_thread(go) } else { go() } as *mut u8;
            let layout = Layout::from_size_align(size, b.layout.align()).unwrap();
            if !p.is_null() {
                // The kept prefix must have survived the move.
                let kept = old_size.min(size);
                for o in probes(old_size).filter(|&o| o < kept) {
                    // SAFETY: o < kept <= the new size.
                    let got = unsafe { *p.add(o) };
                    assert_eq!(
                        got,
                        pattern(b.seed, o),
                        "realloc {old_size} -> {size} {:?} (lean {}) lost byte {o}",
                        b.layout,
                        b.lean
                    );
                }
            }
            let n = model.insert(p, layout, b.lean, Some(b.seed));
            write(&n);
        }
    }
}

/// Decodes `data`, runs the operations against the model (panicking on any mismatch),
/// then checks and frees every block still live.
pub fn run(data: &[u8]) {
    let mut model = Model::default();
    for op in decode(data) {
        step(&mut model, &op);
        for b in &model.live {
            verify_ends(b);
        }
    }
    while let Some(b) = model.remove(0, "at the end") {
        // SAFETY: a live block of this allocator with its layout, freed once.
        unsafe { allocator(b.lean).dealloc(b.addr as *mut u8, b.layout) };
    }
}

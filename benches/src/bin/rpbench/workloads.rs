//! The allocation patterns of `--mode random`, `realloc` and `larson`: the threads' work,
//! the blocks they allocate and the tables of sizes and operation counts that drive them.
//! `--mode handoff` is in [`handoff`].

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};

use crate::config::{Dist, Mode, Params};
use crate::measure::{mib, phase_mark, rss, span_pages, thread_cpu_ns};

pub(crate) mod handoff;

/// The allocator under test.
type Alloc = &'static (dyn GlobalAlloc + Sync);

// ---- random sizes and operation counts ----------------------------------------------------

/// SplitMix64: seeds and a fast stream of pseudo-random numbers.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    #[inline]
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    #[inline]
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

/// A table of sizes in `[min, max]`: `even` is uniform, `linear` has a density falling
/// linearly to zero at `max` (the smaller of two uniforms), `exp` an exponential falloff
/// (rate 5 over the range, truncated at `max`).
fn size_table(p: &Params, seed: u64, len: usize) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    let span = (p.max - p.min) as f64;
    (0..len)
        .map(|_| {
            let x = match p.dist {
                Dist::Even => rng.unit(),
                Dist::Linear => rng.unit().min(rng.unit()),
                Dist::Exp => loop {
                    let x = -(1.0 - rng.unit()).ln() / 5.0;
                    if x < 1.0 {
                        break x;
                    }
                },
            };
            (p.min + (x * (span + 1.0)) as usize).min(p.max) as u32
        })
        .collect()
}

/// Per-loop operation counts as fractions of `op_count`, with table lengths that are
/// coprime so the alloc and free counts drift against each other.
pub(crate) fn op_tables(p: &Params) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng::new(p.seed ^ 0x0b5);
    let allocs = (0..311)
        .map(|_| ((0.3 + 0.7 * rng.unit()) * p.op_count as f64) as usize)
        .collect();
    let frees = (0..257)
        .map(|_| (0.8 * (0.3 + 0.7 * rng.unit()) * p.op_count as f64) as usize)
        .collect();
    (allocs, frees)
}

/// Two distinct strides coprime with `n`, so stepping through the slots visits them all
/// in scattered order.
fn scatter(n: usize) -> (usize, usize) {
    const PRIMES: [usize; 16] = [
        7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67,
    ];
    let mut it = PRIMES.iter().copied().filter(|q| !n.is_multiple_of(*q));
    let a = it.next().unwrap_or(1);
    let f = it.next().unwrap_or(1);
    (a % n.max(1), f % n.max(1))
}

// ---- blocks ------------------------------------------------------------------------------

/// A live block of the benchmark: its address and the layout it was allocated with.
#[derive(Clone, Copy)]
pub(crate) struct Block {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: a block is plain memory owned by whoever holds the `Block`.
unsafe impl Send for Block {}

const PAGE: usize = 4096;

/// Writes the first byte, one byte per page and the last byte, so the memory is committed.
#[inline]
fn touch(ptr: *mut u8, size: usize) {
    // SAFETY: ptr holds `size` bytes.
    unsafe {
        ptr.write_volatile(size as u8);
        let mut off = PAGE;
        while off < size {
            ptr.add(off).write_volatile(1);
            off += PAGE;
        }
        ptr.add(size - 1).write_volatile(1);
    }
}

#[inline]
fn alloc_block(a: Alloc, size: usize, salt: usize) -> Block {
    // Small blocks alternate between 8- and 16-byte alignment as the C benchmark's do.
    let align = if size < PAGE && salt.is_multiple_of(3) {
        8
    } else {
        16
    };
    let layout = Layout::from_size_align(size, align).expect("valid layout");
    // SAFETY: non-zero size.
    let ptr = unsafe { a.alloc(layout) };
    if ptr.is_null() {
        eprintln!("rpbench: allocation of {size} bytes failed");
        std::process::abort();
    }
    touch(ptr, size);
    Block { ptr, layout }
}

#[inline]
pub(crate) fn free_block(a: Alloc, b: Block) {
    // SAFETY: allocated by `a` with this layout, freed once.
    unsafe { a.dealloc(b.ptr, b.layout) };
}

// ---- the workers -------------------------------------------------------------------------

pub(crate) struct Shared {
    pub(crate) p: Params,
    pub(crate) alloc: Alloc,
    pub(crate) inbox: Vec<Mutex<Vec<Vec<Block>>>>,
    pub(crate) has_mail: Vec<AtomicBool>,
    pub(crate) barrier: Barrier,
    pub(crate) loops_done: AtomicU64,
    /// `--phase-rss`: bytes the threads hold in their slots at a pass's end.
    pub(crate) held_bytes: AtomicU64,
    pub(crate) alloc_ops: Vec<usize>,
    pub(crate) free_ops: Vec<usize>,
}

#[derive(Default, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) ops: u64,
    pub(crate) cpu_ns: u64,
}

impl Shared {
    /// Frees every block other threads handed to thread `me`.
    fn drain(&self, me: usize, ops: &mut u64) {
        if !self.has_mail[me].swap(false, Ordering::Acquire) {
            return;
        }
        let batches = std::mem::take(&mut *self.inbox[me].lock().unwrap());
        for batch in batches {
            for b in batch {
                free_block(self.alloc, b);
                *ops += 1;
            }
        }
    }

    /// `--phase-rss`, at a pass's end with every thread waiting: the bytes of the live
    /// blocks, those held in slots and those handed to a thread that has not freed them
    /// yet (with threads on fewer cores, that share depends on the scheduler).
    fn report_live(&self, label: &str) {
        let held = self.held_bytes.swap(0, Ordering::Relaxed);
        let handed: usize = self
            .inbox
            .iter()
            .map(|inbox| {
                let batches = inbox.lock().unwrap();
                batches
                    .iter()
                    .flatten()
                    .map(|b| b.layout.size())
                    .sum::<usize>()
            })
            .sum();
        let live = held + handed as u64;
        let (now, _) = rss();
        eprintln!(
            "rpbench: phase {label}: live blocks {:.1} MiB held + {:.1} MiB handed over, not yet freed; RSS per live byte {:.3}",
            mib(held),
            mib(handed as u64),
            now as f64 / live.max(1) as f64
        );
    }

    fn post(&self, to: usize, batch: Vec<Block>) {
        self.inbox[to].lock().unwrap().push(batch);
        self.has_mail[to].store(true, Ordering::Release);
    }
}

/// One thread of `--mode random` (and `realloc`) for one round.
pub(crate) fn worker(sh: &Shared, me: usize, round: usize) -> Tally {
    let p = &sh.p;
    let a = sh.alloc;
    let n = p.allocs;
    let (alloc_step, free_step) = scatter(n);
    let sizes = size_table(p, p.seed ^ ((me as u64) << 32) ^ round as u64, 8192);
    let mut slots: Vec<Option<Block>> = vec![None; n];
    let mut t = Tally::default();
    let mut size_idx = me * 131;
    let mut target = me;
    let cross = p.cross_rate > 0 && p.threads > 1;

    for pass in 0..p.passes {
        let mut alloc_idx = (me * 7 + pass) % n;
        let mut free_idx = (me * 13 + pass * 3) % n;
        let start = thread_cpu_ns();
        for lp in 0..p.loops {
            let k = lp + pass * 17;
            if p.mode == Mode::Realloc {
                realloc_loop(
                    a,
                    &mut slots,
                    &sizes,
                    &mut size_idx,
                    &mut alloc_idx,
                    alloc_step,
                    sh.alloc_ops[k % sh.alloc_ops.len()],
                    p.max * 8,
                    &mut t.ops,
                );
                sh.loops_done.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            sh.drain(me, &mut t.ops);
            for _ in 0..sh.free_ops[k % sh.free_ops.len()] {
                if let Some(b) = slots[free_idx].take() {
                    free_block(a, b);
                    t.ops += 1;
                }
                free_idx += free_step;
                if free_idx >= n {
                    free_idx -= n;
                }
            }
            let count = sh.alloc_ops[k % sh.alloc_ops.len()];
            for i in 0..count {
                if let Some(b) = slots[alloc_idx].take() {
                    free_block(a, b);
                    t.ops += 1;
                }
                let size = sizes[size_idx & 8191] as usize;
                size_idx += 1;
                slots[alloc_idx] = Some(alloc_block(a, size, size_idx + i));
                t.ops += 1;
                alloc_idx += alloc_step;
                if alloc_idx >= n {
                    alloc_idx -= n;
                }
            }
            if cross && lp % p.cross_rate == 0 {
                let mut batch = Vec::with_capacity(count / 4);
                for i in 0..count / 4 {
                    let size = sizes[size_idx & 8191] as usize;
                    size_idx += 1;
                    batch.push(alloc_block(a, size, size_idx + i));
                    t.ops += 1;
                }
                target = (target + 1) % p.threads;
                if target == me {
                    target = (target + 1) % p.threads;
                }
                sh.post(target, batch);
            }
            sh.loops_done.fetch_add(1, Ordering::Relaxed);
        }
        t.cpu_ns += thread_cpu_ns() - start;

        // Nobody hands out blocks past this point of the pass: free what we hold.
        if p.phase_rss {
            let held: usize = slots.iter().flatten().map(|b| b.layout.size()).sum();
            sh.held_bytes.fetch_add(held as u64, Ordering::Relaxed);
        }
        if sh.barrier.wait().is_leader() {
            if p.phase_rss {
                phase_mark(&format!("round {round} pass {pass}"));
                sh.report_live(&format!("round {round} pass {pass}"));
            }
            if p.span_pages {
                span_pages(&format!("round {round} pass {pass}"));
            }
        }
        if p.span_pages || p.phase_rss {
            // Nobody frees while the pages and blocks are counted.
            sh.barrier.wait();
        }
        let start = thread_cpu_ns();
        sh.drain(me, &mut t.ops);
        for slot in slots.iter_mut() {
            if let Some(b) = slot.take() {
                free_block(a, b);
                t.ops += 1;
            }
        }
        t.cpu_ns += thread_cpu_ns() - start;
    }
    t
}

/// One loop of `--mode realloc`: `count` slots in scattered order, each either started
/// (allocated at a random size), grown by `realloc` by a random step, or — once past
/// `cap` — freed.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn realloc_loop(
    a: Alloc,
    slots: &mut [Option<Block>],
    sizes: &[u32],
    size_idx: &mut usize,
    idx: &mut usize,
    step: usize,
    count: usize,
    cap: usize,
    ops: &mut u64,
) {
    let n = slots.len();
    for i in 0..count {
        let grow = sizes[*size_idx & 8191] as usize;
        *size_idx += 1;
        let slot = &mut slots[*idx];
        *slot = match slot.take() {
            None => Some(alloc_block(a, grow, i)),
            Some(b) if b.layout.size() + grow > cap => {
                free_block(a, b);
                None
            }
            Some(b) => {
                let new_size = b.layout.size() + grow;
                // SAFETY: a live block of `a` with this layout; the new size is valid.
                let ptr = unsafe { a.realloc(b.ptr, b.layout, new_size) };
                if ptr.is_null() {
                    eprintln!("rpbench: realloc to {new_size} bytes failed");
                    std::process::abort();
                }
                // Touch only the grown part's pages and last byte.
                let old = b.layout.size();
                let mut off = old.next_multiple_of(PAGE);
                while off < new_size {
                    // SAFETY: within the new block.
                    unsafe { ptr.add(off).write_volatile(1) };
                    off += PAGE;
                }
                // SAFETY: within the new block.
                unsafe { ptr.add(new_size - 1).write_volatile(1) };
                let layout = Layout::from_size_align(new_size, b.layout.align()).unwrap();
                Some(Block { ptr, layout })
            }
        };
        *ops += 1;
        *idx += step;
        if *idx >= n {
            *idx -= n;
        }
    }
}

/// One thread of `--mode larson` for one round: takes over `slots` (the previous round's
/// working set, or empty) and replaces `loops × op_count` random blocks.
pub(crate) fn larson_worker(
    sh: &Shared,
    me: usize,
    round: usize,
    mut slots: Vec<Option<Block>>,
) -> (Tally, Vec<Option<Block>>) {
    let p = &sh.p;
    let a = sh.alloc;
    let sizes = size_table(p, p.seed ^ ((me as u64) << 32) ^ (round as u64) << 8, 8192);
    let mut rng = Rng::new(p.seed ^ (me as u64 * 7919) ^ (round as u64) << 16);
    let mut t = Tally::default();
    let start = thread_cpu_ns();
    let mut size_idx = 0usize;
    for _ in 0..p.loops {
        for i in 0..p.op_count {
            let idx = rng.below(slots.len());
            if let Some(b) = slots[idx].take() {
                free_block(a, b);
                t.ops += 1;
            }
            let size = sizes[size_idx & 8191] as usize;
            size_idx += 1;
            slots[idx] = Some(alloc_block(a, size, i));
            t.ops += 1;
        }
        sh.loops_done.fetch_add(1, Ordering::Relaxed);
    }
    t.cpu_ns = thread_cpu_ns() - start;
    (t, slots)
}

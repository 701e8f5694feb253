//! Throughput and memory benchmark in the manner of rpmalloc-benchmark, rewritten in Rust.
//!
//! ```text
//! rpbench run [options]        one configuration, one allocator, in this process
//! rpbench all [options]        every peer × thread count × parameter set, each in its own
//!                              process; writes docs/benchmarks-throughput.md and SVG charts
//! rpbench help
//! ```
//!
//! Workload (`--mode random`, the default): each thread owns `allocs` slots. Every loop it
//! frees a varying number (about 0.25–0.8 × `op_count`) of blocks at scattered slots, then
//! allocates about 0.3–1.0 × `op_count` new blocks of random size in `[min, max]` into
//! scattered slots (freeing the previous occupant), writing one byte per page so the memory
//! is really committed. Every `cross_rate` loops it also allocates a quarter as many extra
//! blocks and hands them to another thread, which frees them. Each thread runs the sequence
//! `passes` times, then all threads exit and new ones run it again (`rounds` times: cold
//! and warm threads).
//!
//! `--mode larson`: each round's threads take over the whole working set of the previous
//! round's threads (blocks allocated by threads that have exited) and replace `op_count`
//! random blocks per loop. `--mode realloc`: slots hold vectors that grow by `realloc` by a
//! random step in `[min, max]` until they pass `8 × max`, then are freed.
//!
//! The benchmark's blocks go through the chosen allocator explicitly (`&dyn GlobalAlloc`);
//! the harness itself (slot arrays, queues) uses the system allocator. Reported: memory
//! operations per CPU second (the sum of the worker threads' CPU time, as rpmalloc-benchmark
//! does), operations per wall-clock second, the process's peak RSS (`VmHWM`) and its RSS
//! after every block was freed. Peak RSS is process-wide, hence `all` runs each
//! configuration in a fresh process.

use std::alloc::{GlobalAlloc, Layout};
use std::fmt::Write as _;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use rpmalloc_bench::{by_name, ours_stats, BASELINE, PEERS};

mod handoff;
use handoff::{mix_name, parse_mix, Mix};

type Alloc = &'static (dyn GlobalAlloc + Sync);

/// Light activity after a hand-off, in milliseconds, before the "after idle" RSS.
const HANDOFF_IDLE_MS: usize = 2000;

// ---- configuration ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Random,
    Larson,
    Realloc,
    Handoff,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dist {
    Even,
    Linear,
    Exp,
}

#[derive(Clone, Debug)]
struct Params {
    alloc: String,
    mode: Mode,
    threads: usize,
    loops: usize,
    allocs: usize,
    op_count: usize,
    min: usize,
    max: usize,
    dist: Dist,
    cross_rate: usize,
    passes: usize,
    rounds: usize,
    seed: u64,
    quiet: bool,
    /// Report the peak RSS of each pass and round (`--phase-rss`).
    phase_rss: bool,
    /// At each pass's end, count resident pages per span (`--span-pages`).
    span_pages: bool,
    /// `--mode handoff`: the sizes, the total blocks, blocks per batch, batches the channel
    /// holds.
    mix: Mix,
    blocks: usize,
    batch: usize,
    queue: usize,
    /// `--idle-ms`: light activity after the work, before the last RSS reading (hand-off:
    /// [`HANDOFF_IDLE_MS`] unless given; other modes: none unless given).
    idle_ms: Option<usize>,
}

impl Default for Params {
    fn default() -> Self {
        // rpmalloc-benchmark's first standard run, with 1/40 of its loops.
        Params {
            alloc: "ours".into(),
            mode: Mode::Random,
            threads: 1,
            loops: 500,
            allocs: 50_000,
            op_count: 5_000,
            min: 16,
            max: 1000,
            dist: Dist::Even,
            cross_rate: 2,
            passes: 2,
            rounds: 2,
            seed: 0x5eed,
            quiet: false,
            phase_rss: false,
            span_pages: false,
            mix: Mix::Mixed,
            blocks: 160_000,
            batch: 200,
            queue: 4,
            idle_ms: None,
        }
    }
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "random" => Ok(Mode::Random),
        "larson" => Ok(Mode::Larson),
        "realloc" => Ok(Mode::Realloc),
        "handoff" => Ok(Mode::Handoff),
        _ => Err(format!(
            "unknown mode {s:?} (random, larson, realloc, handoff)"
        )),
    }
}

fn parse_dist(s: &str) -> Result<Dist, String> {
    match s {
        "even" | "0" => Ok(Dist::Even),
        "linear" | "1" => Ok(Dist::Linear),
        "exp" | "2" => Ok(Dist::Exp),
        _ => Err(format!("unknown distribution {s:?} (even, linear, exp)")),
    }
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Random => "random",
        Mode::Larson => "larson",
        Mode::Realloc => "realloc",
        Mode::Handoff => "handoff",
    }
}

fn dist_name(d: Dist) -> &'static str {
    match d {
        Dist::Even => "even",
        Dist::Linear => "linear",
        Dist::Exp => "exp",
    }
}

fn num(flag: &str, v: &str) -> Result<usize, String> {
    let v = v.replace('_', "");
    let (digits, mul) = match v.chars().last() {
        Some('k' | 'K') => (&v[..v.len() - 1], 1000),
        Some('m' | 'M') => (&v[..v.len() - 1], 1_000_000),
        _ => (&v[..], 1),
    };
    digits
        .parse::<usize>()
        .map(|n| n * mul)
        .map_err(|_| format!("{flag}: not a number: {v:?}"))
}

/// Applies one `--flag value` of `run` to `p`. Returns false for flags it does not know.
fn apply_run_flag(p: &mut Params, flag: &str, v: &str) -> Result<bool, String> {
    match flag {
        "--alloc" | "--allocator" => {
            if by_name(v).is_none() {
                return Err(format!(
                    "unknown allocator {v:?}; one of {}",
                    PEERS.join(", ")
                ));
            }
            p.alloc = v.to_string();
        }
        "--mode" => p.mode = parse_mode(v)?,
        "--threads" | "-t" => p.threads = num(flag, v)?,
        "--loops" => p.loops = num(flag, v)?,
        "--allocs" => p.allocs = num(flag, v)?,
        "--op-count" | "--ops" => p.op_count = num(flag, v)?,
        "--min" => p.min = num(flag, v)?,
        "--max" => p.max = num(flag, v)?,
        "--dist" | "--distribution" => p.dist = parse_dist(v)?,
        "--cross-rate" => p.cross_rate = num(flag, v)?,
        "--passes" => p.passes = num(flag, v)?,
        "--rounds" => p.rounds = num(flag, v)?,
        "--seed" => p.seed = num(flag, v)? as u64,
        "--mix" => p.mix = parse_mix(v)?,
        "--blocks" => p.blocks = num(flag, v)?,
        "--batch" => p.batch = num(flag, v)?,
        "--queue" => p.queue = num(flag, v)?,
        "--idle-ms" => p.idle_ms = Some(num(flag, v)?),
        _ => return Ok(false),
    }
    Ok(true)
}

fn validate(p: &Params) -> Result<(), String> {
    if p.threads == 0 || p.threads > 256 {
        return Err("--threads must be 1..=256".into());
    }
    if p.allocs == 0 || p.op_count == 0 || p.loops == 0 || p.passes == 0 || p.rounds == 0 {
        return Err("--allocs, --op-count, --loops, --passes, --rounds must be positive".into());
    }
    if p.min == 0 || p.max < p.min {
        return Err("need 1 <= --min <= --max".into());
    }
    if p.max > u32::MAX as usize / 16 {
        return Err("--max too large".into());
    }
    if p.mode == Mode::Handoff && (p.blocks < p.threads || p.batch == 0) {
        return Err("--mode handoff needs --blocks >= --threads and --batch >= 1".into());
    }
    Ok(())
}

// ---- small utilities ---------------------------------------------------------------------

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
fn op_tables(p: &Params) -> (Vec<usize>, Vec<usize>) {
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

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `(VmRSS, VmHWM)` of this process in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bytes in MiB.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Highest `VmHWM` seen before a `--phase-rss` mark reset it.
static PEAK_BEFORE_RESET: AtomicU64 = AtomicU64::new(0);

/// `--phase-rss`: prints the peak RSS since the previous mark and resets the kernel's peak
/// (`clear_refs` 5), so each pass and round shows its own; the run's peak stays the
/// highest of them.
fn phase_mark(label: &str) {
    let (now, peak) = rss();
    PEAK_BEFORE_RESET.fetch_max(peak, Ordering::Relaxed);
    eprintln!(
        "rpbench: phase {label}: peak RSS {:.1} MiB, RSS {:.1} MiB",
        mib(peak),
        mib(now)
    );
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `--span-pages`: how many 4 KiB pages of each 64 KiB-aligned piece of every anonymous
/// mapping of 1 MiB or more are resident (`/proc/self/pagemap`), as a histogram: entry `k`
/// is the number of pieces with `k` resident pages. With the allocators' spans 64 KiB and
/// aligned, it shows how much of each span is touched — spans in use and cached alike.
fn span_pages(label: &str) {
    use std::io::{Read, Seek, SeekFrom};
    const PAGE_SHIFT: u32 = 12;
    const PIECE_PAGES: usize = 16;
    let (Ok(maps), Ok(mut pagemap)) = (
        std::fs::read_to_string("/proc/self/maps"),
        std::fs::File::open("/proc/self/pagemap"),
    ) else {
        eprintln!("rpbench: span pages {label}: /proc/self/pagemap unreadable");
        return;
    };
    let mut hist = [0u64; PIECE_PAGES + 1];
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Anonymous mappings have no sixth (path) field.
        if fields.len() != 5 {
            continue;
        }
        let Some((lo, hi)) = fields[0].split_once('-') else {
            continue;
        };
        let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) else {
            continue;
        };
        if hi - lo < 1 << 20 {
            continue;
        }
        let pages = ((hi - lo) >> PAGE_SHIFT) as usize;
        let mut entries = vec![0u8; pages * 8];
        if pagemap
            .seek(SeekFrom::Start((lo >> PAGE_SHIFT) * 8))
            .is_err()
            || pagemap.read_exact(&mut entries).is_err()
        {
            continue;
        }
        // Bit 63 of an entry: the page is present.
        let present = |i: usize| entries[i * 8 + 7] >> 7 == 1;
        let base = (lo >> PAGE_SHIFT) as usize;
        let mut i = 0;
        while i < pages {
            let end = (((base + i) / PIECE_PAGES + 1) * PIECE_PAGES - base).min(pages);
            hist[(i..end).filter(|&j| present(j)).count()] += 1;
            i = end;
        }
    }
    let touched: u64 = hist[1..].iter().sum();
    eprintln!(
        "rpbench: span pages {label}: {touched} touched 64 KiB pieces; by resident pages 0..=16: {:?}",
        hist
    );
}

// ---- blocks ------------------------------------------------------------------------------

/// A live block of the benchmark: its address and the layout it was allocated with.
#[derive(Clone, Copy)]
struct Block {
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
fn free_block(a: Alloc, b: Block) {
    // SAFETY: allocated by `a` with this layout, freed once.
    unsafe { a.dealloc(b.ptr, b.layout) };
}

// ---- the workers -------------------------------------------------------------------------

struct Shared {
    p: Params,
    alloc: Alloc,
    inbox: Vec<Mutex<Vec<Vec<Block>>>>,
    has_mail: Vec<AtomicBool>,
    barrier: Barrier,
    loops_done: AtomicU64,
    /// `--phase-rss`: bytes the threads hold in their slots at a pass's end.
    held_bytes: AtomicU64,
    alloc_ops: Vec<usize>,
    free_ops: Vec<usize>,
}

#[derive(Default, Clone, Copy)]
struct Tally {
    ops: u64,
    cpu_ns: u64,
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
fn worker(sh: &Shared, me: usize, round: usize) -> Tally {
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
fn larson_worker(
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

// ---- one run -----------------------------------------------------------------------------

struct RunResult {
    ops: u64,
    cpu_s: f64,
    wall_s: f64,
    rss_start: u64,
    peak_rss: u64,
    rss_after: u64,
    /// `--mode handoff`: RSS after the idle period (0 for the other modes).
    rss_idle: u64,
    /// `--mode handoff`: most bytes in flight at once (0 for the other modes).
    in_flight_peak: u64,
}

fn run(p: Params) -> RunResult {
    let alloc = by_name(&p.alloc).expect("validated allocator");
    let (rss_start, _) = rss();
    if p.mode == Mode::Handoff {
        let settings = handoff::Settings {
            producers: p.threads,
            blocks: p.blocks,
            batch: p.batch,
            queue: p.queue,
            mix: p.mix,
            idle_ms: p.idle_ms.unwrap_or(HANDOFF_IDLE_MS) as u64,
            seed: p.seed,
            diagnose: p.alloc == "ours",
        };
        let out = handoff::run(alloc, settings, p.quiet);
        let (_, peak_rss) = rss();
        return RunResult {
            ops: out.ops,
            cpu_s: out.cpu_s,
            wall_s: out.wall_s,
            rss_start,
            peak_rss,
            rss_after: out.rss_after,
            rss_idle: out.rss_idle,
            in_flight_peak: out.in_flight_peak,
        };
    }
    let (alloc_ops, free_ops) = op_tables(&p);
    let sh = Arc::new(Shared {
        alloc,
        inbox: (0..p.threads).map(|_| Mutex::new(Vec::new())).collect(),
        has_mail: (0..p.threads).map(|_| AtomicBool::new(false)).collect(),
        barrier: Barrier::new(p.threads),
        loops_done: AtomicU64::new(0),
        held_bytes: AtomicU64::new(0),
        alloc_ops,
        free_ops,
        p: p.clone(),
    });
    let total_loops = match p.mode {
        Mode::Larson => p.rounds * p.threads * p.loops,
        _ => p.rounds * p.threads * p.passes * p.loops,
    } as u64;

    // Progress on stderr every two seconds.
    let done = Arc::new(AtomicBool::new(false));
    let progress = (!p.quiet).then(|| {
        let sh = Arc::clone(&sh);
        let done = Arc::clone(&done);
        let label = format!("{} {} t={}", p.alloc, mode_name(p.mode), p.threads);
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut next = Duration::from_secs(2);
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if t0.elapsed() >= next {
                    next += Duration::from_secs(2);
                    let l = sh.loops_done.load(Ordering::Relaxed);
                    eprintln!(
                        "  [{label}] {:.0}% after {:.0} s",
                        100.0 * l as f64 / total_loops.max(1) as f64,
                        t0.elapsed().as_secs_f64()
                    );
                }
            }
        })
    });

    let wall = Instant::now();
    let mut wall_s = 0.0;
    let mut total = Tally::default();
    match p.mode {
        Mode::Handoff => unreachable!("handled above"),
        Mode::Random | Mode::Realloc => {
            for round in 0..p.rounds {
                let handles: Vec<_> = (0..p.threads)
                    .map(|me| {
                        let sh = Arc::clone(&sh);
                        std::thread::spawn(move || worker(&sh, me, round))
                    })
                    .collect();
                for h in handles {
                    let t = h.join().expect("worker panicked");
                    total.ops += t.ops;
                    total.cpu_ns += t.cpu_ns;
                }
                if p.phase_rss {
                    phase_mark(&format!("round {round} end"));
                }
            }
        }
        Mode::Larson => {
            let mut sets: Vec<Vec<Option<Block>>> =
                (0..p.threads).map(|_| vec![None; p.allocs]).collect();
            for round in 0..p.rounds {
                let handles: Vec<_> = sets
                    .drain(..)
                    .enumerate()
                    .map(|(me, slots)| {
                        let sh = Arc::clone(&sh);
                        let slots = SendSlots(slots);
                        std::thread::spawn(move || {
                            let slots = slots;
                            let (t, s) = larson_worker(&sh, me, round, slots.0);
                            (t, SendSlots(s))
                        })
                    })
                    .collect();
                for h in handles {
                    let (t, s) = h.join().expect("worker panicked");
                    total.ops += t.ops;
                    total.cpu_ns += t.cpu_ns;
                    sets.push(s.0);
                }
                // Each new thread gets the set of the previous thread with the next index.
                sets.rotate_left(1);
                if p.phase_rss {
                    phase_mark(&format!("round {round}"));
                }
            }
            // The main thread frees the last round's working set, outside the timing.
            wall_s = wall.elapsed().as_secs_f64();
            for set in sets {
                for b in set.into_iter().flatten() {
                    free_block(alloc, b);
                }
            }
        }
    }
    if wall_s == 0.0 {
        wall_s = wall.elapsed().as_secs_f64();
    }
    done.store(true, Ordering::Relaxed);
    if let Some(h) = progress {
        let _ = h.join();
    }
    let (rss_after, peak_rss) = rss();
    let peak_rss = peak_rss.max(PEAK_BEFORE_RESET.load(Ordering::Relaxed));
    // With `--idle-ms`: RSS after that much light activity, the workers gone.
    let rss_idle = match p.idle_ms {
        Some(ms) if ms > 0 => handoff::idle_with_light_activity(alloc, ms as u64, p.seed, p.quiet),
        _ => 0,
    };
    RunResult {
        ops: total.ops,
        cpu_s: total.cpu_ns as f64 / 1e9,
        wall_s,
        rss_start,
        peak_rss,
        rss_after,
        rss_idle,
        in_flight_peak: 0,
    }
}

struct SendSlots(Vec<Option<Block>>);
// SAFETY: the blocks are handed over whole.
unsafe impl Send for SendSlots {}

fn cmd_run(args: &[String]) -> Result<(), String> {
    let mut p = Params::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--quiet" || flag == "-q" {
            p.quiet = true;
            continue;
        }
        if flag == "--phase-rss" {
            p.phase_rss = true;
            continue;
        }
        if flag == "--span-pages" {
            p.span_pages = true;
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        if !apply_run_flag(&mut p, flag, v)? {
            return Err(format!("unknown option {flag}"));
        }
    }
    validate(&p)?;
    if !p.quiet && p.mode == Mode::Handoff {
        eprintln!(
            "rpbench: {} handoff producers={} blocks={} mix={} batch={} queue={} idle_ms={}",
            p.alloc,
            p.threads,
            p.blocks,
            mix_name(p.mix),
            p.batch,
            p.queue,
            p.idle_ms.unwrap_or(HANDOFF_IDLE_MS)
        );
    } else if !p.quiet {
        eprintln!(
            "rpbench: {} {} threads={} loops={} allocs={} op_count={} size=[{},{}] {} cross_rate={} passes={} rounds={}",
            p.alloc,
            mode_name(p.mode),
            p.threads,
            p.loops,
            p.allocs,
            p.op_count,
            p.min,
            p.max,
            dist_name(p.dist),
            p.cross_rate,
            p.passes,
            p.rounds
        );
    }
    let r = run(p.clone());
    eprintln!(
        "rpbench: {} {} t={}: {:.2} M ops/CPU-s, {:.2} M ops/s ({:.2} s), peak RSS {:.1} MiB, after {:.1} MiB{}",
        p.alloc,
        mode_name(p.mode),
        p.threads,
        r.ops as f64 / r.cpu_s / 1e6,
        r.ops as f64 / r.wall_s / 1e6,
        r.wall_s,
        mib(r.peak_rss),
        mib(r.rss_after),
        if p.mode == Mode::Handoff {
            format!(
                ", after idle {:.1} MiB; at most {:.1} MiB in flight",
                mib(r.rss_idle),
                mib(r.in_flight_peak)
            )
        } else if r.rss_idle > 0 {
            format!(", after idle {:.1} MiB", mib(r.rss_idle))
        } else {
            String::new()
        }
    );
    if p.alloc == "ours" {
        print_ours_stats("at the end");
    }
    // Machine-readable, for `rpbench all`.
    println!(
        "RESULT alloc={} mode={} threads={} ops={} cpu_s={:.6} wall_s={:.6} rss_start={} peak_rss={} rss_after={} rss_idle={} in_flight_peak={}",
        p.alloc,
        mode_name(p.mode),
        p.threads,
        r.ops,
        r.cpu_s,
        r.wall_s,
        r.rss_start,
        r.peak_rss,
        r.rss_after,
        r.rss_idle,
        r.in_flight_peak
    );
    Ok(())
}

/// With `--features stats`, `ours`' statistics: where its memory is (`label` says when).
fn print_ours_stats(label: &str) {
    if let Some(s) = ours_stats() {
        eprintln!(
            "rpbench: ours {label}: mapped {:.1} MiB (peak {:.1}), in use {:.1}, live \
             {:.1}, thread caches {:.1}, global cache {:.1}, reserves {:.1}, released {:.1}, \
             heap records {:.1} ({} heaps)",
            mib(s.mapped as u64),
            mib(s.mapped_peak as u64),
            mib(s.in_use as u64),
            mib(s.live as u64),
            mib(s.thread_cache as u64),
            mib(s.global_cache as u64),
            mib(s.reserve as u64),
            mib(s.released as u64),
            mib(s.heap_records as u64),
            s.heaps
        );
    }
}

// ---- the driver --------------------------------------------------------------------------

/// A named parameter set of the driver.
struct Set {
    name: &'static str,
    title: &'static str,
    args: Vec<String>,
    /// Thread counts it runs at unless `--threads` says otherwise (producers, for the
    /// hand-off sets).
    threads: &'static [usize],
    /// A hand-off set: reported by time and three RSS figures.
    handoff: bool,
}

/// The classic sets' thread counts.
const CLASSIC_THREADS: &[usize] = &[1, 2, 8];
/// The hand-off sets' producer counts (one consumer each): 1:1 and 4:1.
const HANDOFF_PRODUCERS: &[usize] = &[1, 4];

fn standard_sets(scale: f64) -> Vec<Set> {
    let loops = |n: f64| ((n * scale).round() as usize).max(1).to_string();
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let classic = |name, title, args: Vec<String>| Set {
        name,
        title,
        args,
        threads: CLASSIC_THREADS,
        handoff: false,
    };
    let handoff = |name, title, mix: &str, blocks: f64, batch: &str| Set {
        name,
        title,
        args: [
            v(&[
                "--mode", "handoff", "--mix", mix, "--batch", batch, "--queue", "4",
            ]),
            vec!["--blocks".into(), loops(blocks)],
        ]
        .concat(),
        threads: HANDOFF_PRODUCERS,
        handoff: true,
    };
    vec![
        classic(
            "std1",
            "random 16–1000 B, even, cross-thread every 2nd loop (rpmalloc-benchmark `<t> 0 0 2 20000 50000 5000 16 1000`)",
            [v(&["--mode", "random", "--dist", "even", "--min", "16", "--max", "1000", "--cross-rate", "2", "--allocs", "50000", "--op-count", "5000", "--loops"]), vec![loops(150.0)]].concat(),
        ),
        classic(
            "std2",
            "random 16–8000 B, linear falloff, cross-thread every 2nd loop (rpmalloc-benchmark `<t> 0 1 2 20000 50000 5000 16 8000`)",
            [v(&["--mode", "random", "--dist", "linear", "--min", "16", "--max", "8000", "--cross-rate", "2", "--allocs", "50000", "--op-count", "5000", "--loops"]), vec![loops(80.0)]].concat(),
        ),
        classic(
            "larson",
            "4 rounds of threads, each taking over the previous round's 20000 blocks (16–1000 B, even)",
            [v(&["--mode", "larson", "--dist", "even", "--min", "16", "--max", "1000", "--allocs", "20000", "--op-count", "5000", "--rounds", "4", "--loops"]), vec![loops(20.0)]].concat(),
        ),
        classic(
            "realloc",
            "2000 vectors per thread growing by 16–4000 B steps up to 32000 B, then freed",
            [v(&["--mode", "realloc", "--dist", "even", "--min", "16", "--max", "4000", "--allocs", "2000", "--op-count", "2000", "--cross-rate", "0", "--loops"]), vec![loops(20.0)]].concat(),
        ),
        handoff(
            "handoff-small",
            "producers → one consumer, 1 B–1 KiB blocks in batches of 200",
            "small",
            10_000_000.0,
            "200",
        ),
        handoff(
            "handoff-medium",
            "producers → one consumer, 1–64 KiB blocks in batches of 200",
            "medium",
            1_000_000.0,
            "200",
        ),
        handoff(
            "handoff-large",
            "producers → one consumer, 64 KiB–3 MiB blocks in batches of 16",
            "large",
            20_000.0,
            "16",
        ),
        handoff(
            "handoff-mixed",
            "producers → one consumer, 85 % 1 B–1 KiB, 13 % 1–64 KiB, 2 % 64 KiB–3 MiB, batches of 200",
            "mixed",
            400_000.0,
            "200",
        ),
    ]
}

/// Set names `all --sets` accepts besides single sets.
fn expand_set_group(name: &str) -> Vec<String> {
    let group: &[&str] = match name {
        "classic" => &["std1", "std2", "larson", "realloc"],
        "handoff" => &[
            "handoff-small",
            "handoff-medium",
            "handoff-large",
            "handoff-mixed",
        ],
        other => return vec![other.to_string()],
    };
    group.iter().map(|s| s.to_string()).collect()
}

/// Ratios of one peer's figures to a reference peer's (see `Row::to_c`).
#[derive(Clone, Copy, Default)]
struct Ratios {
    ops_cpu: f64,
    ops_wall: f64,
    peak: f64,
    after: f64,
    idle: f64,
    /// Peak RSS per byte in flight (hand-off).
    peak_per_live: f64,
}

#[derive(Clone)]
struct Row {
    set: String,
    peer: String,
    threads: usize,
    ops_cpu: f64,
    ops_wall: f64,
    wall_s: f64,
    peak: u64,
    after: u64,
    idle: u64,
    start: u64,
    /// Peak RSS per byte in flight (hand-off; median).
    peak_per_live: f64,
    /// Ratios to the baseline (C rpmalloc), each the median over repetitions of this peer's
    /// figure over the baseline's figure from the same repetition (run next to it, so a
    /// slow or fast spell of the machine cancels out).
    to_c: Option<Ratios>,
    /// The same against jemalloc, the memory reference.
    to_jemalloc: Option<Ratios>,
}

/// One `run`'s RESULT line.
#[derive(Clone, Copy)]
struct Sample {
    ops: u64,
    cpu_s: f64,
    wall_s: f64,
    rss_start: u64,
    peak_rss: u64,
    rss_after: u64,
    rss_idle: u64,
    in_flight_peak: u64,
}

fn parse_result(line: &str) -> Option<Sample> {
    let rest = line.strip_prefix("RESULT ")?;
    let get = |k: &str| {
        rest.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
    };
    Some(Sample {
        ops: get("ops")?.parse().ok()?,
        cpu_s: get("cpu_s")?.parse().ok()?,
        wall_s: get("wall_s")?.parse().ok()?,
        rss_start: get("rss_start")?.parse().ok()?,
        peak_rss: get("peak_rss")?.parse().ok()?,
        rss_after: get("rss_after")?.parse().ok()?,
        rss_idle: get("rss_idle")?.parse().ok()?,
        in_flight_peak: get("in_flight_peak")?.parse().ok()?,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The memory reference peer.
const MEMORY_REFERENCE: &str = "jemalloc";

fn cmd_all(args: &[String]) -> Result<(), String> {
    let mut threads_override: Option<Vec<usize>> = None;
    let mut peers: Vec<String> = PEERS.iter().map(|s| s.to_string()).collect();
    let mut scale = 1.0f64;
    let mut set_names: Vec<String> = expand_set_group("classic")
        .into_iter()
        .chain(expand_set_group("handoff"))
        .collect();
    let mut docs = default_docs_dir();
    let mut repeat = 5usize;
    let mut extra: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--threads" => {
                threads_override = Some(
                    val()?
                        .split(',')
                        .map(|s| num("--threads", s))
                        .collect::<Result<_, _>>()?,
                )
            }
            "--peers" => peers = val()?.split(',').map(str::to_string).collect(),
            "--sets" => set_names = val()?.split(',').flat_map(expand_set_group).collect(),
            "--scale" => scale = val()?.parse().map_err(|_| "--scale: not a number")?,
            "--repeat" => repeat = num(flag, &val()?)?.max(1),
            "--docs" => docs = Some(std::path::PathBuf::from(val()?)),
            "--no-docs" => docs = None,
            // Anything else is passed on to every `run` (e.g. --allocs 20000).
            _ => {
                extra.push(flag.clone());
                extra.push(val()?);
            }
        }
    }
    for peer in &peers {
        if by_name(peer).is_none() {
            return Err(format!("unknown peer {peer:?}"));
        }
    }
    let mut all_sets = standard_sets(scale);
    if let Some(t) = &threads_override {
        let t: &'static [usize] = Vec::leak(t.clone());
        for set in &mut all_sets {
            set.threads = t;
        }
    }
    let sets: Vec<&Set> = set_names
        .iter()
        .map(|n| {
            all_sets
                .iter()
                .find(|s| s.name == n)
                .ok_or(format!("unknown set {n:?}"))
        })
        .collect::<Result<_, _>>()?;

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let total: usize = sets
        .iter()
        .map(|s| s.threads.len() * peers.len() * repeat)
        .sum();
    let mut n = 0;
    let mut rows = Vec::new();
    for set in &sets {
        for &t in set.threads {
            // Peers interleaved within each repetition, so a change in background load
            // hits them all alike; the median of the repetitions is reported. The order
            // rotates with each repetition: a run can be slowed by what the run before it
            // left the kernel to do (realloc, one thread: pairs read 0.86–1.11 when ours
            // always followed `system` and C always followed `ours-nocache`, against
            // 1.12 back to back).
            let mut samples_all: Vec<Vec<Sample>> = vec![Vec::new(); peers.len()];
            for rep in 0..repeat {
                for k in 0..peers.len() {
                    let pi = (k + rep) % peers.len();
                    let peer = &peers[pi];
                    n += 1;
                    eprintln!(
                        "[{n}/{total}, {:.0} s] {} {} threads={t}",
                        started.elapsed().as_secs_f64(),
                        set.name,
                        peer
                    );
                    let out = Command::new(&exe)
                        .arg("run")
                        .args(&set.args)
                        .args(&extra)
                        .args(["--alloc", peer, "--threads", &t.to_string(), "--quiet"])
                        .stdin(Stdio::null())
                        .stderr(Stdio::inherit())
                        .output()
                        .map_err(|e| e.to_string())?;
                    let stdout = String::from_utf8_lossy(&out.stdout);
                    let Some(r) = stdout.lines().find_map(parse_result) else {
                        return Err(format!(
                            "{} {peer} t={t} failed ({}): {stdout}",
                            set.name, out.status
                        ));
                    };
                    samples_all[pi].push(r);
                }
            }
            let reference = |name: &str| peers.iter().position(|p| p == name);
            for (pi, peer) in peers.iter().enumerate() {
                let samples = &samples_all[pi];
                let med = |f: &dyn Fn(&Sample) -> f64| median(samples.iter().map(f).collect());
                let paired = |b: &[Sample], f: &dyn Fn(&Sample) -> f64| {
                    median(samples.iter().zip(b).map(|(x, y)| f(x) / f(y)).collect())
                };
                let ratios = |b: usize| {
                    let b = &samples_all[b];
                    Ratios {
                        ops_cpu: paired(b, &|r| r.ops as f64 / r.cpu_s),
                        ops_wall: paired(b, &|r| r.ops as f64 / r.wall_s),
                        peak: paired(b, &|r| r.peak_rss as f64),
                        after: paired(b, &|r| r.rss_after as f64),
                        idle: paired(b, &|r| r.rss_idle.max(1) as f64),
                        peak_per_live: paired(b, &|r| {
                            r.peak_rss as f64 / r.in_flight_peak.max(1) as f64
                        }),
                    }
                };
                rows.push(Row {
                    set: set.name.into(),
                    peer: peer.clone(),
                    threads: t,
                    ops_cpu: med(&|r| r.ops as f64 / r.cpu_s),
                    ops_wall: med(&|r| r.ops as f64 / r.wall_s),
                    wall_s: med(&|r| r.wall_s),
                    peak: med(&|r| r.peak_rss as f64) as u64,
                    after: med(&|r| r.rss_after as f64) as u64,
                    idle: med(&|r| r.rss_idle as f64) as u64,
                    start: med(&|r| r.rss_start as f64) as u64,
                    peak_per_live: med(&|r| r.peak_rss as f64 / r.in_flight_peak.max(1) as f64),
                    to_c: reference(BASELINE).map(ratios),
                    to_jemalloc: reference(MEMORY_REFERENCE).map(ratios),
                });
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The classic sets and the hand-off sets each have their own page.
    let mut pages = Vec::new();
    for (handoff, name) in [
        (false, "benchmarks-throughput.md"),
        (true, "benchmarks-handoff.md"),
    ] {
        let part: Vec<&Set> = sets
            .iter()
            .copied()
            .filter(|s| s.handoff == handoff)
            .collect();
        if !part.is_empty() {
            let md = report(&rows, &part, &peers, scale, repeat, elapsed, &extra);
            println!("{md}");
            pages.push((name, md));
        }
    }
    if let Some(dir) = docs {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for (name, md) in &pages {
            let path = dir.join(name);
            std::fs::write(&path, md).map_err(|e| e.to_string())?;
            eprintln!("wrote {}", path.display());
        }
        for set in &sets {
            let (speed_title, speed): (String, &dyn Fn(&Row) -> f64) = if set.handoff {
                (format!("{}: time (s)", set.name), &|r| r.wall_s)
            } else {
                (
                    format!("{}: memory ops per CPU second (millions)", set.name),
                    &|r| r.ops_cpu / 1e6,
                )
            };
            let ops = svg_chart(&speed_title, &rows, set, &peers, speed);
            let mem = svg_chart(
                &format!("{}: peak RSS (MiB)", set.name),
                &rows,
                set,
                &peers,
                |r| mib(r.peak),
            );
            let mut charts = vec![("ops", ops), ("rss", mem)];
            if set.handoff {
                charts.push((
                    "idle",
                    svg_chart(
                        &format!("{}: RSS after frees and idle (MiB)", set.name),
                        &rows,
                        set,
                        &peers,
                        |r| mib(r.idle),
                    ),
                ));
            }
            for (kind, svg) in charts {
                let path = dir.join(format!("benchmarks-{}-{kind}.svg", set.name));
                std::fs::write(&path, svg).map_err(|e| e.to_string())?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

/// `<repo>/docs` when run from the repository (the binary's usual place is
/// `<target>/release/rpbench`, so look at the current directory and its parent).
fn default_docs_dir() -> Option<std::path::PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    for base in [cwd.clone(), cwd.parent()?.to_path_buf()] {
        if base.join("benches").join("Cargo.toml").is_file() {
            return Some(base.join("docs"));
        }
    }
    Some(cwd.join("docs"))
}

fn report(
    rows: &[Row],
    sets: &[&Set],
    peers: &[String],
    scale: f64,
    repeat: usize,
    elapsed: f64,
    extra: &[String],
) -> String {
    let find = |set: &str, peer: &str, t: usize| {
        rows.iter()
            .find(|r| r.set == set && r.peer == peer && r.threads == t)
    };
    // A paired ratio of the row (see `Row::to_c`), or nothing for the reference itself.
    let ratio = |r: &Row, reference: &str, k: fn(&Ratios) -> f64| {
        let q = if reference == BASELINE {
            r.to_c
        } else {
            r.to_jemalloc
        };
        match q {
            Some(q) if r.peer != reference => format!(" ({:.2}×)", k(&q)),
            _ => String::new(),
        }
    };
    // One cell per thread count for `peer`, formatted by `cell`, or a dash if not run.
    let cells = |s: &mut String, set: &Set, peer: &str, cell: &dyn Fn(&Row) -> String| {
        for &t in set.threads {
            match find(set.name, peer, t) {
                Some(r) => {
                    let _ = write!(s, " {} |", cell(r));
                }
                None => s.push_str(" – |"),
            }
        }
    };
    let header = |s: &mut String, set: &Set, columns: &[&str]| {
        let _ = write!(s, "| peer |");
        for c in columns {
            for t in set.threads {
                if set.handoff {
                    let _ = write!(s, " {c}, {t}:1 |");
                } else {
                    let _ = write!(s, " {c}, {t} thr |");
                }
            }
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "|---|{}",
            "---:|".repeat(set.threads.len() * columns.len())
        );
    };
    let mut s = String::new();
    let handoff_only = sets.iter().all(|set| set.handoff);
    let _ = writeln!(
        s,
        "# {} (rpbench)\n",
        if handoff_only {
            "Hand-off: time and memory"
        } else {
            "Throughput and memory"
        }
    );
    let _ = writeln!(
        s,
        "Generated by `rpbench all` (benches/src/bin/rpbench/) on a {}-CPU machine in {:.0} s; \
         loop and block counts scaled by {scale} from the defaults{}. Each figure is {} run(s) of a \
         separate process per peer and thread count{}.\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        elapsed,
        if extra.is_empty() {
            String::new()
        } else {
            format!(", extra options `{}`", extra.join(" "))
        },
        repeat,
        if repeat > 1 { " (median)" } else { "" }
    );
    if sets.iter().any(|set| !set.handoff) {
        let _ = writeln!(
            s,
            "*Ops/CPU-s*: memory operations (allocations, frees, reallocs) per second of worker-thread \
             CPU time, summed over threads, as rpmalloc-benchmark reports. *Ops/s*: the same per \
             wall-clock second of the whole run. *Peak RSS*: the process's `VmHWM`; *after*: its \
             `VmRSS` once every block is freed and every worker thread has exited."
        );
    }
    if sets.iter().any(|set| set.handoff) {
        let _ = writeln!(
            s,
            "*Hand-off* (`--mode handoff`): N producer threads allocate blocks, write a byte per \
             page and send them in batches over one bounded channel to a consumer thread, which \
             frees them (`N:1`). *Time*: wall-clock seconds from the first allocation to the \
             last free. *Peak RSS*: `VmHWM`. *After frees*: `VmRSS` right after the last free, \
             every worker thread still alive and idle. *After idle*: `VmRSS` after 2 s more of \
             light activity on another thread (32 small blocks allocated and freed every \
             10 ms), the workers still idle. *Peak RSS per byte in flight*: the peak RSS over the \
             most bytes of blocks ever in sent, not yet freed batches — the live data, which \
             grows when the producers run ahead of the consumer (a faster allocator fills the \
             channel more). Memory ratios are given to C rpmalloc (C) and to jemalloc (je)."
        );
    }
    let _ = writeln!(
        s,
        "A process without any benchmark blocks has an RSS of about {:.1} MiB. Ratios are to C rpmalloc \
         1.4 (`rpmalloc-sys`) unless marked: the median over the repetitions of the peer's figure over the reference's \
         from the same repetition (peers run interleaved, in an order that rotates with each \
         repetition, so a slow or fast spell of the machine mostly cancels out); for ops above 1 is faster, \
         for time and memory below 1 is smaller. \
         Timings on a small shared machine vary from run to run (use `--repeat`); the \
         instruction counts in `benchmarks-iai.md` are the steadier signal.\n",
        mib(rows.iter().map(|r| r.start).min().unwrap_or(0))
    );
    for set in sets {
        let _ = writeln!(s, "## {}: {}\n", set.name, set.title);
        let _ = writeln!(s, "`rpbench run {}`\n", set.args.join(" "));
        if set.handoff {
            // A memory cell: the figure, then its ratios to C rpmalloc and to jemalloc.
            let memory = |r: &Row, bytes: u64, k: fn(&Ratios) -> f64| {
                let mut q = Vec::new();
                if let Some(c) = r.to_c.filter(|_| r.peer != BASELINE) {
                    q.push(format!("{:.2}× C", k(&c)));
                }
                if let Some(j) = r.to_jemalloc.filter(|_| r.peer != MEMORY_REFERENCE) {
                    q.push(format!("{:.2}× je", k(&j)));
                }
                if q.is_empty() {
                    format!("{:.1}", mib(bytes))
                } else {
                    format!("{:.1} ({})", mib(bytes), q.join(", "))
                }
            };
            header(&mut s, set, &["time s", "peak RSS MiB"]);
            for peer in peers {
                let _ = write!(s, "| {peer} |");
                cells(&mut s, set, peer, &|r| {
                    // Time ratio: the inverse of the paired ops/s ratio.
                    let q = match r.to_c {
                        Some(q) if r.peer != BASELINE => format!(" ({:.2}×)", 1.0 / q.ops_wall),
                        _ => String::new(),
                    };
                    format!("{:.2}{q}", r.wall_s)
                });
                cells(&mut s, set, peer, &|r| memory(r, r.peak, |q| q.peak));
                let _ = writeln!(s);
            }
            let _ = writeln!(s);
            header(&mut s, set, &["RSS after frees MiB", "RSS after idle MiB"]);
            for peer in peers {
                let _ = write!(s, "| {peer} |");
                cells(&mut s, set, peer, &|r| memory(r, r.after, |q| q.after));
                cells(&mut s, set, peer, &|r| memory(r, r.idle, |q| q.idle));
                let _ = writeln!(s);
            }
            let _ = writeln!(s);
            header(&mut s, set, &["peak RSS per byte in flight"]);
            for peer in peers {
                let _ = write!(s, "| {peer} |");
                cells(&mut s, set, peer, &|r| {
                    let mut q = Vec::new();
                    if let Some(c) = r.to_c.filter(|_| r.peer != BASELINE) {
                        q.push(format!("{:.2}× C", c.peak_per_live));
                    }
                    if let Some(j) = r.to_jemalloc.filter(|_| r.peer != MEMORY_REFERENCE) {
                        q.push(format!("{:.2}× je", j.peak_per_live));
                    }
                    if q.is_empty() {
                        format!("{:.2}", r.peak_per_live)
                    } else {
                        format!("{:.2} ({})", r.peak_per_live, q.join(", "))
                    }
                });
                let _ = writeln!(s);
            }
            let _ = writeln!(
                s,
                "\n![{0} time](benchmarks-{0}-ops.svg) ![{0} peak RSS](benchmarks-{0}-rss.svg) ![{0} RSS after idle](benchmarks-{0}-idle.svg)\n",
                set.name
            );
            continue;
        }
        header(&mut s, set, &["ops/CPU-s", "ops/s"]);
        for peer in peers {
            let _ = write!(s, "| {peer} |");
            cells(&mut s, set, peer, &|r| {
                format!(
                    "{:.2} M{}",
                    r.ops_cpu / 1e6,
                    ratio(r, BASELINE, |q| q.ops_cpu)
                )
            });
            cells(&mut s, set, peer, &|r| {
                format!(
                    "{:.2} M{}",
                    r.ops_wall / 1e6,
                    ratio(r, BASELINE, |q| q.ops_wall)
                )
            });
            let _ = writeln!(s);
        }
        let _ = writeln!(s);
        header(&mut s, set, &["peak RSS MiB", "RSS after"]);
        for peer in peers {
            let _ = write!(s, "| {peer} |");
            cells(&mut s, set, peer, &|r| {
                format!("{:.1}{}", mib(r.peak), ratio(r, BASELINE, |q| q.peak))
            });
            cells(&mut s, set, peer, &|r| format!("{:.1}", mib(r.after)));
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "\n![{0} ops](benchmarks-{0}-ops.svg) ![{0} peak RSS](benchmarks-{0}-rss.svg)\n",
            set.name
        );
    }
    s
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#aec7e8", "#d62728", "#2ca02c", "#9467bd", "#7f7f7f", "#ff7f0e", "#8c564b",
];

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A grouped bar chart: one group per thread count, one bar per peer, y axis from zero.
fn svg_chart(
    title: &str,
    rows: &[Row],
    set: &Set,
    peers: &[String],
    value: impl Fn(&Row) -> f64,
) -> String {
    let threads = set.threads;
    let (w, h) = (760.0f64, 420.0f64);
    let (left, right, top, bottom) = (70.0, 150.0, 40.0, 50.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let vals: Vec<Vec<Option<f64>>> = threads
        .iter()
        .map(|&t| {
            peers
                .iter()
                .map(|p| {
                    rows.iter()
                        .find(|r| r.set == set.name && &r.peer == p && r.threads == t)
                        .map(&value)
                })
                .collect()
        })
        .collect();
    let vmax = vals
        .iter()
        .flatten()
        .flatten()
        .cloned()
        .fold(0.0f64, f64::max);
    let (step, top_v) = nice_axis(vmax);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        left + pw / 2.0,
        xml_escape(title)
    );
    // Y grid and labels.
    let mut v = 0.0;
    while v <= top_v + step * 0.01 {
        let y = top + ph - v / top_v * ph;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + pw,
            left - 6.0,
            y + 4.0,
            fmt_tick(v, step)
        );
        v += step;
    }
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{:.1}" stroke="black"/><line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
        top + ph,
        top + ph,
        left + pw,
        top + ph
    );
    // Bars.
    let gw = pw / threads.len() as f64;
    let bw = gw * 0.8 / peers.len() as f64;
    for (gi, &t) in threads.iter().enumerate() {
        let gx = left + gi as f64 * gw + gw * 0.1;
        for (pi, val) in vals[gi].iter().enumerate() {
            if let Some(val) = val {
                let bh = val / top_v * ph;
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {} threads: {:.2}</title></rect>"#,
                    gx + pi as f64 * bw,
                    top + ph - bh,
                    bw * 0.92,
                    bh,
                    COLORS[pi % COLORS.len()],
                    xml_escape(&peers[pi]),
                    t,
                    val
                );
            }
        }
        let label = if set.handoff {
            format!("{t}:1")
        } else {
            format!("{t} thread{}", if t == 1 { "" } else { "s" })
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            gx + gw * 0.4,
            top + ph + 18.0,
        );
    }
    // Legend.
    for (pi, p) in peers.iter().enumerate() {
        let y = top + 10.0 + pi as f64 * 20.0;
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            left + pw + 15.0,
            y,
            COLORS[pi % COLORS.len()],
            left + pw + 32.0,
            y + 10.0,
            xml_escape(p)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A round tick step and axis top for values up to `vmax`.
fn nice_axis(vmax: f64) -> (f64, f64) {
    if vmax <= 0.0 {
        return (1.0, 5.0);
    }
    let raw = vmax / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (step, (vmax / step).ceil() * step)
}

fn fmt_tick(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else {
        let decimals = (-step.log10().floor()) as usize + 1;
        format!("{v:.decimals$}")
    }
}

// ---- main ----------------------------------------------------------------------------------

const USAGE: &str = "\
usage:
  rpbench run [--alloc NAME] [--mode random|larson|realloc|handoff] [--threads N]
              [--loops N] [--allocs N] [--op-count N] [--min BYTES] [--max BYTES]
              [--dist even|linear|exp] [--cross-rate N] [--passes N] [--rounds N]
              [--seed N] [--quiet] [--phase-rss] [--span-pages] [--idle-ms N]
              handoff only (--threads = producers): [--mix small|medium|large|mixed]
              [--blocks N] [--batch N] [--queue N]
              (--idle-ms: light activity after the work before the last RSS reading;
              2000 for handoff unless given, none for the other modes)
  rpbench all [--threads 1,2,8] [--peers a,b,...] [--sets classic,handoff,std1,...]
              [--scale F] [--repeat N] [--docs DIR | --no-docs] [run options...]
allocators: ours, ours-nocache, crpmalloc, mimalloc, jemalloc, system (built with
  `--features stats`, `run --alloc ours` also prints where ours' memory is)
sets: std1 std2 larson realloc (group `classic`, at 1, 2, 8 threads), handoff-small
handoff-medium handoff-large handoff-mixed (group `handoff`, at 1 and 4 producers)
`run` prints a RESULT line on stdout (with `--phase-rss`, also each pass's and round's own
peak RSS on stderr; with `--span-pages`, resident pages per 64 KiB span at each pass's end);
`all` runs each configuration in its own process, prints a report and writes
DIR/benchmarks-throughput.md (classic sets), DIR/benchmarks-handoff.md (hand-off sets) and
DIR/benchmarks-<set>-{ops,rss,idle}.svg (DIR defaults to <repo>/docs).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => cmd_run(&args[1..]),
        Some("all") => cmd_all(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rpbench: {e}");
            ExitCode::FAILURE
        }
    }
}

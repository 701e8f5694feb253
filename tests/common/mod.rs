//! Helpers shared by the integration tests: a byte pattern that detects lost, moved or
//! mixed-up contents, sampled so multi-megabyte blocks stay cheap to check in debug
//! builds, and a small xorshift generator (no `rand` dependency).
#![allow(dead_code)]

use std::alloc::Layout;
use std::ops::Range;

/// Every byte below this offset is written and checked; beyond it only samples are.
pub const DENSE: usize = 64 * 1024;
/// Bytes written at each page-sized stride beyond [`DENSE`].
const SAMPLE: usize = 16;
/// Stride between samples beyond [`DENSE`].
const STRIDE: usize = 4096;
/// Bytes at the end of a block that are always written and checked.
const TAIL: usize = 4096;

/// The pattern byte at offset `i` of a block filled with `seed`: differs between
/// neighbouring offsets, between pages and between seeds.
#[inline]
pub fn pattern(i: usize, seed: u64) -> u8 {
    let x = (i as u64) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x ^ (x >> 7) ^ (x >> 13) ^ (x >> 29) ^ (seed >> 3)) as u8
}

/// The byte ranges of a `len`-byte block that [`fill`] writes.
pub fn sampled_ranges(len: usize) -> Vec<Range<usize>> {
    let mut ranges = vec![0..len.min(DENSE)];
    let mut off = DENSE;
    while off < len {
        ranges.push(off..(off + SAMPLE).min(len));
        off += STRIDE;
    }
    if len > DENSE {
        ranges.push(len.saturating_sub(TAIL).max(DENSE)..len);
    }
    ranges
}

/// Writes the pattern of `seed` over the sampled ranges of `len` bytes at `p`.
///
/// # Safety
/// `p` is valid for writes of `len` bytes.
pub unsafe fn fill(p: *mut u8, len: usize, seed: u64) {
    for r in sampled_ranges(len) {
        for i in r {
            // SAFETY: i < len, per the contract.
            unsafe { p.add(i).write(pattern(i, seed)) };
        }
    }
}

/// Checks what [`fill`] wrote for a `filled`-byte block, restricted to the first `upto`
/// bytes (after a shrinking realloc); panics naming the first wrong byte.
///
/// # Safety
/// `p` is valid for reads of `upto.min(filled)` bytes.
pub unsafe fn check_prefix(p: *const u8, filled: usize, upto: usize, seed: u64, what: &str) {
    let end = filled.min(upto);
    for r in sampled_ranges(filled) {
        for i in r.start.min(end)..r.end.min(end) {
            // SAFETY: i < end, per the contract.
            let got = unsafe { p.add(i).read() };
            assert_eq!(
                got,
                pattern(i, seed),
                "{what}: byte {i} of {filled} (seed {seed}) was overwritten"
            );
        }
    }
}

/// Checks what [`fill`] wrote over `len` bytes.
///
/// # Safety
/// `p` is valid for reads of `len` bytes.
pub unsafe fn check(p: *const u8, len: usize, seed: u64, what: &str) {
    // SAFETY: forwarded contract.
    unsafe { check_prefix(p, len, len, seed, what) }
}

/// Asserts that all `len` bytes at `p` are zero (compared a page at a time, so it is
/// fast even unoptimised).
///
/// # Safety
/// `p` is valid for reads of `len` bytes.
pub unsafe fn assert_zeroed(p: *const u8, len: usize, what: &str) {
    static ZERO: [u8; 4096] = [0; 4096];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(ZERO.len());
        // SAFETY: [off, off + n) lies inside the block, per the contract.
        let chunk = unsafe { std::slice::from_raw_parts(p.add(off), n) };
        if chunk != &ZERO[..n] {
            let at = chunk.iter().position(|&b| b != 0).unwrap() + off;
            panic!("{what}: byte {at} of {len} is not zero");
        }
        off += n;
    }
}

/// Asserts that no two of the byte ranges `[start, start + len)` overlap.
pub fn assert_disjoint(blocks: &mut [(usize, usize, &'static str)]) {
    blocks.sort_unstable();
    for pair in blocks.windows(2) {
        let (a, a_len, a_from) = pair[0];
        let (b, _, b_from) = pair[1];
        assert!(
            a + a_len <= b,
            "block {a:#x}+{a_len} from {a_from} overlaps block {b:#x} from {b_from}"
        );
    }
}

/// `Layout::from_size_align(size, align).unwrap()`.
pub fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Marsaglia's xorshift64: deterministic, cheap, good enough to pick sizes.
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `range` (half-open).
    pub fn range(&mut self, range: Range<usize>) -> usize {
        range.start + (self.next_u64() % (range.end - range.start) as u64) as usize
    }

    /// Roughly log-uniform in `[lo, hi]`: as many small sizes as big ones.
    pub fn log_size(&mut self, lo: usize, hi: usize) -> usize {
        let lo_bits = usize::BITS - lo.leading_zeros() - 1;
        let hi_bits = usize::BITS - hi.leading_zeros();
        let bits = self.range(lo_bits as usize..hi_bits as usize);
        let base = 1usize << bits;
        (base + self.range(0..base)).clamp(lo, hi)
    }
}

//! Helpers shared by the integration tests: a byte pattern that detects lost, moved or
//! mixed-up contents, sampled so multi-megabyte blocks stay cheap to check in debug
//! builds, and a small xorshift generator (no `rand` dependency).
//!
//! Under Miri, which interprets every step (and an allocation or a free of the allocator
//! costs tens of milliseconds there), [`scaled`] and [`thinned`] shrink the tests' counts
//! and sizes, and the pattern is written and checked more sparsely ([`DENSE`], `STRIDE`,
//! `TAIL`); normal builds are unchanged.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ops::Range;

/// `n` in a normal build; under Miri, which interprets every instruction (hundreds of
/// times slower), `n / 500` (at least 1), as `scaled` of the unit tests. Tests scale their
/// counts and sizes with it, never their logic.
pub const fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        if n / 500 > 0 {
            n / 500
        } else {
            1
        }
    } else {
        n
    }
}

/// All of `items` in a normal build; under Miri every `n`-th of them and the last one (so
/// both extremes stay): fewer cases of a list, each run as in a normal build.
pub fn thinned<T: Clone>(items: &[T], n: usize) -> Vec<T> {
    if !cfg!(miri) {
        return items.to_vec();
    }
    let mut kept: Vec<T> = items.iter().step_by(n).cloned().collect();
    if !items.is_empty() && !(items.len() - 1).is_multiple_of(n) {
        kept.extend(items.last().cloned());
    }
    kept
}

/// Every byte below this offset is written and checked; beyond it only samples are
/// (under Miri, 256 bytes, so big blocks stay cheap).
pub const DENSE: usize = if cfg!(miri) { 256 } else { 64 * 1024 };
/// Bytes written at each stride beyond [`DENSE`].
const SAMPLE: usize = 16;
/// Stride between samples beyond [`DENSE`]: a page (under Miri, 1 MiB).
const STRIDE: usize = if cfg!(miri) { 1 << 20 } else { 4096 };
/// Bytes at the end of a block that are always written and checked (under Miri, 256).
const TAIL: usize = if cfg!(miri) { 256 } else { 4096 };

/// Period of the pattern: a prime, so pages and power-of-two strides never line up.
const PERIOD: usize = 65_521;

/// Pseudo-random bytes the pattern cycles through.
static TABLE: [u8; PERIOD] = {
    let mut t = [0u8; PERIOD];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut i = 0;
    while i < PERIOD {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t[i] = (x >> 32) as u8;
        i += 1;
    }
    t
};

/// Where the pattern of `seed` starts in [`TABLE`].
fn phase(seed: u64) -> usize {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) as usize % PERIOD
}

/// The pattern byte at offset `i` of a block filled with `seed`: pseudo-random, so a
/// byte moved to another offset or a block filled with another seed is caught.
#[inline]
pub fn pattern(i: usize, seed: u64) -> u8 {
    TABLE[(i + phase(seed)) % PERIOD]
}

/// Calls `f(offset, pattern bytes)` for consecutive pieces of the pattern of `seed` over
/// `range`, so callers can use `memcpy`/`memcmp` (fast even unoptimised).
fn pieces(range: std::ops::Range<usize>, seed: u64, mut f: impl FnMut(usize, &[u8])) {
    let mut i = range.start;
    while i < range.end {
        let t = (i + phase(seed)) % PERIOD;
        let n = (range.end - i).min(PERIOD - t);
        f(i, &TABLE[t..t + n]);
        i += n;
    }
}

/// A vector of `len` bytes of the pattern of `seed`, built from pieces of the pattern
/// table (one copy each: cheap under Miri, which interprets a loop over the bytes step by
/// step); it allocates exactly `len` bytes, as `collect` would.
pub fn pattern_vec(len: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    pieces(0..len, seed, |_, bytes| v.extend_from_slice(bytes));
    v
}

/// Whether `bytes` hold the pattern of `seed` (what [`pattern_vec`] made), every byte
/// compared, a piece at a time.
pub fn has_pattern(bytes: &[u8], seed: u64) -> bool {
    let mut same = true;
    pieces(0..bytes.len(), seed, |off, want| {
        same &= bytes[off..off + want.len()] == *want;
    });
    same
}

/// Whether every byte of `bytes` is `value`: the first compared, then the rest with the
/// bytes before them (one `memcmp`, cheap under Miri, unlike a loop over the bytes).
pub fn all_bytes_are(bytes: &[u8], value: u8) -> bool {
    match bytes.split_first() {
        None => true,
        Some((&first, rest)) => first == value && *rest == bytes[..rest.len()],
    }
}

/// The byte ranges of a `len`-byte block that [`fill`] writes.
pub fn sampled_ranges(len: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::with_capacity(2 + len.saturating_sub(DENSE) / STRIDE);
    ranges.push(0..len.min(DENSE));
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
        pieces(r, seed, |off, bytes| {
            // SAFETY: off + bytes.len() <= len, per the contract.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.add(off), bytes.len()) };
        });
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
        pieces(r.start.min(end)..r.end.min(end), seed, |off, want| {
            // SAFETY: off + want.len() <= end, per the contract.
            let got = unsafe { std::slice::from_raw_parts(p.add(off), want.len()) };
            if got != want {
                let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap();
                panic!(
                    "{what}: byte {} of {filled} (seed {seed}) is {:#04x}, expected {:#04x}",
                    off + at,
                    got[at],
                    want[at]
                );
            }
        });
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
/// fast even unoptimised; under Miri, whose cost is per comparison, 1 MiB at a time).
///
/// # Safety
/// `p` is valid for reads of `len` bytes.
pub unsafe fn assert_zeroed(p: *const u8, len: usize, what: &str) {
    static ZERO: [u8; if cfg!(miri) { 1 << 20 } else { 4096 }] = [0; _];
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

/// The OS page size.
pub fn page_size() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        assert!(page > 0);
        page as usize
    }
    #[cfg(not(unix))]
    4096
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

/// A raw block of a `GlobalAlloc`, filled with its seed's pattern, that can cross threads.
#[derive(Debug)]
pub struct Raw {
    /// The block's address.
    pub addr: usize,
    /// The layout it was allocated with.
    pub layout: Layout,
    /// The pattern seed it was filled with.
    pub seed: u64,
}

impl Raw {
    /// Allocates `layout` from `a`, checks alignment and fills the block.
    pub fn new(a: &dyn GlobalAlloc, layout: Layout, seed: u64) -> Raw {
        // SAFETY: the tests only use non-zero sizes.
        let p = unsafe { a.alloc(layout) };
        assert!(!p.is_null(), "{layout:?} refused");
        assert_eq!(p as usize % layout.align(), 0, "{layout:?} misaligned");
        // SAFETY: p holds layout.size() bytes.
        unsafe { fill(p, layout.size(), seed) };
        Raw {
            addr: p as usize,
            layout,
            seed,
        }
    }

    /// Checks the contents and frees the block with `a`, which allocated it.
    pub fn check_and_free(self, a: &dyn GlobalAlloc, what: &str) {
        let p = self.addr as *mut u8;
        // SAFETY: a live block of `a` with this layout, freed once.
        unsafe {
            check(p, self.layout.size(), self.seed, what);
            a.dealloc(p, self.layout);
        }
    }
}

/// Thread-exit keys for tests, on the platform's mechanism (as the allocator's own): a
/// pthread key destructor on Unix, a fiber-local storage callback on Windows. A key made
/// after an allocator set up its own runs after it (both run keys in creation order),
/// so what its hook allocates takes the allocator's after-exit path.
pub mod exit_key {
    use core::ffi::c_void;

    /// Whether a hook that sets its key's value again runs again (POSIX's pthread keys do,
    /// up to `PTHREAD_DESTRUCTOR_ITERATIONS` times).
    pub const RERUNS: bool = cfg!(unix);

    /// What a key's hook runs.
    pub trait OnExit {
        /// Runs as a thread that gave the key a non-null value exits, with that value.
        fn on_exit(value: *mut u8);
    }

    /// A new key whose hook runs `H::on_exit`.
    pub fn create<H: OnExit>() -> usize {
        #[cfg(unix)]
        {
            let mut key: libc::pthread_key_t = 0;
            // SAFETY: a valid out pointer and destructor.
            let rc = unsafe { libc::pthread_key_create(&mut key, Some(hook::<H>)) };
            assert_eq!(rc, 0, "pthread_key_create");
            key as usize
        }
        #[cfg(windows)]
        {
            // SAFETY: a valid callback.
            let index = unsafe { FlsAlloc(Some(hook::<H>)) };
            assert_ne!(index, u32::MAX, "FlsAlloc");
            index as usize
        }
    }

    /// Gives the calling thread's `key` the value `value`.
    pub fn set(key: usize, value: *mut u8) {
        #[cfg(unix)]
        {
            // SAFETY: a key `create` made.
            let rc = unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, value.cast()) };
            assert_eq!(rc, 0, "pthread_setspecific");
        }
        #[cfg(windows)]
        {
            // SAFETY: an index `create` made.
            let ok = unsafe { FlsSetValue(key as u32, value.cast()) };
            assert_ne!(ok, 0, "FlsSetValue");
        }
    }

    #[cfg(unix)]
    unsafe extern "C" fn hook<H: OnExit>(value: *mut c_void) {
        H::on_exit(value.cast());
    }

    #[cfg(windows)]
    unsafe extern "system" fn hook<H: OnExit>(value: *const c_void) {
        if !value.is_null() {
            H::on_exit(value.cast_mut().cast());
        }
    }

    #[cfg(windows)]
    #[link(name = "kernel32")]
    extern "system" {
        fn FlsAlloc(callback: Option<unsafe extern "system" fn(*const c_void)>) -> u32;
        fn FlsSetValue(index: u32, value: *const c_void) -> i32;
    }
}

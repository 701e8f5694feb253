//! Measurements of the process: thread CPU time, RSS and peak RSS, the `--phase-rss` and
//! `--span-pages` diagnostics, and `ours`' statistics.

use std::sync::atomic::{AtomicU64, Ordering};

use rpmalloc_bench::ours_stats;

pub(crate) fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `(VmRSS, VmHWM)` of this process in bytes.
pub(crate) fn rss() -> (u64, u64) {
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
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Highest `VmHWM` seen before a `--phase-rss` mark reset it.
pub(crate) static PEAK_BEFORE_RESET: AtomicU64 = AtomicU64::new(0);

/// `--phase-rss`: prints the peak RSS since the previous mark and resets the kernel's peak
/// (`clear_refs` 5), so each pass and round shows its own; the run's peak stays the
/// highest of them.
pub(crate) fn phase_mark(label: &str) {
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
pub(crate) fn span_pages(label: &str) {
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

/// With `--features stats`, `ours`' statistics: where its memory is (`label` says when).
pub(crate) fn print_ours_stats(label: &str) {
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

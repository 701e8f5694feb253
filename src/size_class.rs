//! Size classes, derived from the span size in one place.
//!
//! Small classes step by 16 bytes up to 1 KiB, medium classes by 256 bytes up to 32 512
//! bytes or the largest size of which two blocks still fit a span. rpmalloc steps medium
//! classes by 512 bytes; half the step cuts the rounding waste of blocks between 1 and
//! 8 KiB by a third (measured: 4–5 % less peak RSS in the 16–8000 byte benchmark). Neighbouring classes
//! whose span holds the same number of blocks are merged into the larger one, as rpmalloc
//! does: the smaller class would only waste the tail of the span.
//!
//! The whole table is a `const` evaluated per configuration, so a lookup on the fast path
//! is one load from read-only data: `class_of[(size + 15) >> 4]`.

use crate::span::SPAN_HEADER_SIZE;

/// Granularity of small classes.
pub(crate) const SMALL_GRANULARITY: usize = 16;
/// log2 of [`SMALL_GRANULARITY`].
pub(crate) const SMALL_GRANULARITY_SHIFT: u32 = 4;
/// Largest small block size.
pub(crate) const SMALL_SIZE_LIMIT: usize = 1024;
/// Number of small classes (16, 32, ..., 1024).
pub(crate) const SMALL_CLASS_COUNT: usize = SMALL_SIZE_LIMIT / SMALL_GRANULARITY;
/// Granularity of medium classes.
pub(crate) const MEDIUM_GRANULARITY: usize = 256;
/// Number of medium classes at most (1280 ..= 32 512).
pub(crate) const MEDIUM_CLASS_COUNT: usize = 123;
/// Step a medium block that grows by `realloc` is rounded up to, on top of the 37.5 %
/// headroom: rpmalloc's coarser medium step, so a buffer growing in small steps moves as
/// seldom as with rpmalloc's classes (each move is a copy; with the finer classes alone
/// the realloc benchmark moved more and ran 4 % slower).
pub(crate) const REALLOC_GRANULARITY: usize = 2 * MEDIUM_GRANULARITY;
/// Largest medium block size for any span size.
pub(crate) const MEDIUM_SIZE_LIMIT: usize =
    SMALL_SIZE_LIMIT + MEDIUM_CLASS_COUNT * MEDIUM_GRANULARITY;
/// Upper bound on the number of classes of any configuration; arrays are sized by it.
pub(crate) const MAX_CLASS_COUNT: usize = SMALL_CLASS_COUNT + MEDIUM_CLASS_COUNT;
// Class indices are stored as `u8` (the size-to-class table, `Span::class`).
const _: () = assert!(MAX_CLASS_COUNT <= 256, "class indices must fit a u8");
/// Length of the size-to-class table: one entry per 16-byte granule up to the medium limit.
pub(crate) const CLASS_TABLE_LEN: usize = (MEDIUM_SIZE_LIMIT >> SMALL_GRANULARITY_SHIFT) + 1;

/// The size classes of one span size.
pub(crate) struct SizeClasses {
    /// Class index of each 16-byte granule: `class_of[(size + 15) >> 4]`.
    pub class_of: [u8; CLASS_TABLE_LEN],
    /// Block size of each class (merged classes hold the size of the class they merged into).
    pub block_size: [u32; MAX_CLASS_COUNT],
    /// Blocks per span of each class.
    pub block_count: [u32; MAX_CLASS_COUNT],
    /// Largest size served from a size class; above it allocations take whole spans.
    pub medium_limit: usize,
}

/// Block size of class `class` before merging.
const fn raw_class_size(class: usize) -> usize {
    if class < SMALL_CLASS_COUNT {
        (class + 1) * SMALL_GRANULARITY
    } else {
        SMALL_SIZE_LIMIT + (class - SMALL_CLASS_COUNT + 1) * MEDIUM_GRANULARITY
    }
}

/// Class of a (non-zero) size rounded to the 16-byte granule, before merging.
const fn raw_class_of(size: usize) -> usize {
    if size <= SMALL_SIZE_LIMIT {
        size.div_ceil(SMALL_GRANULARITY) - 1
    } else {
        SMALL_CLASS_COUNT + (size - SMALL_SIZE_LIMIT).div_ceil(MEDIUM_GRANULARITY) - 1
    }
}

impl SizeClasses {
    /// Builds the table for `span_size` (a power of two, at least 4 KiB).
    pub(crate) const fn new(span_size: usize) -> Self {
        let usable = span_size - SPAN_HEADER_SIZE;
        let mut block_size = [0u32; MAX_CLASS_COUNT];
        let mut block_count = [0u32; MAX_CLASS_COUNT];
        // Merge target of each class: the largest class with the same block count.
        let mut merged_into = [0u8; MAX_CLASS_COUNT];
        let mut class_count = 0;
        let mut class = 0;
        while class < MAX_CLASS_COUNT {
            let size = raw_class_size(class);
            if usable / size < 2 && size > SMALL_SIZE_LIMIT {
                break;
            }
            block_size[class] = size as u32;
            block_count[class] = (usable / size) as u32;
            merged_into[class] = class as u8;
            class_count = class + 1;
            class += 1;
        }
        // Walk down so each class points at the largest neighbour with its block count.
        let mut i = class_count;
        while i > 1 {
            i -= 1;
            let prev = i - 1;
            if block_count[prev] == block_count[i] {
                merged_into[prev] = merged_into[i];
                block_size[prev] = block_size[i];
            }
        }
        let medium_limit = raw_class_size(class_count - 1);
        let mut class_of = [0u8; CLASS_TABLE_LEN];
        let mut granule = 0;
        while granule < CLASS_TABLE_LEN {
            let size = granule * SMALL_GRANULARITY;
            let size = if size == 0 { SMALL_GRANULARITY } else { size };
            class_of[granule] = if size <= medium_limit {
                merged_into[raw_class_of(size)]
            } else {
                // Never read: sizes above the medium limit take the span path.
                merged_into[class_count - 1]
            };
            granule += 1;
        }
        SizeClasses {
            class_of,
            block_size,
            block_count,
            medium_limit,
        }
    }

    /// The class serving `size` (at most `medium_limit`).
    #[inline(always)]
    pub(crate) fn class_of(&self, size: usize) -> usize {
        debug_assert!(size <= self.medium_limit);
        let granule = (size + SMALL_GRANULARITY - 1) >> SMALL_GRANULARITY_SHIFT;
        // SAFETY: size <= medium_limit <= MEDIUM_SIZE_LIMIT, so granule < CLASS_TABLE_LEN.
        (unsafe { *self.class_of.get_unchecked(granule) }) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(span_size: usize) {
        let t = SizeClasses::new(span_size);
        let usable = span_size - SPAN_HEADER_SIZE;
        assert!(t.medium_limit >= SMALL_SIZE_LIMIT);
        assert!(t.medium_limit <= MEDIUM_SIZE_LIMIT);
        let mut prev_class = 0;
        // Under Miri (which checks `class_of`'s unchecked index) the sizes at each
        // granule's edges only.
        let sizes = (1..=t.medium_limit).filter(|s| !cfg!(miri) || s % SMALL_GRANULARITY <= 1);
        for size in sizes {
            let c = t.class_of(size);
            let bs = t.block_size[c] as usize;
            assert!(
                bs >= size,
                "span {span_size}: size {size} got class {c} of {bs}"
            );
            assert_eq!(bs % SMALL_GRANULARITY, 0);
            assert!(c >= prev_class, "classes grow with size");
            prev_class = c;
            let count = t.block_count[c] as usize;
            assert_eq!(count, usable / bs, "block count of class {c}");
            assert!(count >= 2 || bs <= SMALL_SIZE_LIMIT);
            // No waste beyond the granularity unless a merge kept the block count.
            let raw = raw_class_size(raw_class_of(size));
            assert!(bs == raw || usable / bs == usable / raw);
        }
        assert_eq!(t.class_of(0), t.class_of(1));
    }

    #[test]
    fn tables_are_consistent_for_every_span_size() {
        let mut span = 4096;
        while span <= 262_144 {
            check(span);
            // Under Miri every fourth span size.
            span *= if cfg!(miri) { 16 } else { 2 };
        }
    }

    #[test]
    fn default_span_limits() {
        let t = SizeClasses::new(65536);
        // rpmalloc's limit is 32 256, the last 512-byte step under half the span.
        assert_eq!(t.medium_limit, 32_512);
        assert_eq!(t.block_size[t.class_of(16)], 16);
        assert_eq!(t.block_size[t.class_of(17)], 32);
        assert_eq!(t.block_size[t.class_of(1024)], 1024);
        assert_eq!(t.block_size[t.class_of(1025)], 1280);
        let small = SizeClasses::new(4096);
        assert!(small.medium_limit < 2048);
        assert!(small.block_count[small.class_of(small.medium_limit)] >= 2);
    }
}

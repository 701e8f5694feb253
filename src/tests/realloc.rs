//! `realloc`: contents kept across every kind, growth in place over the reserve, headroom
//! for blocks growing in small steps, the realloc step of medium blocks.

use super::*;

#[test]
fn realloc_grows_and_shrinks_keeping_contents() {
    let mut layout = Layout::from_size_align(8, 8).unwrap();
    // SAFETY: valid layout; each realloc passes the current layout.
    unsafe {
        let mut p = api::alloc::<Default64k>(layout);
        fill(p, 8, 3);
        let mut size = 8;
        while size < (16 << 20) {
            let new = size * 2;
            p = api::realloc::<Default64k>(p, layout, new);
            assert!(!p.is_null());
            check(p, size.min(8), 3);
            layout = Layout::from_size_align(new, 8).unwrap();
            size = new;
        }
        fill(p, 4096, 9);
        let q = api::realloc::<Default64k>(p, layout, 100);
        check(q, 100, 9);
        api::dealloc::<Default64k>(q, Layout::from_size_align(100, 8).unwrap());
    }
}

// Used by one test only, so its heap starts with a fresh mapping.
test_config!(GrowInPlace, typenum::U65536);

/// Bytes of the growing block written and checked (fewer under Miri).
const GROW_FILL: usize = if cfg!(miri) { 4096 } else { 100_000 };

#[test]
fn large_blocks_grow_in_place_over_the_reserve() {
    std::thread::spawn(|| {
        let layout = Layout::from_size_align(100_000, 16).unwrap();
        // SAFETY: valid layouts; each realloc passes the block's current layout.
        unsafe {
            let p = api::alloc::<GrowInPlace>(layout);
            fill(p, GROW_FILL, 5);
            // The run was cut from the front of a fresh mapping; the spans after it are
            // this thread's reserve, so growing takes them without moving.
            let q = api::realloc::<GrowInPlace>(p, layout, 1 << 20);
            assert_eq!(q, p, "grown in place");
            check(q, GROW_FILL, 5);
            q.add((1 << 20) - 1).write(7);
            let grown = Layout::from_size_align(1 << 20, 16).unwrap();
            // Another block now follows it: the next growth has to move, keeping contents.
            let other = api::alloc::<GrowInPlace>(layout);
            let r = api::realloc::<GrowInPlace>(q, grown, 3 << 20);
            assert_ne!(r, q);
            check(r, GROW_FILL, 5);
            assert_eq!(*r.add((1 << 20) - 1), 7);
            api::dealloc::<GrowInPlace>(r, Layout::from_size_align(3 << 20, 16).unwrap());
            api::dealloc::<GrowInPlace>(other, layout);
        }
    })
    .join()
    .unwrap();
}

#[test]
fn a_buffer_growing_in_small_steps_moves_a_logarithmic_number_of_times() {
    // From 1 KiB to the top medium class in 64-byte steps: 492 reallocs. Each move leaves
    // 37.5 % headroom, rounded up to 512 bytes, so the block moves at most about
    // log₁.₃₇₅(32) ≈ 11 times (8 here, 9 without the rounding); without headroom it would
    // move at every distinct medium class (25 times).
    let mut size = 1024;
    let mut layout = Layout::from_size_align(size, 8).unwrap();
    // SAFETY: non-zero layout; every realloc passes the block's current layout.
    let mut p = unsafe { api::alloc::<Default64k>(layout) };
    fill(p, size, 7);
    let mut moves = 0;
    while size + 64 <= Default64k::MEDIUM_LIMIT {
        // SAFETY: as above.
        let q = unsafe { api::realloc::<Default64k>(p, layout, size + 64) };
        assert!(!q.is_null());
        if q != p {
            moves += 1;
            // A move copied the contents (in place, nothing touched them).
            check(q, size, 7);
        }
        fill(q.wrapping_add(size), 64, 7u8.wrapping_add(size as u8));
        p = q;
        size += 64;
        layout = Layout::from_size_align(size, 8).unwrap();
    }
    assert!((8..=12).contains(&moves), "{moves} moves");
    check(p, size, 7);
    // SAFETY: the live block with its layout.
    unsafe { api::dealloc::<Default64k>(p, layout) };
}

#[test]
fn a_growing_medium_block_is_rounded_up_to_the_coarser_realloc_step() {
    // 1280 bytes is a class of its own. Growing it by one byte moves it with 37.5 %
    // headroom (1760 bytes), rounded up to 512: a 2048-byte block, so growing on to 2048
    // stays in place. Without the rounding it would move into the 1792-byte class.
    let small = Layout::from_size_align(1280, 8).unwrap();
    // SAFETY: non-zero layouts; each realloc passes the block's current layout.
    unsafe {
        let p = api::alloc::<Default64k>(small);
        fill(p, 1280, 3);
        let q = api::realloc::<Default64k>(p, small, 1281);
        assert!(!q.is_null());
        assert_ne!(q, p, "1281 bytes do not fit the 1280-byte class");
        check(q, 1280, 3);
        let grown = Layout::from_size_align(1281, 8).unwrap();
        let r = api::realloc::<Default64k>(q, grown, 2048);
        assert_eq!(r, q, "the moved block has room for 2048 bytes");
        check(r, 1280, 3);
        api::dealloc::<Default64k>(r, Layout::from_size_align(2048, 8).unwrap());
    }
}

// Used by one test only: its live-byte counter is not shared.
test_config!(CountedRealloc, typenum::U65536, ENABLE_STATISTICS: bool = true);

/// A block moved by a growing `realloc` gets headroom beyond the size asked; the live
/// bytes counted are the size the caller holds (and will free), not the headroom: the
/// counter is back at zero once everything is freed.
#[test]
fn live_bytes_count_the_size_asked_not_the_headroom() {
    let live = || api::statistics::<CountedRealloc>().unwrap().live;
    let before = live();
    let mut layout = Layout::from_size_align(24, 8).unwrap();
    // SAFETY: valid layouts; each realloc passes the block's current layout.
    unsafe {
        let mut p = api::alloc::<CountedRealloc>(layout);
        for new in [40usize, 700, 3000, 50_000, 300_000, 3 << 20, 100] {
            p = api::realloc::<CountedRealloc>(p, layout, new);
            assert!(!p.is_null());
            layout = Layout::from_size_align(new, 8).unwrap();
            assert_eq!(live() - before, new, "after realloc to {new}");
        }
        api::dealloc::<CountedRealloc>(p, layout);
    }
    assert_eq!(live(), before);
}

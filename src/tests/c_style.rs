//! The C-style entry points (`c_style.rs`): ownership from the registry of mappings, and
//! `free`/`realloc` without a layout keeping contents and statistics exact.

use super::*;
use crate::c_style;

// Used by one test only (see `span_counting_config!`): its mappings go back to the OS as
// soon as their blocks are freed, so the registry must forget them.
span_counting_config!(Owned, typenum::U16384);

/// Every kind of block (small, medium, large, huge, aligned to the span size or more) is
/// owned while it lives and its start is forgotten once its mapping is unmapped; addresses
/// outside the allocator's mappings — the stack, a static, another configuration's block —
/// are not owned, and `free` leaves them alone.
#[test]
fn the_registry_owns_exactly_the_live_mappings() {
    static NOT_OURS: [u8; 64] = [0; 64];
    let on_stack = [0u8; 64];
    for p in [NOT_OURS.as_ptr(), on_stack.as_ptr()] {
        assert!(!c_style::owns::<Owned>(p));
        // SAFETY: not in the configuration's memory: `free` must not touch it.
        assert!(!unsafe { c_style::free::<Owned>(p.cast_mut()) });
        // SAFETY: as above.
        assert_eq!(unsafe { c_style::usable_size::<Owned>(p) }, None);
    }
    let before = api::statistics::<Owned>().unwrap();
    let span = <Owned as Params>::SPAN_SIZE;
    let cases = [
        (24usize, 16usize),
        (3000, 16),
        (100_000, 16),
        (5 << 20, 16),
        (100, span),
        (300_000, 4 * span),
        (70, 4096),
    ];
    for (size, align) in cases {
        // SAFETY: a power-of-two alignment.
        let p = unsafe { c_style::malloc::<Owned>(size, align, false) };
        assert!(!p.is_null());
        assert_eq!(p.addr() % align, 0);
        assert!(c_style::owns::<Owned>(p), "{size} B aligned {align}");
        // Not another configuration's.
        assert!(!c_style::owns::<Default64k>(p));
        // SAFETY: a live block of `Owned`; `size` bytes written, then freed once.
        unsafe {
            p.write_bytes(0x6B, size);
            assert!(c_style::usable_size::<Owned>(p).unwrap() >= size);
            assert!(c_style::free::<Owned>(p));
        }
        // A run or a huge block: the cacheless configuration unmapped it, so its start
        // is no block of ours now. (A small block's span stays the heap's active one.)
        if size > <Owned as Params>::MEDIUM_LIMIT || align >= span {
            assert!(
                !c_style::owns::<Owned>(p),
                "{size} B aligned {align} after free"
            );
        }
    }
    let after = api::statistics::<Owned>().unwrap();
    assert_eq!(after.live, before.live, "live bytes counted back exactly");
}

/// `realloc` without a layout keeps the contents through every kind (in place and
/// moving), and with statistics on the live bytes come back to where they were.
#[test]
fn realloc_without_a_layout_keeps_contents_and_counts() {
    let before = api::statistics::<Default64k>().unwrap().live;
    // SAFETY: a power-of-two alignment.
    let mut p = unsafe { c_style::malloc::<Default64k>(10, 16, false) };
    let mut size = 10usize;
    // SAFETY: `p` is a live block of `size` bytes, all written.
    unsafe { p.write_bytes(0x5C, size) };
    let steps = [100usize, 2000, 50_000, 3 << 20, 70_000, 500, 7];
    for new in steps {
        // SAFETY: a live block of the configuration; a non-zero size.
        let q = unsafe { c_style::realloc::<Default64k>(p, new) }.expect("ours");
        assert!(!q.is_null());
        let kept = size.min(new);
        // SAFETY: `q` holds `new` bytes; the first `kept` are the old contents.
        unsafe {
            let bytes = core::slice::from_raw_parts(q, kept);
            assert!(bytes.iter().all(|&b| b == 0x5C), "{size} -> {new}");
            q.write_bytes(0x5C, new);
        }
        p = q;
        size = new;
    }
    // SAFETY: the live block, freed once.
    assert!(unsafe { c_style::free::<Default64k>(p) });
    assert_eq!(api::statistics::<Default64k>().unwrap().live, before);
}

//! Model-based randomized test: random sequences of `alloc`, `alloc_zeroed`, `realloc`
//! (grow and shrink) and `dealloc` with sizes from 1 B to 4 MiB and alignments from 1 B to
//! 1 MiB, across two configurations in one binary. A shadow model holds every live block;
//! after every step the test checks contents, alignment, zeroing and that no two live
//! blocks overlap. Failing cases shrink to a minimal sequence.
//!
//! Cases: `PROPTEST_CASES` (default 64 here; raise it for a long run). Under Miri the
//! default is scaled down to 4 cases of at most 30 operations, each block is probed at its
//! first and last 16 bytes and every 64 KiB, and no regression file is read or written
//! (Miri isolates the file system).

use proptest::prelude::*;
use rpmalloc::define_rpmalloc;
use std::alloc::{GlobalAlloc, Layout};

define_rpmalloc!(ModelFast);
define_rpmalloc!(ModelLean, < enable_thread_cache: false, enable_global_cache: false, span_size: 4096, span_map_count: 3 >);

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        lean: bool,
        size: usize,
        align_log: u32,
        zeroed: bool,
    },
    Realloc {
        index: usize,
        size: usize,
    },
    Free {
        index: usize,
    },
}

fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 1usize..=1024,
        3 => 1025usize..=65_536,
        2 => 65_537usize..=(1 << 20),
        1 => (1usize << 20)..=(4 << 20),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (any::<bool>(), size_strategy(), 0u32..=20, any::<bool>())
            .prop_map(|(lean, size, align_log, zeroed)| Op::Alloc { lean, size, align_log, zeroed }),
        2 => (any::<usize>(), size_strategy()).prop_map(|(index, size)| Op::Realloc { index, size }),
        3 => any::<usize>().prop_map(|index| Op::Free { index }),
    ]
}

/// One more than the most operations in a case (under Miri, cases of at most 30).
const MAX_OPS: usize = if cfg!(miri) { 31 } else { 120 };

struct Live {
    ptr: *mut u8,
    layout: Layout,
    lean: bool,
    seed: u8,
}

fn allocator(lean: bool) -> &'static dyn GlobalAlloc {
    if lean {
        &ModelLean
    } else {
        &ModelFast
    }
}

/// Bytes at each end of a block the model writes and checks (16 under Miri).
const PROBE_ENDS: usize = if cfg!(miri) { 16 } else { 64 };
/// Stride of the probes in between (64 KiB under Miri, which checks every live block after
/// every step byte by byte).
const PROBE_STRIDE: usize = if cfg!(miri) { 64 << 10 } else { 4096 };

/// Offsets the model writes and checks: the first and last [`PROBE_ENDS`] bytes and every
/// [`PROBE_STRIDE`] bytes.
fn probe_offsets(size: usize) -> impl Iterator<Item = usize> {
    let head = 0..size.min(PROBE_ENDS);
    let tail = size.saturating_sub(PROBE_ENDS).max(PROBE_ENDS.min(size))..size;
    head.chain(tail).chain((0..size).step_by(PROBE_STRIDE))
}

fn byte(seed: u8, offset: usize) -> u8 {
    seed.wrapping_mul(31)
        .wrapping_add((offset as u8) ^ ((offset >> 12) as u8))
}

fn write(b: &Live) {
    for o in probe_offsets(b.layout.size()) {
        // SAFETY: o < size of the live block.
        unsafe { *b.ptr.add(o) = byte(b.seed, o) };
    }
}

fn verify(b: &Live, upto: usize) -> Result<(), TestCaseError> {
    for o in probe_offsets(b.layout.size()).filter(|&o| o < upto) {
        // SAFETY: o < size of the live block.
        let got = unsafe { *b.ptr.add(o) };
        prop_assert_eq!(got, byte(b.seed, o), "block {:?} offset {}", b.layout, o);
    }
    Ok(())
}

fn check_all(live: &[Live]) -> Result<(), TestCaseError> {
    let mut ranges: Vec<(usize, usize)> = live
        .iter()
        .map(|b| (b.ptr as usize, b.ptr as usize + b.layout.size()))
        .collect();
    ranges.sort();
    for w in ranges.windows(2) {
        prop_assert!(w[0].1 <= w[1].0, "live blocks overlap: {:x?}", w);
    }
    for b in live {
        prop_assert_eq!(b.ptr as usize % b.layout.align(), 0);
        verify(b, usize::MAX)?;
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut live: Vec<Live> = Vec::new();
    let mut seed = 0u8;
    let result = (|| {
        for op in ops {
            seed = seed.wrapping_add(1);
            match op {
                Op::Alloc {
                    lean,
                    size,
                    align_log,
                    zeroed,
                } => {
                    let layout = Layout::from_size_align(size, 1 << align_log).unwrap();
                    let a = allocator(lean);
                    // SAFETY: non-zero size.
                    let ptr = unsafe {
                        if zeroed {
                            a.alloc_zeroed(layout)
                        } else {
                            a.alloc(layout)
                        }
                    };
                    prop_assert!(!ptr.is_null(), "{:?}", layout);
                    if zeroed {
                        for o in probe_offsets(size) {
                            // SAFETY: o < size.
                            prop_assert_eq!(
                                unsafe { *ptr.add(o) },
                                0,
                                "zeroed {:?} at {}",
                                layout,
                                o
                            );
                        }
                    }
                    let b = Live {
                        ptr,
                        layout,
                        lean,
                        seed,
                    };
                    write(&b);
                    live.push(b);
                }
                Op::Realloc { index, size } if !live.is_empty() => {
                    let i = index % live.len();
                    let b = &mut live[i];
                    // SAFETY: live block with its layout; non-zero new size.
                    let p = unsafe { allocator(b.lean).realloc(b.ptr, b.layout, size) };
                    prop_assert!(!p.is_null());
                    let old = b.layout.size();
                    b.ptr = p;
                    b.layout = Layout::from_size_align(size, b.layout.align()).unwrap();
                    // Preserved prefix must survive the move.
                    let kept = old.min(size);
                    for o in probe_offsets(old).filter(|&o| o < kept) {
                        // SAFETY: o < kept <= new size.
                        prop_assert_eq!(
                            unsafe { *p.add(o) },
                            byte(b.seed, o),
                            "realloc lost byte {}",
                            o
                        );
                    }
                    write(b);
                }
                Op::Free { index } if !live.is_empty() => {
                    let b = live.swap_remove(index % live.len());
                    verify(&b, usize::MAX)?;
                    // SAFETY: live block with its layout.
                    unsafe { allocator(b.lean).dealloc(b.ptr, b.layout) };
                }
                _ => {}
            }
            check_all(&live)?;
        }
        Ok(())
    })();
    for b in live {
        // SAFETY: every remaining block is live with its layout.
        unsafe { allocator(b.lean).dealloc(b.ptr, b.layout) };
    }
    result
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if cfg!(miri) { 4 } else { 64 }),
        // Under Miri no regression file: finding it needs `getcwd`, which Miri's isolation
        // refuses.
        failure_persistence: if cfg!(miri) {
            None
        } else {
            ProptestConfig::default().failure_persistence
        },
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operation_sequences_match_the_model(ops in prop::collection::vec(op_strategy(), 1..MAX_OPS)) {
        run(ops)?;
    }
}

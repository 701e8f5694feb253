//! Replays every input of the `ops` fuzz target's corpus (`fuzz/corpus/ops/`, a seed
//! corpus minimised with `cargo fuzz cmin`, plus any crash found and fixed) through the
//! same driver the fuzz target runs (`fuzz/ops_driver.rs`): operation sequences over two
//! configurations, checked against a shadow model. So what fuzzing covered stays covered
//! without `cargo fuzz` or a nightly toolchain.
//!
//! Fuzzing itself: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run ops -- -max_total_time=900`
//! (see `docs/testing.md`).
//!
//! Under Miri the corpus replay is ignored (it lists and reads `fuzz/corpus/ops/`, and
//! Miri's isolation has no file system); the handmade inputs run unchanged.

#[path = "../fuzz/ops_driver.rs"]
mod ops_driver;

use std::path::PathBuf;

fn corpus() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ops");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
#[cfg_attr(
    miri,
    ignore = "reads fuzz/corpus/ops/ from the file system, which Miri's isolation refuses"
)]
fn corpus_inputs_match_the_model() {
    let files = corpus();
    assert!(
        files.len() >= 20,
        "seed corpus missing: {} files",
        files.len()
    );
    let mut ops = 0;
    for f in &files {
        let data = std::fs::read(f).unwrap();
        ops += ops_driver::decode(&data).len();
        // A panic names the input: rerun it alone with the fuzz target to minimise.
        eprintln!("replaying {}", f.display());
        ops_driver::run(&data);
    }
    assert!(ops > files.len(), "inputs decode to almost no operations");
}

/// Inputs built by hand for the paths the fuzzer must reach: each kind of operation,
/// remote frees to a heap whose thread exited, and realloc across size ranges.
#[test]
fn handmade_inputs_match_the_model() {
    // tag, flags, size selector, 3 value bytes, alignment byte
    let alloc = |flags: u8, sel: u8, v: u32, align: u8| {
        let v = v.to_le_bytes();
        vec![0u8, flags, sel, v[0], v[1], v[2], align]
    };
    let mut input = Vec::new();
    for (sel, align) in [(0u8, 0u8), (6, 200), (9, 180), (11, 3), (12, 170)] {
        input.extend(alloc(0, sel, 1000 + u32::from(sel) * 77, align));
        input.extend(alloc(3, sel, 5000, align)); // lean, zeroed
    }
    input.extend([8u8, 0b1101, 7, 9, 9, 0, 1]); // 4 blocks allocated on an exiting thread
    input.extend([7u8, 11, 7, 3]); // remote frees, one to the exited thread's heap
    input.extend([4u8, 2, 11, 0, 0, 8]); // realloc to a huge size
    input.extend([9u8, 5, 0, 40, 0, 0]); // remote realloc to a small size
    input.extend([5u8, 0, 6, 1]); // local frees
    ops_driver::run(&input);
    assert!(ops_driver::decode(&input).len() >= 15);
}

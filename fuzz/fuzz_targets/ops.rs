//! Fuzz target: operation sequences decoded from the input, run against a shadow model
//! (see `../ops_driver.rs`, shared with `tests/fuzz_corpus.rs`).
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run ops -- -max_total_time=900`
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../ops_driver.rs"]
mod ops_driver;

fuzz_target!(|data: &[u8]| {
    ops_driver::run(data);
});

//! Bad `define_rpmalloc!` configurations are compile errors naming the key.
//!
//! Ignored under Miri: trybuild runs `cargo` and `rustc`.
#[test]
#[cfg_attr(
    miri,
    ignore = "trybuild runs cargo and rustc as subprocesses, which Miri cannot"
)]
fn bad_configurations_do_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
    t.pass("tests/compile_pass/*.rs");
}

//! Bad `define_rpmalloc!` configurations are compile errors naming the key.
//!
//! Ignored under Miri (trybuild runs `cargo` and `rustc`) and for cross-compiled targets
//! (the Windows and musl test runs of `.ci/targets` run on the Linux host's toolchain:
//! `cargo` for the target is not there to run); the host run checks the macro.
#[test]
#[cfg_attr(
    any(miri, not(all(target_os = "linux", target_env = "gnu"))),
    ignore = "trybuild runs cargo and rustc as subprocesses: not under Miri, and only on the host target"
)]
fn bad_configurations_do_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
    t.pass("tests/compile_pass/*.rs");
}

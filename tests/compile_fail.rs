//! Bad `define_rpmalloc!` configurations are compile errors naming the key.
#[test]
fn bad_configurations_do_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
    t.pass("tests/compile_pass/*.rs");
}

//! The C ABI on real programs: the C and C++ test programs of this directory, built with
//! the system compiler and run both with `LD_PRELOAD=librpmalloc.so` and linked with
//! `librpmalloc.a`; then programs nobody here wrote — `python3`, `git`, `perl`,
//! `sqlite3` — run with the library preloaded, their output compared with the same run
//! without it.
//!
//! A tool that is missing makes its test print one line saying so and pass (`.ci/run`
//! installs them from Debian's packages when it can).
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The directory holding `librpmalloc.so` and `librpmalloc.a`, built once per run of
/// this file: `cargo test` builds no `cdylib`/`staticlib` for a package's integration
/// tests, so this builds them (release) with the `cargo` running the tests, into a target
/// directory of its own (no wait on the running build's lock).
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("capi-build");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run_ok(
            Command::new(cargo)
                .args(["build", "--release", "-p", "rpmalloc-capi", "--target-dir"])
                .arg(&target)
                .current_dir(here().parent().unwrap()),
            "cargo build --release -p rpmalloc-capi",
        );
        target.join("release")
    })
}

/// `librpmalloc.so`.
fn shared_lib() -> PathBuf {
    let so = lib_dir().join("librpmalloc.so");
    assert!(so.exists(), "{} missing after the build", so.display());
    so
}

/// This package's directory.
fn here() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `tool` runs (`tool --version`); if not, prints the skip line.
fn have(tool: &str, test: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        println!("{test}: skipped: `{tool}` not found");
    }
    ok
}

/// Runs `cmd`, panicking with its output unless it exits 0.
fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Warnings the tests provoke on purpose (impossible sizes, freeing a non-heap object).
const CFLAGS: &[&str] = &[
    "-O1",
    "-g",
    "-fno-builtin",
    "-Wall",
    "-Wno-alloc-size-larger-than",
    "-Wno-use-after-free",
    "-Wno-free-nonheap-object",
    "-pthread",
];

/// Builds `source` with `compiler` twice — plain (to preload the library) and linked with
/// `librpmalloc.a` — and runs both; each must print its success line.
fn build_and_run(compiler: &str, source: &str, extra: &[&str], test: &str) {
    if !have(compiler, test) {
        return;
    }
    let so = shared_lib();
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let src = here().join("tests").join(source);
    let plain = out_dir.join(format!("{source}.preload"));
    let linked = out_dir.join(format!("{source}.static"));
    run_ok(
        Command::new(compiler)
            .args(CFLAGS)
            .args(extra)
            .arg(&src)
            .arg("-o")
            .arg(&plain),
        "compile",
    );
    run_ok(
        Command::new(compiler)
            .args(CFLAGS)
            .args(extra)
            .arg(&src)
            .arg(lib_dir().join("librpmalloc.a"))
            .args(["-ldl", "-lm", "-o"])
            .arg(&linked),
        "compile and link librpmalloc.a",
    );
    let preloaded = run_ok(Command::new(&plain).env("LD_PRELOAD", &so), "preloaded");
    let statically = run_ok(&mut Command::new(&linked), "linked");
    for out in [preloaded, statically] {
        assert!(String::from_utf8_lossy(&out.stdout).contains("all checks passed"));
    }
}

#[test]
fn c_functions_preloaded_and_linked() {
    build_and_run("gcc", "c_api.c", &[], "c_functions_preloaded_and_linked");
}

#[test]
fn cpp_operators_preloaded_and_linked() {
    build_and_run(
        "g++",
        "cpp_api.cpp",
        &["-std=c++17"],
        "cpp_operators_preloaded_and_linked",
    );
}

/// The per-thread slot is initial-exec TLS (`initial_exec_tls: true`): the library is
/// marked `STATIC_TLS`, the slot's symbol is not exported, and neither `malloc` nor `free`
/// calls `__tls_get_addr` (the general-dynamic model's call, two per pair otherwise).
#[test]
fn the_thread_slot_is_initial_exec() {
    let test = "the_thread_slot_is_initial_exec";
    if !have("readelf", test) || !have("objdump", test) {
        return;
    }
    let so = shared_lib();
    let dynamic = run_ok(Command::new("readelf").arg("-dW").arg(&so), "readelf -d");
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    assert!(
        dynamic
            .lines()
            .any(|line| line.contains("(FLAGS)") && line.contains("STATIC_TLS")),
        "no STATIC_TLS flag:\n{dynamic}"
    );
    let symbols = run_ok(Command::new("readelf").arg("-sW").arg(&so), "readelf -s");
    let symbols = String::from_utf8_lossy(&symbols.stdout);
    let slot: Vec<&str> = symbols
        .lines()
        .filter(|line| line.contains("__rpmalloc_tls_"))
        .collect();
    assert!(!slot.is_empty(), "no slot symbol:\n{symbols}");
    for line in &slot {
        assert!(line.contains(" TLS ") && line.contains("HIDDEN"), "{line}");
    }
    for function in ["malloc", "free"] {
        let code = run_ok(
            Command::new("objdump")
                .arg(format!("--disassemble={function}"))
                .arg(&so),
            "objdump",
        );
        let code = String::from_utf8_lossy(&code.stdout);
        assert!(code.contains(&format!("<{function}>:")), "{code}");
        assert!(!code.contains("__tls_get_addr"), "{function}:\n{code}");
        assert!(
            code.contains("%fs:"),
            "{function} reads no thread pointer:\n{code}"
        );
    }
}

/// The library opened with `dlopen` after start-up (`dlopen.c`): its static TLS is set up
/// in a thread that was running before, one started after, and the main thread.
#[test]
fn dlopened_after_start_up() {
    let test = "dlopened_after_start_up";
    if !have("gcc", test) {
        return;
    }
    let program = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dlopen");
    run_ok(
        Command::new("gcc")
            .args(CFLAGS)
            .arg(here().join("tests").join("dlopen.c"))
            .args(["-ldl", "-o"])
            .arg(&program),
        "compile dlopen.c",
    );
    let out = run_ok(Command::new(&program).arg(shared_lib()), "dlopen");
    assert!(String::from_utf8_lossy(&out.stdout).contains("all checks passed"));
}

/// The header declares exactly the `rp*` functions the library exports.
#[test]
fn header_matches_the_exports() {
    if !have("nm", "header_matches_the_exports") {
        return;
    }
    run_ok(
        Command::new("bash")
            .arg(here().join("check-header"))
            .arg(shared_lib()),
        "capi/check-header",
    );
}

/// Runs `program args` (with `stdin`) without and with the library preloaded; the exit
/// status and output must be the same. Returns the output.
fn same_with_and_without(program: &str, args: &[&str], stdin: &str, test: &str) -> String {
    let run = |preload: bool| {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(here().parent().unwrap())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        // Same environment both ways but for the preload (git's pager and colours off).
        cmd.env("GIT_PAGER", "cat").env("NO_COLOR", "1");
        if preload {
            cmd.env("LD_PRELOAD", shared_lib());
        }
        let mut child = cmd.spawn().unwrap();
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            input.write_all(stdin.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    };
    let without = run(false);
    let with = run(true);
    assert_eq!(
        with.status.code(),
        without.status.code(),
        "{test}: exit status"
    );
    assert!(
        without.status.success(),
        "{test}: failed without the library"
    );
    let a = String::from_utf8_lossy(&without.stdout).into_owned();
    let b = String::from_utf8_lossy(&with.stdout).into_owned();
    assert!(a == b, "{test}: output differs with the library preloaded");
    assert!(
        !String::from_utf8_lossy(&with.stderr).contains("rpmalloc:"),
        "{test}: the library reported: {}",
        String::from_utf8_lossy(&with.stderr)
    );
    a
}

/// Python building and dropping large dicts, lists and strings on eight threads.
#[test]
fn python_threads() {
    let test = "python_threads";
    if !have("python3", test) {
        return;
    }
    let script = r#"
import threading, hashlib
results = [None] * 8
def work(t):
    h = hashlib.sha256()
    for round in range(6):
        d = {i: str(i * (t + 1)) * (i % 50 + 1) for i in range(20000)}
        l = [bytes(d[i][:64], "ascii") for i in range(0, 20000, 7)]
        s = sorted(d.values(), key=len)[-100:]
        h.update(b"".join(l)); h.update("".join(s).encode())
        del d, l, s
    results[t] = h.hexdigest()
threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
for th in threads: th.start()
for th in threads: th.join()
print("\n".join(results))
big = [list(range(i % 1000)) for i in range(20000)]
print(sum(map(len, big)))
"#;
    let out = same_with_and_without("python3", &["-c", script], "", test);
    assert_eq!(out.lines().count(), 9);
}

/// git on this repository: history with patches, every object listed, a search.
#[test]
fn git_on_this_repository() {
    let test = "git_on_this_repository";
    if !have("git", test) {
        return;
    }
    // Not a git checkout (a source archive): nothing to run git on.
    if !here().parent().unwrap().join(".git").exists() {
        println!("{test}: skipped: not a git checkout");
        return;
    }
    same_with_and_without("git", &["log", "-p", "-n", "40", "--stat"], "", test);
    same_with_and_without("git", &["rev-list", "--objects", "--all"], "", test);
    same_with_and_without(
        "git",
        &["grep", "-n", "unsafe", "HEAD", "--", "src"],
        "",
        test,
    );
}

/// Perl: hashes, strings, sorting and regular expressions.
#[test]
fn perl_hashes_and_strings() {
    let test = "perl_hashes_and_strings";
    if !have("perl", test) {
        return;
    }
    let script = r#"
my %h; my @a;
for my $i (1..200000) { $h{"key$i"} = "v" x ($i % 70); push @a, $i * 7 % 1013 }
my $total = 0; $total += length($h{$_}) for keys %h;
my @s = sort { $a <=> $b } @a;
my $joined = join(",", @s[0..999]);
my $matches = () = $joined =~ /(\d+)7,/g;
delete $h{"key$_"} for 1..100000;
print scalar(keys %h), " $total $matches $s[-1]\n";
"#;
    same_with_and_without("perl", &["-e", script], "", test);
}

/// sqlite3: a table of a few thousand rows inserted, indexed and queried, in memory.
#[test]
fn sqlite_inserts_and_query() {
    let test = "sqlite_inserts_and_query";
    if !have("sqlite3", test) {
        return;
    }
    let mut sql =
        String::from("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER);\nBEGIN;\n");
    for i in 0..5000 {
        sql.push_str(&format!(
            "INSERT INTO t (name, n) VALUES ('{}', {});\n",
            "x".repeat(i % 90 + 1),
            (i * 7919) % 1000
        ));
    }
    sql.push_str(
        "COMMIT;\nCREATE INDEX tn ON t(n);\n\
         SELECT n % 10, count(*), sum(length(name)) FROM t GROUP BY n % 10 ORDER BY 1;\n\
         SELECT count(*) FROM t a JOIN t b ON a.n = b.n WHERE a.id < 500;\n",
    );
    let out = same_with_and_without("sqlite3", &[":memory:"], &sql, test);
    assert_eq!(out.lines().count(), 11);
}

//! First-class heaps against individual frees and a bump arena: build a binary search
//! tree of `N` nodes (random keys, nodes in `Box`es) through an `Allocator`, then get rid
//! of it — by dropping the heap (or arena) with the tree still in it, or by freeing node
//! by node. A node is 40 bytes when the allocator is a zero-sized type (a
//! `define_rpmalloc!` type) and 56 when it is a reference (`&heap`, `&bump`, the peers'
//! adapter), since every `Box` carries its allocator: the table prints it.
//!
//! `heapbench [N] [ROUNDS]` runs every variant in a child process of its own (so peak RSS
//! is the variant's) `ROUNDS` times, interleaved, and prints the median build and release
//! times and peak RSS of each, and the ratios to freeing node by node with the system
//! allocator. `heapbench one VARIANT N` runs one (what the parent spawns).

use allocator_api2::alloc::{AllocError, Allocator};
use allocator_api2::boxed::Box;
use rpmalloc::define_rpmalloc;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::Command;
use std::ptr::NonNull;
use std::time::Instant;

define_rpmalloc!(
    /// The port with its default configuration, as the global allocator.
    FastAlloc
);

#[global_allocator]
static GLOBAL: FastAlloc = FastAlloc;

/// The variants, in report order.
const VARIANTS: [&str; 6] = [
    "ours-heap-drop",
    "ours-heap-free",
    "ours-free",
    "bumpalo-drop",
    "mimalloc-free",
    "system-free",
];

/// A `GlobalAlloc` used as an `Allocator` value.
struct Via<G: GlobalAlloc + 'static>(&'static G);

impl<G: GlobalAlloc + 'static> Clone for Via<G> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<G: GlobalAlloc + 'static> Copy for Via<G> {}

// SAFETY: forwards to a `GlobalAlloc`, whose blocks stay valid until freed; zero-sized
// requests (none here) get a dangling aligned pointer.
unsafe impl<G: GlobalAlloc + 'static> Allocator for Via<G> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            let p =
                NonNull::new(std::ptr::without_provenance_mut(layout.align())).ok_or(AllocError)?;
            return Ok(NonNull::slice_from_raw_parts(p, 0));
        }
        // SAFETY: a non-zero size.
        let p = unsafe { self.0.alloc(layout) };
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(AllocError)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: a block of `self.0` with this layout (the trait's contract).
            unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
        }
    }
}

static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
static SYSTEM: System = System;

/// A tree node: a key, a value and two links (each a `Box`, which holds its allocator).
struct Node<A: Allocator> {
    key: u64,
    value: [u64; 2],
    left: Option<Box<Node<A>, A>>,
    right: Option<Box<Node<A>, A>>,
}

/// Builds a tree of `n` random keys in `a`.
fn build<A: Allocator + Copy>(a: A, n: usize) -> Option<Box<Node<A>, A>> {
    let mut root: Option<Box<Node<A>, A>> = None;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = x;
        let mut slot = &mut root;
        while let Some(node) = slot {
            slot = if key < node.key {
                &mut node.left
            } else {
                &mut node.right
            };
        }
        *slot = Some(Box::new_in(
            Node {
                key,
                value: [key, !key],
                left: None,
                right: None,
            },
            a,
        ));
    }
    root
}

/// Frees a tree node by node (without recursion).
fn free_each<A: Allocator>(root: Option<Box<Node<A>, A>>) {
    let mut stack: Vec<Box<Node<A>, A>> = root.into_iter().collect();
    while let Some(mut node) = stack.pop() {
        stack.extend(node.left.take());
        stack.extend(node.right.take());
        black_box(node.value[0]);
    }
}

/// Peak resident memory of this process in bytes (`VmHWM`).
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The bytes of a node for each variant's allocator.
fn node_bytes(variant: &str) -> usize {
    match variant {
        "ours-free" => size_of::<Node<FastAlloc>>(),
        "ours-heap-drop" | "ours-heap-free" => size_of::<Node<&rpmalloc::Heap<FastAlloc>>>(),
        "bumpalo-drop" => size_of::<Node<&bumpalo::Bump>>(),
        _ => size_of::<Node<Via<System>>>(),
    }
}

/// Runs one variant: build time, release time (seconds), peak RSS.
fn run(variant: &str, n: usize) -> (f64, f64, usize) {
    let t = Instant::now();
    let (built, released) = match variant {
        "ours-heap-drop" => {
            let heap = FastAlloc::heap();
            let root = build(&heap, n);
            let built = t.elapsed();
            std::mem::forget(root);
            drop(heap);
            (built, t.elapsed() - built)
        }
        "ours-heap-free" => {
            let heap = FastAlloc::heap();
            let root = build(&heap, n);
            let built = t.elapsed();
            free_each(root);
            drop(heap);
            (built, t.elapsed() - built)
        }
        "ours-free" => {
            let root = build(FastAlloc, n);
            let built = t.elapsed();
            free_each(root);
            (built, t.elapsed() - built)
        }
        "bumpalo-drop" => {
            let bump = bumpalo::Bump::new();
            let root = build(&bump, n);
            let built = t.elapsed();
            std::mem::forget(root);
            drop(bump);
            (built, t.elapsed() - built)
        }
        "mimalloc-free" => {
            let root = build(Via(&MIMALLOC), n);
            let built = t.elapsed();
            free_each(root);
            (built, t.elapsed() - built)
        }
        "system-free" => {
            let root = build(Via(&SYSTEM), n);
            let built = t.elapsed();
            free_each(root);
            (built, t.elapsed() - built)
        }
        other => panic!("unknown variant {other}"),
    };
    (built.as_secs_f64(), released.as_secs_f64(), peak_rss())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("one") {
        let n = args[3].parse().expect("N");
        let (b, r, rss) = run(&args[2], n);
        println!("{b} {r} {rss}");
        return;
    }
    let n: usize = args.get(1).map_or(1_000_000, |a| a.parse().expect("N"));
    let rounds: usize = args.get(2).map_or(5, |a| a.parse().expect("ROUNDS"));
    let exe = std::env::current_exe().expect("own path");
    let mut results: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> =
        vec![(Vec::new(), Vec::new(), Vec::new()); VARIANTS.len()];
    for _ in 0..rounds {
        for (i, v) in VARIANTS.iter().enumerate() {
            let out = Command::new(&exe)
                .args(["one", v, &n.to_string()])
                .output()
                .expect("run a variant");
            assert!(out.status.success(), "{v} failed");
            let text = String::from_utf8_lossy(&out.stdout);
            let f: Vec<f64> = text
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            results[i].0.push(f[0]);
            results[i].1.push(f[1]);
            results[i].2.push(f[2]);
        }
    }
    let base = VARIANTS.iter().position(|v| *v == "system-free").unwrap();
    let (bb, br, brss) = (
        median(results[base].0.clone()),
        median(results[base].1.clone()),
        median(results[base].2.clone()),
    );
    println!("heapbench: a tree of {n} nodes, median of {rounds} rounds (each variant in its own process)");
    println!(
        "| variant | node bytes | build ms | release ms | peak RSS MiB | build / system | release / system | peak / system |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, v) in VARIANTS.iter().enumerate() {
        let (b, r, rss) = (
            median(results[i].0.clone()),
            median(results[i].1.clone()),
            median(results[i].2.clone()),
        );
        println!(
            "| {v} | {} | {:.1} | {:.2} | {:.1} | {:.2} | {:.3} | {:.2} |",
            node_bytes(v),
            b * 1e3,
            r * 1e3,
            rss / 1048576.0,
            b / bb,
            r / br,
            rss / brss
        );
    }
}

//! `define_rpmalloc!` in a crate that depends on `rpmalloc` under another name (`rp`, see
//! `Cargo.toml`): no path `::rpmalloc` exists here, so an expansion that named it would
//! not compile. Run by `cargo test --workspace`.

rp::define_rpmalloc!(
    /// An allocator defined through the renamed dependency.
    pub Renamed, < enable_statistics: true, span_size: 16384 >
);

#[cfg(test)]
mod tests {
    use super::Renamed;
    use rp::allocator_api2::vec::Vec;
    use std::alloc::{GlobalAlloc, Layout};

    #[test]
    fn the_renamed_crate_defines_a_working_allocator() {
        let layout = Layout::from_size_align(1000, 64).unwrap();
        // SAFETY: a non-zero size; freed once below with the same layout.
        unsafe {
            let p = Renamed.alloc(layout);
            assert!(!p.is_null() && (p as usize).is_multiple_of(64));
            p.write_bytes(0x5A, 1000);
            assert!(Renamed.usable_size(p) >= 1000);
            Renamed.dealloc(p, layout);
        }
        let mut v: Vec<u32, Renamed> = Vec::new_in(Renamed);
        v.extend(0..10_000);
        assert_eq!(v.iter().map(|&x| u64::from(x)).sum::<u64>(), 49_995_000);
        drop(v);
        assert_eq!(Renamed.statistics().unwrap().live, 0);
    }
}

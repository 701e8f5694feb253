//! The free block: the unit every free list links.
//!
//! A free block's first word links to the next free block of its list. The lists that
//! hold blocks — a span's local free list, its remote-free list (`remote.rs`), a heap's
//! notice list (`deferred.rs`), a size class's bin — all link through this word, so a
//! block moves between them without being touched beyond it.

/// A free block: its first word links to the next free block.
#[repr(C)]
pub(crate) struct Block {
    /// The next block of the list this block is on (null: the last).
    pub next: *mut Block,
}

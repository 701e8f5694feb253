//! `usable_size`: how many bytes a live block holds, from its address alone (as
//! `malloc_usable_size` and `rpmalloc_usable_size`).
//!
//! No block of a small span, a large run or a huge block aligned below the span size
//! starts at a span boundary (the span header is there), so a span-aligned address is a
//! huge block aligned to the span size or more, whose header sits one span before it
//! (`huge.rs`). Every other address masks to its span header.

use crate::free::block_start;
use crate::instance::Instance;
use crate::os::addr;
use crate::params::Params;
use crate::span::{HugeHeader, Kind, Run, SmallSpan, Span};

/// The usable size of the live block at `ptr`: the bytes from `ptr` to the end of the
/// block, at least the size it was allocated with. A block may be used (and reallocated)
/// up to this size with the allocator's guarantee that no other block overlaps it.
///
/// # Safety
/// `ptr` is a live block of configuration `C`: an address one of its allocation functions
/// returned, not yet freed.
pub(crate) unsafe fn usable_size<C: Instance>(ptr: *const u8) -> usize {
    let ptr = ptr.cast_mut();
    if ptr.addr() & !C::SPAN_MASK == 0 {
        let span = addr::with_addr(ptr, ptr.addr().wrapping_sub(C::SPAN_SIZE)).cast::<Span>();
        // SAFETY: a span-aligned live block is a huge block with its header one span
        // before it (module doc); its mapping runs `map_size` bytes from the header.
        return unsafe { HugeHeader(span).map_size() } - C::SPAN_SIZE;
    }
    let span = addr::mask::<_, Span>(ptr, C::SPAN_MASK);
    // SAFETY: any other live block's header is at its span mask (module doc), valid to
    // read while the block lives; a small span's block size and a run's span count do not
    // change while it holds live blocks.
    unsafe {
        let end = match Span::kind(span) {
            Kind::Small => block_start(span, ptr).addr() + SmallSpan(span).block_size() as usize,
            Kind::Large => span.addr() + Run(span).span_count() as usize * C::SPAN_SIZE,
            Kind::Huge => span.addr() + HugeHeader(span).map_size(),
        };
        end - ptr.addr()
    }
}

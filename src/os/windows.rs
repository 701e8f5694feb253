//! The Windows primitives: `VirtualAlloc` and `VirtualFree` for memory, `GetTickCount64`
//! for the clock, fiber-local storage (`FlsAlloc`) callbacks for thread exit.
//!
//! Windows frees address space only as a whole reservation (`MEM_RELEASE` of what one
//! `VirtualAlloc` reserved), while the allocator unmaps parts of its mappings (the
//! alignment slack, a mapping's spans one run at a time). So `unmap` decommits the range
//! and releases the reservation once none of it is committed any more. `decommit`
//! decommits too (the allocator never touches released pages again before it unmaps
//! them), so `unmap` sees everything the allocator gave up as reserved only, and what it
//! keeps as committed.
//!
//! Not here: huge (large) pages, which need the `SeLockMemoryPrivilege` (refused; the
//! allocator falls back to normal pages), `mremap` (refused; huge blocks are moved by
//! copying) and `fork` (Windows has none).

use super::{ForkHandlers, Hooks, Primitives, ThreadExit};
use core::ffi::c_void;
use core::ptr;
use std::sync::Mutex;

const MEM_COMMIT: u32 = 0x1000;
const MEM_RESERVE: u32 = 0x2000;
const MEM_DECOMMIT: u32 = 0x4000;
const MEM_RELEASE: u32 = 0x8000;
const MEM_FREE: u32 = 0x1_0000;
const PAGE_READWRITE: u32 = 0x04;
const FLS_OUT_OF_INDEXES: u32 = 0xFFFF_FFFF;

/// `MEMORY_BASIC_INFORMATION` (`PartitionId` exists on 64-bit Windows only).
#[repr(C)]
struct MemoryBasicInformation {
    base_address: *mut c_void,
    allocation_base: *mut c_void,
    allocation_protect: u32,
    #[cfg(target_pointer_width = "64")]
    partition_id: u16,
    region_size: usize,
    state: u32,
    protect: u32,
    kind: u32,
}

/// `SYSTEM_INFO`.
#[repr(C)]
struct SystemInfo {
    processor_architecture: u16,
    reserved: u16,
    page_size: u32,
    minimum_application_address: *mut c_void,
    maximum_application_address: *mut c_void,
    active_processor_mask: usize,
    number_of_processors: u32,
    processor_type: u32,
    allocation_granularity: u32,
    processor_level: u16,
    processor_revision: u16,
}

type FlsCallback = unsafe extern "system" fn(*const c_void);

#[link(name = "kernel32")]
extern "system" {
    fn VirtualAlloc(address: *mut c_void, size: usize, kind: u32, protect: u32) -> *mut c_void;
    fn VirtualFree(address: *mut c_void, size: usize, kind: u32) -> i32;
    fn VirtualQuery(address: *const c_void, info: *mut MemoryBasicInformation, len: usize)
        -> usize;
    fn GetSystemInfo(info: *mut SystemInfo);
    fn GetTickCount64() -> u64;
    fn FlsAlloc(callback: Option<FlsCallback>) -> u32;
    fn FlsSetValue(index: u32, value: *const c_void) -> i32;
    fn FlsFree(index: u32) -> i32;
}

#[link(name = "ntdll")]
extern "system" {
    /// True (non-zero) once the process has begun to exit (`ExitProcess`, or a return
    /// from `main`): the other threads are gone by then, killed wherever they stood.
    fn RtlDllShutdownInProgress() -> u8;
}

/// Serializes `unmap`: between finding a reservation wholly decommitted and releasing
/// it, no other thread may release it (and see its address reused by someone else's
/// reservation).
static UNMAP: Mutex<()> = Mutex::new(());

/// The real operating system.
pub(crate) struct Windows;

/// Whether any page of the reservation starting at `base` is still committed.
///
/// # Safety
/// `base` is the base of a live reservation of ours.
unsafe fn any_committed(base: *mut u8) -> bool {
    let mut at = base;
    loop {
        let mut info = core::mem::MaybeUninit::<MemoryBasicInformation>::uninit();
        let size = core::mem::size_of::<MemoryBasicInformation>();
        // SAFETY: a valid out-pointer of the size passed; querying any address is safe.
        if unsafe { VirtualQuery(at.cast(), info.as_mut_ptr(), size) } == 0 {
            return false;
        }
        // SAFETY: VirtualQuery filled it (non-zero return).
        let info = unsafe { info.assume_init() };
        if info.state == MEM_FREE || info.allocation_base != base.cast() {
            return false;
        }
        if info.state == MEM_COMMIT {
            return true;
        }
        at = at.wrapping_add(info.region_size);
    }
}

impl Primitives for Windows {
    fn map(len: usize, huge_pages: bool) -> *mut u8 {
        if huge_pages {
            return ptr::null_mut();
        }
        // SAFETY: a fresh reservation at an address of the system's choosing touches no
        // existing memory; null on failure.
        unsafe {
            VirtualAlloc(
                ptr::null_mut(),
                len,
                MEM_RESERVE | MEM_COMMIT,
                PAGE_READWRITE,
            )
        }
        .cast()
    }

    fn map_record(len: usize) -> *mut u8 {
        Self::map(len, false)
    }

    unsafe fn unmap(p: *mut u8, len: usize) {
        let _serial = UNMAP.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: per the contract the range is page-aligned, ours, unmapped once and
        // unused: decommitting it touches no one else's memory.
        let ok = unsafe { VirtualFree(p.cast(), len, MEM_DECOMMIT) };
        debug_assert!(ok != 0, "VirtualFree(MEM_DECOMMIT) failed");
        let mut info = core::mem::MaybeUninit::<MemoryBasicInformation>::uninit();
        let size = core::mem::size_of::<MemoryBasicInformation>();
        // SAFETY: a valid out-pointer of the size passed.
        if unsafe { VirtualQuery(p.cast(), info.as_mut_ptr(), size) } == 0 {
            return;
        }
        // SAFETY: filled by VirtualQuery (non-zero return).
        let base = unsafe { info.assume_init() }.allocation_base.cast::<u8>();
        // SAFETY: `base` is the reservation holding our range, still live (its last
        // committed range, if any, was ours); under the lock no other thread releases it.
        unsafe {
            if !any_committed(base) {
                let ok = VirtualFree(base.cast(), 0, MEM_RELEASE);
                debug_assert!(ok != 0, "VirtualFree(MEM_RELEASE) failed");
            }
        }
    }

    unsafe fn decommit(p: *mut u8, len: usize) {
        // SAFETY: per the contract whole pages of a live mapping of ours that nothing
        // uses until it is unmapped: decommitting gives them back to the system and
        // leaves the range reserved, which `unmap` then sees as given up. It fails only
        // for a range that is not a live reservation of ours, which the contract rules out.
        let ok = unsafe { VirtualFree(p.cast(), len, MEM_DECOMMIT) };
        debug_assert!(ok != 0, "VirtualFree(MEM_DECOMMIT) failed");
    }

    fn advise_huge(_p: *mut u8, _len: usize) {}

    unsafe fn remap(_p: *mut u8, _old_len: usize, _new_len: usize, _align: usize) -> *mut u8 {
        ptr::null_mut()
    }

    fn page_size() -> usize {
        let mut info = core::mem::MaybeUninit::<SystemInfo>::uninit();
        // SAFETY: a valid out-pointer; GetSystemInfo cannot fail.
        let info = unsafe {
            GetSystemInfo(info.as_mut_ptr());
            info.assume_init()
        };
        if info.page_size.is_power_of_two() {
            info.page_size as usize
        } else {
            4096
        }
    }

    /// `GetTickCount64`: milliseconds since boot, as coarse as the system tick (10–16
    /// ms), which is all the ageing of cached spans needs.
    fn now_ms() -> u64 {
        // SAFETY: no preconditions.
        unsafe { GetTickCount64() }
    }
}

impl Hooks for Windows {
    fn exit_key_create<H: ThreadExit>() -> Option<usize> {
        // SAFETY: registering a valid callback function.
        let index = unsafe { FlsAlloc(Some(on_exit::<H>)) };
        (index != FLS_OUT_OF_INDEXES).then_some(index as usize)
    }

    unsafe fn exit_key_set(key: usize, value: *mut u8) {
        // SAFETY: an index `exit_key_create` made (the contract); a non-null value makes
        // its callback run when this thread exits.
        unsafe { FlsSetValue(key as u32, value.cast()) };
    }

    unsafe fn exit_key_delete(key: usize) {
        // SAFETY: an index `exit_key_create` made, never given a value (the contract), so
        // freeing it runs no callback.
        unsafe { FlsFree(key as u32) };
    }

    /// Windows has no `fork`.
    fn at_fork<F: ForkHandlers>() {}
}

/// The fiber-local storage callback: the exiting thread's value, to `H`.
///
/// Windows also runs it at process exit, for the thread that exits the process, after it
/// killed the others — one may have died holding a lock that orphaning the heap takes.
/// Nothing is orphaned then (the process's memory goes with it), so exit never waits on
/// a dead thread. It runs as well when a fiber is deleted, with that fiber's value;
/// `H::on_exit` ignores a value that is not the calling thread's heap.
unsafe extern "system" fn on_exit<H: ThreadExit>(value: *const c_void) {
    // SAFETY: no preconditions.
    if value.is_null() || unsafe { RtlDllShutdownInProgress() } != 0 {
        return;
    }
    // SAFETY: run by the system as the thread exits, with the non-null value the thread
    // set, which is what `ThreadExit::on_exit` requires.
    unsafe { H::on_exit(value.cast_mut().cast()) }
}

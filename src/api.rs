//! Entry points (stub forwarding to System until the heap lands).
use crate::{Config, Statistics};
use core::alloc::{GlobalAlloc, Layout};
use std::alloc::System;
/// alloc
/// # Safety
/// GlobalAlloc::alloc
pub unsafe fn alloc<C: Config>(layout: Layout) -> *mut u8 { unsafe { System.alloc(layout) } }
/// alloc_zeroed
/// # Safety
/// GlobalAlloc
pub unsafe fn alloc_zeroed<C: Config>(layout: Layout) -> *mut u8 { unsafe { System.alloc_zeroed(layout) } }
/// dealloc
/// # Safety
/// GlobalAlloc
pub unsafe fn dealloc<C: Config>(ptr: *mut u8, layout: Layout) { unsafe { System.dealloc(ptr, layout) } }
/// realloc
/// # Safety
/// GlobalAlloc
pub unsafe fn realloc<C: Config>(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 { unsafe { System.realloc(ptr, layout, new_size) } }
/// statistics
pub fn statistics<C: Config>() -> Option<Statistics> { None }

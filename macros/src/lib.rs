//! The `define_rpmalloc!` macro of the `rpmalloc` crate; use it through `rpmalloc`.
//!
//! The parsing and expansion work on `proc_macro2` types (modules `parse` and `expand`) so
//! they can be unit-tested outside the compiler.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod expand;
mod keys;
mod parse;

use proc_macro::TokenStream;

/// The expansion behind `rpmalloc::define_rpmalloc!` (documented there), which passes it
/// the `rpmalloc` crate's path first, in brackets; without them the expansion names
/// `::rpmalloc`. Use the macro through `rpmalloc`.
#[proc_macro]
pub fn define_rpmalloc(input: TokenStream) -> TokenStream {
    expand::define_rpmalloc(input.into()).into()
}

//! `define_rpmalloc!` (stub)
use proc_macro::TokenStream;
/// Defines an allocator.
#[proc_macro]
pub fn define_rpmalloc(_input: TokenStream) -> TokenStream { TokenStream::new() }

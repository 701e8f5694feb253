//! Code generation for `define_rpmalloc!`.

use crate::keys::{self, KEYS};
use crate::parse::{parse_input, Input, Setting, Value};
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};
use syn::ext::IdentExt;

/// Expands a `define_rpmalloc!` input: the allocator type and its implementations, preceded
/// by a `compile_error!` for every mistake in the input.
pub fn define_rpmalloc(tokens: TokenStream) -> TokenStream {
    let (krate, tokens) = split_crate_path(tokens);
    match parse_input(tokens) {
        Ok(input) => {
            let errors = input
                .errors
                .as_ref()
                .map(syn::Error::to_compile_error)
                .unwrap_or_default();
            let allocator = expand(&input, &krate);
            quote! {
                #errors
                #allocator
            }
        }
        Err(error) => error.to_compile_error(),
    }
}

/// The path of the `rpmalloc` crate, and the input after it.
///
/// `rpmalloc::define_rpmalloc!` is a `macro_rules!` that calls this macro with its
/// `$crate` in brackets first (`[$crate] input`), so the expansion names the library the
/// way the calling crate reaches it, renamed in `Cargo.toml` or not. Called directly,
/// without the brackets, the library is `::rpmalloc`.
fn split_crate_path(tokens: TokenStream) -> (TokenStream, TokenStream) {
    let mut iter = tokens.clone().into_iter();
    if let Some(proc_macro2::TokenTree::Group(group)) = iter.next() {
        if group.delimiter() == proc_macro2::Delimiter::Bracket {
            return (group.stream(), iter.collect());
        }
    }
    (quote!(::rpmalloc), tokens)
}

/// The allocator type and its implementations for a parsed input, using the valid
/// settings; `krate` is the path of the `rpmalloc` crate.
pub fn expand(input: &Input, krate: &TokenStream) -> TokenStream {
    let Input {
        attrs, vis, name, ..
    } = input;
    let docs = generated_docs(input);
    // `#[cfg]` on the type must also remove the implementations.
    let cfgs = attrs.iter().filter(|attr| attr.path().is_ident("cfg"));

    let span_size = if let Some(Setting {
        value: Value::Int(bytes),
        ident,
        ..
    }) = input.setting(keys::SPAN_SIZE)
    {
        // `typenum` names every power of two, so `U4096` ..= `U262144` all exist.
        let ty = format_ident!("U{}", bytes, span = ident.span());
        quote!(#krate::typenum::#ty)
    } else {
        quote!(#krate::DefaultSpanSize)
    };
    let constants = input
        .settings
        .iter()
        .filter(|setting| setting.key.name != keys::SPAN_SIZE)
        .map(|setting| {
            let constant = format_ident!(
                "{}",
                keys::const_name(setting.key),
                span = setting.ident.span()
            );
            let (ty, value) = match setting.value {
                Value::Bool(value) => (quote!(bool), quote!(#value)),
                Value::Int(value) => {
                    let value = Literal::u64_unsuffixed(value);
                    (quote!(usize), quote!(#value))
                }
                Value::Millis(value) => {
                    let value = Literal::u64_unsuffixed(value);
                    (quote!(u64), quote!(#value))
                }
            };
            quote!(const #constant: #ty = #value;)
        });

    let thread_slot = thread_slot(input, krate);

    quote! {
        #(#attrs)*
        #docs
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        #vis struct #name;

        #(#cfgs)*
        const _: () = {
            #[doc(hidden)]
            pub struct __RpmallocConfig;

            static __RPMALLOC_GLOBAL: #krate::__private::Global<__RpmallocConfig> =
                #krate::__private::Global::new();

            #thread_slot

            impl #krate::Config for __RpmallocConfig {
                type SpanSize = #span_size;
                #(#constants)*
            }

            // SAFETY: `global` always returns the one static above and `thread_state` this
            // expansion's own thread-local, which has no destructor and so lives as long as
            // the thread.
            unsafe impl #krate::__private::Instance for __RpmallocConfig {

                #[inline(always)]
                fn global() -> &'static #krate::__private::Global<Self> {
                    &__RPMALLOC_GLOBAL
                }

                #[inline(always)]
                fn thread_state() -> *const #krate::__private::ThreadState {
                    __rpmalloc_thread_state()
                }
            }

            // SAFETY: every method forwards to the rpmalloc entry point of the same name with
            // this configuration; those uphold the `GlobalAlloc` contract.
            unsafe impl ::core::alloc::GlobalAlloc for #name {
                #[inline]
                unsafe fn alloc(&self, layout: ::core::alloc::Layout) -> *mut u8 {
                    // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
                    unsafe { #krate::__private::alloc::<__RpmallocConfig>(layout) }
                }

                #[inline]
                unsafe fn dealloc(&self, ptr: *mut u8, layout: ::core::alloc::Layout) {
                    // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
                    unsafe { #krate::__private::dealloc::<__RpmallocConfig>(ptr, layout) }
                }

                #[inline]
                unsafe fn alloc_zeroed(&self, layout: ::core::alloc::Layout) -> *mut u8 {
                    // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
                    unsafe { #krate::__private::alloc_zeroed::<__RpmallocConfig>(layout) }
                }

                #[inline]
                unsafe fn realloc(
                    &self,
                    ptr: *mut u8,
                    layout: ::core::alloc::Layout,
                    new_size: usize,
                ) -> *mut u8 {
                    // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
                    unsafe {
                        #krate::__private::realloc::<__RpmallocConfig>(ptr, layout, new_size)
                    }
                }
            }

            #krate::__impl_allocator!(#name, __RpmallocConfig);

            // SAFETY: `__RpmallocConfig` is this expansion's own configuration.
            unsafe impl #krate::__private::Rpmalloc for #name {
                type Config = __RpmallocConfig;
            }

            impl #name {
                /// A new first-class heap of this allocator: not tied to a thread, and
                /// whose drop releases every block still in it at once. See
                /// `rpmalloc::Heap`.
                #[allow(dead_code)]
                pub const fn heap() -> #krate::Heap<#name> {
                    #krate::Heap::new()
                }

                /// The usable size of the live block at `ptr`: the bytes from `ptr` to
                /// the end of its block, at least the size it was allocated with (as
                /// `malloc_usable_size`).
                ///
                /// # Safety
                /// `ptr` is a live block of this allocator, as one of its allocation
                /// functions returned it (not a dangling pointer for a zero-sized
                /// request).
                #[allow(dead_code)]
                #[inline]
                pub unsafe fn usable_size(&self, ptr: *const u8) -> usize {
                    // SAFETY: the caller's contract, which the entry point has too.
                    unsafe { #krate::__private::usable_size::<__RpmallocConfig>(ptr) }
                }

                /// This instance's counters, or `None` when it was defined without
                /// `enable_statistics: true`.
                #[allow(dead_code)]
                pub fn statistics(&self) -> ::core::option::Option<#krate::Statistics> {
                    #krate::__private::statistics::<__RpmallocConfig>()
                }

                /// Gives this instance's cached memory back to the OS now: every span
                /// and run in every thread cache and in the global cache, every spare
                /// span, and the span reserves of the calling thread and of exited
                /// threads. Memory that holds live blocks stays, and so do other live
                /// threads' span reserves (address space their threads carve next, never
                /// touched).
                #[allow(dead_code)]
                pub fn collect(&self) {
                    #krate::__private::collect::<__RpmallocConfig>()
                }
            }
        };
    }
}

/// `text` with every character but ASCII letters, digits and `_` written as `_u{hex}`, so
/// that it can stand in an assembler symbol (identifiers may be non-ASCII).
fn symbol_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_string()
            } else {
                format!("_u{:x}", c as u32)
            }
        })
        .collect()
}

/// The expansion's per-thread slot (`rpmalloc::__thread_slot!`): a `thread_local!`, or with
/// `initial_exec_tls: true` a thread-local symbol of its own, named after the crate being
/// compiled and the allocator so that no two expansions in one program share it (two
/// allocators of the same name in one crate fail to link, they are not merged).
fn thread_slot(input: &Input, krate: &TokenStream) -> TokenStream {
    let initial_exec = input.settings.iter().any(|setting| {
        setting.key.name == keys::INITIAL_EXEC_TLS && matches!(setting.value, Value::Bool(true))
    });
    if !initial_exec {
        return quote!(#krate::__thread_slot!(thread_local););
    }
    let crate_name = std::env::var("CARGO_CRATE_NAME").unwrap_or_default();
    let name = symbol_safe(&input.name.unraw().to_string());
    let symbol = Literal::string(&format!(
        "__rpmalloc_tls_{}_{}",
        symbol_safe(&crate_name),
        name
    ));
    quote!(#krate::__thread_slot!(initial_exec #symbol);)
}

/// The `#[doc]` attributes describing the allocator and its effective configuration.
fn generated_docs(input: &Input) -> TokenStream {
    let mut lines = Vec::new();
    if input.attrs.iter().any(|attr| attr.path().is_ident("doc")) {
        // Start a new paragraph after the caller's own documentation.
        lines.push(String::new());
    }
    lines.extend(
        [
            " A thread-caching rpmalloc allocator instance, defined by `define_rpmalloc!`.",
            "",
            " It has its own global state, per-thread heaps and span caches, shared with no",
            " other instance. Use it through `GlobalAlloc`, or install it with",
            " `#[global_allocator]`.",
            "",
            " Effective configuration:",
            "",
            " | key | value |",
            " |---|---|",
        ]
        .map(str::to_owned),
    );
    for key in KEYS {
        let value = match input.setting(key.name).map(|setting| setting.value) {
            Some(Value::Int(value)) => value.to_string(),
            Some(Value::Bool(value)) => value.to_string(),
            Some(Value::Millis(keys::NEVER)) => "never".to_string(),
            Some(Value::Millis(value)) => value.to_string(),
            None => format!("{} (default)", keys::default_text(key)),
        };
        lines.push(format!(" | `{}` | {value} |", key.name));
    }
    quote!(#(#[doc = #lines])*)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(tokens: TokenStream) -> String {
        define_rpmalloc(tokens).to_string()
    }

    #[test]
    fn defaults_use_default_span_size_and_no_constants() {
        let out = expand_str(quote!(pub Plain));
        assert!(
            out.contains("type SpanSize = :: rpmalloc :: DefaultSpanSize ;"),
            "{out}"
        );
        assert!(!out.contains("const SPAN_MAP_COUNT"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
        assert!(out.contains("pub struct Plain ;"), "{out}");
        assert!(out.contains("| `span_size` | 65536 (default) |"), "{out}");
    }

    #[test]
    fn given_keys_become_constants() {
        let out = expand_str(quote!(Lean, <
            enable_thread_cache: false,
            span_size: 0x4_0000,
            span_map_count: 16usize,
        >));
        assert!(
            out.contains("type SpanSize = :: rpmalloc :: typenum :: U262144 ;"),
            "{out}"
        );
        assert!(
            out.contains("const ENABLE_THREAD_CACHE : bool = false ;"),
            "{out}"
        );
        assert!(out.contains("const SPAN_MAP_COUNT : usize = 16 ;"), "{out}");
        assert!(!out.contains("ENABLE_GLOBAL_CACHE"), "{out}");
        assert!(out.contains("| `span_size` | 262144 |"), "{out}");
        assert!(
            out.contains("| `enable_global_cache` | true (default) |"),
            "{out}"
        );
    }

    #[test]
    fn errors_still_declare_the_type() {
        let out = expand_str(quote!(A, <span_size: 3, enable_statistics: true>));
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("struct A ;"), "{out}");
        assert!(
            out.contains("const ENABLE_STATISTICS : bool = true ;"),
            "{out}"
        );
        assert!(out.contains("DefaultSpanSize"), "{out}");
    }

    #[test]
    fn the_thread_slot_follows_initial_exec_tls() {
        let default = expand_str(quote!(A));
        assert!(
            default.contains("__thread_slot ! (thread_local) ;"),
            "{default}"
        );
        let initial_exec = expand_str(quote!(Slotted, <initial_exec_tls: true>));
        let crate_name = std::env::var("CARGO_CRATE_NAME").unwrap_or_default();
        let expected =
            format!("__thread_slot ! (initial_exec \"__rpmalloc_tls_{crate_name}_Slotted\") ;");
        assert!(initial_exec.contains(&expected), "{initial_exec}");
        let raw = expand_str(quote!(r#Größe, <initial_exec_tls: true>));
        let expected = format!("\"__rpmalloc_tls_{crate_name}_Gr_uf6_udfe\"");
        assert!(raw.contains(&expected), "{raw}");
        let off = expand_str(quote!(A, <initial_exec_tls: false>));
        assert!(off.contains("__thread_slot ! (thread_local) ;"), "{off}");
    }

    #[test]
    fn missing_name_is_only_an_error() {
        let out = expand_str(quote!());
        assert!(out.starts_with(":: core :: compile_error !"), "{out}");
        assert!(!out.contains("struct"), "{out}");
    }

    #[test]
    fn cfg_applies_to_the_implementations() {
        let out = expand_str(quote!(
            #[cfg(unix)]
            A
        ));
        assert_eq!(out.matches("# [cfg (unix)]").count(), 2, "{out}");
    }
}

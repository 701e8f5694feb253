//! Parsing and validation of the `define_rpmalloc!` input.
//!
//! The header (attributes, visibility, name) must parse or the macro emits only an error.
//! Mistakes after the name are collected in [`Input::errors`] so the expansion can still
//! declare the type with the settings that were valid, and code using it reports nothing
//! beyond the configuration error itself.

use crate::keys::{self, Key, Kind};
use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Ident, Lit, Token, Visibility};

/// The value of one setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// A bool key's value.
    Bool(bool),
    /// An integer key's value, already checked against the key's rule.
    Int(u64),
    /// A duration key's value in milliseconds (`u64::MAX` for `never`), checked.
    Millis(u64),
}

/// One valid `key: value` entry.
#[derive(Debug)]
pub struct Setting {
    /// The key's rules.
    pub key: &'static Key,
    /// The key as written, for spans.
    pub ident: Ident,
    /// The checked value.
    pub value: Value,
}

/// A parsed `define_rpmalloc!` invocation.
pub struct Input {
    /// Outer attributes given before the visibility.
    pub attrs: Vec<Attribute>,
    /// The allocator type's visibility.
    pub vis: Visibility,
    /// The allocator type's name.
    pub name: Ident,
    /// The valid settings, in the order given.
    pub settings: Vec<Setting>,
    /// Every mistake found after the name, combined.
    pub errors: Option<syn::Error>,
}

impl Input {
    /// The setting for the key called `name`, if one was given.
    pub fn setting(&self, name: &str) -> Option<&Setting> {
        self.settings
            .iter()
            .find(|setting| setting.key.name == name)
    }

    fn push_error(&mut self, error: syn::Error) {
        match &mut self.errors {
            Some(errors) => errors.combine(error),
            None => self.errors = Some(error),
        }
    }
}

/// Parses a `define_rpmalloc!` input.
///
/// # Errors
/// When there is no attribute list, visibility and name to declare a type from.
pub fn parse_input(tokens: TokenStream) -> syn::Result<Input> {
    syn::parse2(tokens)
}

const USAGE: &str =
    "`define_rpmalloc!(pub MyAlloc, < span_size: 65536, enable_thread_cache: true >)`";

impl Parse for Input {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = Attribute::parse_outer(input)?;
        let vis: Visibility = input.parse()?;
        if !input.peek(Ident) {
            return Err(input.error(format!(
                "expected the name of the allocator type, as in {USAGE}"
            )));
        }
        let name: Ident = input.parse()?;
        let mut parsed = Input {
            attrs,
            vis,
            name,
            settings: Vec::new(),
            errors: None,
        };
        if let Err(error) = parse_configuration(input, &mut parsed) {
            parsed.push_error(error);
            skip_rest(input);
        }
        Ok(parsed)
    }
}

/// Parses what follows the name: nothing, or `, < key: value, ... >` with optional trailing
/// commas. Invalid entries are recorded in `parsed.errors`; structural mistakes are returned.
fn parse_configuration(input: ParseStream, parsed: &mut Input) -> syn::Result<()> {
    if input.is_empty() {
        return Ok(());
    }
    if !input.peek(Token![,]) {
        return Err(input.error(format!(
            "expected `,` after the allocator name `{}`, then the configuration as \
             `< key: value, ... >`",
            parsed.name
        )));
    }
    input.parse::<Token![,]>()?;
    if input.is_empty() {
        return Ok(());
    }
    if !input.peek(Token![<]) {
        return Err(input.error(format!(
            "expected the configuration in angle brackets, as in {USAGE}"
        )));
    }
    let open: Token![<] = input.parse()?;
    // Keys seen so far, valid or not, to report repeats.
    let mut seen = Vec::new();
    while !input.peek(Token![>]) {
        if input.is_empty() {
            return Err(syn::Error::new(
                open.span,
                "this `<` opening the configuration is never closed with `>`",
            ));
        }
        parse_entry(input, parsed, &mut seen)?;
        if input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
        }
    }
    input.parse::<Token![>]>()?;
    if input.peek(Token![,]) {
        input.parse::<Token![,]>()?;
    }
    if !input.is_empty() {
        return Err(input.error(
            "unexpected tokens after the configuration; `define_rpmalloc!` defines one \
             allocator per invocation",
        ));
    }
    Ok(())
}

/// Parses one `key: value` entry, recording it in `parsed.settings` or its mistake in
/// `parsed.errors`. Leaves the stream at the `,` or `>` after the value, or at its end.
fn parse_entry(
    input: ParseStream,
    parsed: &mut Input,
    seen: &mut Vec<&'static str>,
) -> syn::Result<()> {
    if !input.peek(Ident::peek_any) {
        return Err(input.error(format!(
            "expected a configuration key, one of: {}",
            keys::key_list()
        )));
    }
    let ident = Ident::parse_any(input)?;
    let name = ident.unraw().to_string();
    if !input.peek(Token![:]) {
        return Err(input.error(format!(
            "expected `:` and a value after configuration key `{name}`"
        )));
    }
    let colon: Token![:] = input.parse()?;
    let mut value = Vec::new();
    while !input.is_empty() && !input.peek(Token![,]) && !input.peek(Token![>]) {
        value.push(input.parse::<TokenTree>()?);
    }

    let Some(key) = keys::lookup(&name) else {
        let message = match keys::suggest(&name) {
            Some(suggestion) => format!(
                "unknown configuration key `{name}`; did you mean `{suggestion}`? expected one \
                 of: {}",
                keys::key_list()
            ),
            None => format!(
                "unknown configuration key `{name}`; expected one of: {}",
                keys::key_list()
            ),
        };
        parsed.push_error(syn::Error::new(ident.span(), message));
        return Ok(());
    };
    if seen.contains(&key.name) {
        parsed.push_error(syn::Error::new(
            ident.span(),
            format!("configuration key `{name}` is given twice"),
        ));
        return Ok(());
    }
    seen.push(key.name);
    match check_value(key, &value, colon.span) {
        Ok(value) => parsed.settings.push(Setting { key, ident, value }),
        Err(error) => parsed.push_error(error),
    }
    Ok(())
}

/// A value as written, before checking it against a key's rule.
enum Raw {
    Bool(bool),
    /// The identifier `never`.
    Never,
    /// An integer literal, possibly negated.
    Int(syn::LitInt, bool),
    Other,
}

fn classify(tokens: &[TokenTree]) -> Raw {
    match tokens {
        // A value passed through a `macro_rules!` fragment arrives in an invisible group.
        [TokenTree::Group(group)] if group.delimiter() == Delimiter::None => {
            classify(&group.stream().into_iter().collect::<Vec<_>>())
        }
        [TokenTree::Ident(ident)] if ident == "true" => Raw::Bool(true),
        [TokenTree::Ident(ident)] if ident == "false" => Raw::Bool(false),
        [TokenTree::Ident(ident)] if ident == "never" => Raw::Never,
        [TokenTree::Literal(literal)] => match Lit::new(literal.clone()) {
            Lit::Int(int) => Raw::Int(int, false),
            _ => Raw::Other,
        },
        [TokenTree::Punct(minus), TokenTree::Literal(literal)] if minus.as_char() == '-' => {
            match Lit::new(literal.clone()) {
                Lit::Int(int) => Raw::Int(int, true),
                _ => Raw::Other,
            }
        }
        _ => Raw::Other,
    }
}

/// Checks `tokens` against `key`'s rule. `colon` locates the error when the value is empty.
fn check_value(key: &Key, tokens: &[TokenTree], colon: Span) -> syn::Result<Value> {
    let name = key.name;
    let value_tokens: TokenStream = tokens.iter().cloned().collect();
    let error = |message: String| {
        if tokens.is_empty() {
            syn::Error::new(colon, message)
        } else {
            syn::Error::new_spanned(&value_tokens, message)
        }
    };
    match key.kind {
        Kind::Bool => match classify(tokens) {
            Raw::Bool(value) => Ok(Value::Bool(value)),
            _ => Err(error(format!("`{name}` takes a bool (`true` or `false`)"))),
        },
        Kind::Millis { max } => {
            let rule =
                format!("`{name}` takes a number of milliseconds between 0 and {max}, or `never`");
            match classify(tokens) {
                Raw::Never => Ok(Value::Millis(keys::NEVER)),
                Raw::Int(literal, false) if matches!(literal.suffix(), "" | "u64") => {
                    match literal.base10_parse::<u64>() {
                        Ok(value) if value <= max => Ok(Value::Millis(value)),
                        _ => Err(error(format!("{rule}, got {}", literal.to_token_stream()))),
                    }
                }
                Raw::Int(literal, negative) => Err(error(format!(
                    "{rule}, got {}{}",
                    if negative { "-" } else { "" },
                    literal.to_token_stream()
                ))),
                _ => Err(error(rule)),
            }
        }
        Kind::Int {
            min,
            max,
            power_of_two,
            unit,
        } => {
            let Raw::Int(literal, negative) = classify(tokens) else {
                return Err(error(format!("`{name}` takes an integer literal")));
            };
            if !matches!(literal.suffix(), "" | "usize") {
                return Err(error(format!(
                    "`{name}` takes an integer literal with no suffix or the `usize` suffix, \
                     got `{}`",
                    literal.to_token_stream()
                )));
            }
            let digits = literal.base10_digits();
            let sign = if negative { "-" } else { "" };
            let written = literal.to_token_stream().to_string();
            let written = written.strip_suffix(literal.suffix()).unwrap_or(&written);
            let shown = if written.replace('_', "") == digits {
                format!("{sign}{digits}")
            } else {
                // Hex, octal or binary: show the value and the literal as written.
                format!("{sign}{digits} (`{sign}{written}`)")
            };
            let rule = if power_of_two {
                format!("`{name}` must be a power of two between {min} and {max}{unit}")
            } else {
                format!("`{name}` must be between {min} and {max}{unit}")
            };
            let in_range = match literal.base10_parse::<u64>() {
                Ok(value) if !negative => {
                    (min..=max).contains(&value) && (!power_of_two || value.is_power_of_two())
                }
                _ => false,
            };
            if !in_range {
                return Err(error(format!("{rule}, got {shown}")));
            }
            Ok(Value::Int(literal.base10_parse::<u64>()?))
        }
    }
}

/// Consumes the rest of the input after a structural mistake.
fn skip_rest(input: ParseStream) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((_, next)) = rest.token_tree() {
            rest = next;
        }
        Ok(((), rest))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    /// The macro refuses exactly the values the library's `const` assertion refuses
    /// (`rpmalloc_keys::Key::accepts`, which `rpmalloc::config::check` applies): at and
    /// around every key's limits.
    #[test]
    fn refuses_what_the_library_refuses() {
        for key in keys::KEYS {
            let candidates: Vec<u64> = match key.kind {
                Kind::Bool => vec![0, 1],
                Kind::Millis { max } => vec![0, 1, max - 1, max, max + 1, keys::NEVER],
                Kind::Int { min, max, .. } => {
                    let mut v = vec![min, min + 1, max - 1, max, max + 1, 3 * 4096];
                    v.extend(min.checked_sub(1));
                    v
                }
            };
            for value in candidates {
                let tokens: TokenStream = match key.kind {
                    Kind::Bool if value == 1 => quote!(true),
                    Kind::Bool => quote!(false),
                    Kind::Millis { .. } if value == keys::NEVER => quote!(never),
                    _ => proc_macro2::Literal::u64_unsuffixed(value).into_token_stream(),
                };
                let tokens: Vec<TokenTree> = tokens.into_iter().collect();
                let accepted = check_value(key, &tokens, Span::call_site()).is_ok();
                assert_eq!(accepted, key.accepts(value), "{} = {value}", key.name);
            }
        }
    }

    fn errors(tokens: TokenStream) -> Vec<String> {
        match parse_input(tokens) {
            Ok(input) => input
                .errors
                .map(|errors| errors.into_iter().map(|e| e.to_string()).collect())
                .unwrap_or_default(),
            Err(error) => vec![format!("FATAL: {error}")],
        }
    }

    fn single_error(tokens: TokenStream) -> String {
        let errors = errors(tokens);
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.into_iter().next().unwrap()
    }

    #[test]
    fn accepted_forms() {
        for tokens in [
            quote!(Plain),
            quote!(pub Plain),
            quote!(pub(crate) Plain,),
            quote!(Plain, <>),
            quote!(Plain, <>,),
            quote!(/// Docs.
                #[allow(dead_code)] pub Plain, < span_size: 4096, >),
            quote!(FastAlloc, < enable_thread_cache: true >),
            quote!(LeanAlloc, < enable_thread_cache: false, enable_global_cache: false, span_size: 262144 >),
        ] {
            assert!(
                errors(tokens.clone()).is_empty(),
                "{tokens}: {:?}",
                errors(tokens.clone())
            );
        }
    }

    #[test]
    fn settings_are_recorded() {
        let input = parse_input(quote!(
            /// A.
            pub(crate) A, <
                span_size: 0x1_0000,
                span_map_count: 1_024usize,
                enable_thread_cache: false,
                enable_global_cache: true,
                enable_adaptive_thread_cache: true,
                enable_unlimited_cache: true,
                max_thread_span_cache: 1_000_000,
                max_thread_span_large_cache: 1,
                max_global_span_cache: 1_000_000,
                global_cache_multiplier: 1024,
                enable_huge_pages: true,
                enable_statistics: true,
            >,
        ))
        .unwrap();
        assert!(input.errors.is_none());
        assert_eq!(input.attrs.len(), 1);
        assert_eq!(input.name, "A");
        assert_eq!(input.settings.len(), 12);
        assert_eq!(
            input.setting("span_size").unwrap().value,
            Value::Int(65_536)
        );
        assert_eq!(
            input.setting("span_map_count").unwrap().value,
            Value::Int(1024)
        );
        assert_eq!(
            input.setting("enable_thread_cache").unwrap().value,
            Value::Bool(false)
        );
    }

    #[test]
    fn span_size_rules() {
        let message = "`span_size` must be a power of two between 4096 and 262144 bytes, got";
        assert_eq!(
            single_error(quote!(A, <span_size: 65535>)),
            format!("{message} 65535")
        );
        assert_eq!(
            single_error(quote!(A, <span_size: 2048>)),
            format!("{message} 2048")
        );
        assert_eq!(
            single_error(quote!(A, <span_size: 524288>)),
            format!("{message} 524288")
        );
        assert_eq!(
            single_error(quote!(A, <span_size: 0x8_0000usize>)),
            format!("{message} 524288 (`0x8_0000`)")
        );
        assert_eq!(
            single_error(quote!(A, <span_size: -0x1000>)),
            format!("{message} -4096 (`-0x1000`)")
        );
        assert_eq!(
            single_error(quote!(A, <span_size: 0>)),
            format!("{message} 0")
        );
        assert_eq!(
            single_error(quote!(A, <span_size: -4096>)),
            format!("{message} -4096")
        );
        assert_eq!(
            single_error(quote!(A, <span_size: 99999999999999999999999999>)),
            format!("{message} 99999999999999999999999999")
        );
    }

    #[test]
    fn integer_rules() {
        assert_eq!(
            single_error(quote!(A, <span_map_count: 0>)),
            "`span_map_count` must be between 1 and 65536, got 0"
        );
        assert_eq!(
            single_error(quote!(A, <max_thread_span_cache: 1_000_001>)),
            "`max_thread_span_cache` must be between 1 and 1000000, got 1000001"
        );
        assert_eq!(
            single_error(quote!(A, <global_cache_multiplier: 1025>)),
            "`global_cache_multiplier` must be between 1 and 1024, got 1025"
        );
        assert_eq!(
            single_error(quote!(A, <span_size: 4096u32>)),
            "`span_size` takes an integer literal with no suffix or the `usize` suffix, got `4096u32`"
        );
    }

    #[test]
    fn type_errors() {
        let int = "`span_size` takes an integer literal";
        assert_eq!(single_error(quote!(A, <span_size: true>)), int);
        assert_eq!(single_error(quote!(A, <span_size: 4096.0>)), int);
        assert_eq!(single_error(quote!(A, <span_size: "4096">)), int);
        assert_eq!(single_error(quote!(A, <span_size: 4 * 1024>)), int);
        assert_eq!(single_error(quote!(A, <span_size: SIZE>)), int);
        assert_eq!(single_error(quote!(A, <span_size:>)), int);
        let bool = "`enable_thread_cache` takes a bool (`true` or `false`)";
        assert_eq!(single_error(quote!(A, <enable_thread_cache: 1>)), bool);
        assert_eq!(single_error(quote!(A, <enable_thread_cache: "true">)), bool);
        assert_eq!(single_error(quote!(A, <enable_thread_cache: yes>)), bool);
    }

    #[test]
    fn key_errors() {
        assert_eq!(
            single_error(quote!(A, <spn_size: 4096>)),
            format!(
                "unknown configuration key `spn_size`; did you mean `span_size`? expected one \
                 of: {}",
                keys::key_list()
            )
        );
        assert_eq!(
            single_error(quote!(A, <colour: 1>)),
            format!(
                "unknown configuration key `colour`; expected one of: {}",
                keys::key_list()
            )
        );
        assert!(single_error(quote!(A, <type: 1>)).starts_with("unknown configuration key `type`"));
        assert_eq!(
            single_error(quote!(A, <span_size: 4096, span_size: 8192>)),
            "configuration key `span_size` is given twice"
        );
        let errors = errors(quote!(A, <span_size: 3, span_size: 4096, r#span_size: 8192>));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(errors[1], "configuration key `span_size` is given twice");
        assert_eq!(errors[2], "configuration key `span_size` is given twice");
    }

    #[test]
    fn several_errors_are_all_reported() {
        let errors = errors(quote!(A, <spn_size: 1, span_map_count: 0, enable_statistics: 3>));
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn structural_errors() {
        let fatal = |tokens: TokenStream| match parse_input(tokens) {
            Err(error) => error.to_string(),
            Ok(input) => panic!("parsed `{}`", input.name),
        };
        assert!(fatal(quote!()).contains("expected the name of the allocator type"));
        assert!(fatal(quote!(pub)).contains("expected the name of the allocator type"));
        assert!(fatal(quote!(<span_size: 4096>)).starts_with("expected the name"));
        assert!(fatal(quote!(struct A)).starts_with("expected the name"));
        assert!(single_error(quote!(A <span_size: 4096>)).starts_with("expected `,` after"));
        assert!(single_error(quote!(A, span_size: 4096)).starts_with("expected the configuration"));
        assert!(single_error(quote!(A, <span_size: 4096)).contains("never closed"));
        assert!(single_error(quote!(A, <span_size 4096>)).starts_with("expected `:`"));
        assert!(single_error(quote!(A, <span_size: 4096>, B)).starts_with("unexpected tokens"));
        assert!(single_error(quote!(A, <span_size: 4096>>)).starts_with("unexpected tokens"));
        assert!(single_error(quote!(A, <, span_size: 4096>))
            .starts_with("expected a configuration key"));
    }
}

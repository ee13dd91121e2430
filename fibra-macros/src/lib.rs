//! `#[fibra::main]` and `#[fibra::test]`: a function whose body runs as the root fiber of a
//! fresh [`fibra::Runtime`](https://docs.rs/fibra). Use them through the `fibra` crate, which
//! re-exports them and documents them with examples; this crate only expands them.
//!
//! ```text
//! #[fibra::main(workers = 2, stack_size = 131072)]
//! fn main() { BODY }
//! // expands to
//! fn main() {
//!     let rt = ::fibra::Runtime::builder().workers(2).stack_size(131072).build()
//!         .unwrap_or_else(|e| panic!("#[fibra::main]: cannot build the runtime: {e}"));
//!     rt.run(|| BODY)
//! }
//! ```
//! `#[fibra::test]` expands the same way and adds `#[test]`.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ItemFn, Lit, MetaNameValue, Token};

/// Runs `fn main`'s body as the root fiber of a new runtime; see `fibra::main`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args.into(), item.into(), Kind::Main).into()
}

/// Runs a test's body as the root fiber of a new runtime; see `fibra::test`.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args.into(), item.into(), Kind::Test).into()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Main,
    Test,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Main => "#[fibra::main]",
            Kind::Test => "#[fibra::test]",
        }
    }
}

/// The arguments: `workers = N`, `stack_size = BYTES`, each at most once.
#[derive(Default)]
struct Args {
    workers: Option<Expr>,
    stack_size: Option<Expr>,
}

fn parse_args(args: TokenStream2, kind: Kind) -> syn::Result<Args> {
    let pairs = Punctuated::<MetaNameValue, Token![,]>::parse_terminated
        .parse2(args)
        .map_err(|e| {
            syn::Error::new(
                e.span(),
                format!(
                    "{}: expected `workers = N` and/or `stack_size = BYTES`, separated by commas",
                    kind.name()
                ),
            )
        })?;
    let mut out = Args::default();
    for pair in pairs {
        let name = pair
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        let slot = match name.as_str() {
            "workers" => &mut out.workers,
            "stack_size" => &mut out.stack_size,
            _ => {
                return Err(syn::Error::new_spanned(
                    &pair.path,
                    format!(
                        "{}: unknown argument `{}`: expected `workers = N` or `stack_size = BYTES`",
                        kind.name(),
                        pair.path.to_token_stream().to_string().replace(' ', "")
                    ),
                ))
            }
        };
        if slot.is_some() {
            return Err(syn::Error::new_spanned(
                &pair.path,
                format!("{}: `{name}` given twice", kind.name()),
            ));
        }
        if name == "workers" && is_int_literal(&pair.value, 0) {
            return Err(syn::Error::new_spanned(
                &pair.value,
                format!("{}: `workers` must be at least 1", kind.name()),
            ));
        }
        *slot = Some(pair.value);
    }
    Ok(out)
}

fn is_int_literal(e: &Expr, v: u128) -> bool {
    matches!(e, Expr::Lit(l) if matches!(&l.lit, Lit::Int(i) if i.base10_parse::<u128>().ok() == Some(v)))
}

fn expand(args: TokenStream2, item: TokenStream2, kind: Kind) -> TokenStream2 {
    match try_expand(args, item.clone(), kind) {
        Ok(tokens) => tokens,
        Err(e) => {
            // The error, plus the function unchanged, so the rest of the crate still
            // type-checks and the error stays the only one.
            let err = e.to_compile_error();
            quote!(#err #item)
        }
    }
}

fn try_expand(args: TokenStream2, item: TokenStream2, kind: Kind) -> syn::Result<TokenStream2> {
    let args = parse_args(args, kind)?;
    let mut f: ItemFn = syn::parse2(item)
        .map_err(|e| syn::Error::new(e.span(), format!("{} goes on a function", kind.name())))?;
    let sig = &f.sig;
    if let Some(a) = &sig.asyncness {
        return Err(syn::Error::new_spanned(
            a,
            format!(
                "{}: remove `async`: the body runs as a fiber, in blocking style \
                 (await a future inside it with fibra::await_future)",
                kind.name()
            ),
        ));
    }
    if !sig.inputs.is_empty() {
        return Err(syn::Error::new_spanned(
            &sig.inputs,
            format!("{}: the function takes no arguments", kind.name()),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            format!("{}: the function cannot be generic", kind.name()),
        ));
    }
    if kind == Kind::Test {
        if let Some(a) = f.attrs.iter().find(|a| a.path().is_ident("test")) {
            return Err(syn::Error::new_spanned(
                a,
                "#[fibra::test] already makes the function a test: remove this #[test]",
            ));
        }
    }
    let workers = args.workers.iter();
    let stack_size = args.stack_size.iter();
    let name = kind.name();
    let body = &f.block;
    let span = body.span();
    let new_body = quote_spanned! {span=> {
        let __fibra_runtime = ::fibra::Runtime::builder()
            #(.workers(#workers))*
            #(.stack_size(#stack_size))*
            .build()
            .unwrap_or_else(|e| ::core::panic!("{}: cannot build the runtime: {}", #name, e));
        __fibra_runtime.run(|| #body)
    }};
    f.block = syn::parse2(new_body)?;
    let test_attr = match kind {
        Kind::Test => quote!(#[::core::prelude::v1::test]),
        Kind::Main => TokenStream2::new(),
    };
    Ok(quote!(#test_attr #f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(args: &str, item: &str, kind: Kind) -> String {
        let args: TokenStream2 = args.parse().unwrap();
        let item: TokenStream2 = item.parse().unwrap();
        match try_expand(args, item, kind) {
            Ok(t) => panic!("expanded: {t}"),
            Err(e) => e.to_string(),
        }
    }

    #[::core::prelude::v1::test] // plain `test` is this crate's attribute
    fn bad_arguments_say_what_is_accepted() {
        let m = Kind::Main;
        assert!(error("wrokers = 2", "fn main() {}", m).contains(
            "unknown argument `wrokers`: expected `workers = N` or `stack_size = BYTES`"
        ));
        assert!(error("workers = 0", "fn main() {}", m).contains("`workers` must be at least 1"));
        assert!(error("workers = 1, workers = 2", "fn main() {}", m).contains("given twice"));
        assert!(error("workers", "fn main() {}", m).contains("expected `workers = N`"));
        assert!(error("", "async fn main() {}", m).contains("remove `async`"));
        assert!(error("", "fn main(x: u8) {}", m).contains("takes no arguments"));
        assert!(error("", "fn main<T>() {}", m).contains("cannot be generic"));
        assert!(error("", "struct S;", m).contains("goes on a function"));
        assert!(error("", "#[test] fn t() {}", Kind::Test).contains("remove this #[test]"));
    }

    #[::core::prelude::v1::test] // plain `test` is this crate's attribute
    fn expansion_builds_a_runtime_and_runs_the_body() {
        let args: TokenStream2 = "workers = 2, stack_size = 1 << 17".parse().unwrap();
        let item: TokenStream2 = "#[should_panic] fn t() -> u8 { 1 }".parse().unwrap();
        let out = try_expand(args, item, Kind::Test).unwrap().to_string();
        for part in [
            "# [:: core :: prelude :: v1 :: test]",
            "# [should_panic]",
            ". workers (2)",
            ". stack_size (1 << 17)",
            "__fibra_runtime . run (| | { 1 })",
            "fn t () -> u8",
        ] {
            assert!(out.contains(part), "{part} not in {out}");
        }
    }
}

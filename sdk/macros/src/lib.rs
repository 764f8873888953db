//! Procedural macros of `fnhost-sdk`: trigger attributes and the component export.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{Ident, ItemFn, LitStr, Token, parse::Parser, parse_macro_input, punctuated::Punctuated};

/// Marks a function as an `httpTrigger` function.
///
/// The function takes an `HttpRequest` and returns anything that implements
/// `IntoHttpResponse`. Its name in function.toml is the Rust name, or
/// `#[http_trigger(name = "HttpExample")]`.
#[proc_macro_attribute]
pub fn http_trigger(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    let name = match function_name(attr, &func) {
        Ok(n) => n,
        Err(e) => return e.to_compile_error().into(),
    };
    let ident = &func.sig.ident;
    let registration = registration_ident(ident);
    let wrapper = format_ident!("__fnhost_http_{}", ident);
    quote! {
        #func

        #[doc(hidden)]
        fn #wrapper(req: ::fnhost_sdk::HttpRequest) -> ::fnhost_sdk::HttpResponse {
            ::fnhost_sdk::IntoHttpResponse::into_http_response(#ident(req))
        }

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        const #registration: ::fnhost_sdk::__private::Registration =
            ::fnhost_sdk::__private::Registration::Http { name: #name, handler: #wrapper };
    }
    .into()
}

/// Exports the listed trigger functions as this crate's component.
///
/// Call it once, at the crate root: `fnhost_sdk::export_functions!(hello, get_product);`
#[proc_macro]
pub fn export_functions(input: TokenStream) -> TokenStream {
    let names = match Punctuated::<syn::Path, Token![,]>::parse_terminated.parse(input) {
        Ok(n) => n,
        Err(e) => return e.to_compile_error().into(),
    };
    let registrations = names.iter().map(|path| {
        let mut path = path.clone();
        let last = path.segments.last_mut().expect("a path has a last segment");
        last.ident = registration_ident(&last.ident);
        path
    });
    quote! {
        #[doc(hidden)]
        static __FNHOST_FUNCTIONS: &[::fnhost_sdk::__private::Registration] = &[#(#registrations),*];

        #[doc(hidden)]
        struct __FnhostComponent;

        impl ::fnhost_sdk::bindings::exports::fnhost::function::http::Guest for __FnhostComponent {
            fn handle(
                function: ::std::string::String,
                request: ::fnhost_sdk::bindings::fnhost::function::types::HttpRequest,
            ) -> ::fnhost_sdk::bindings::fnhost::function::types::HttpResponse {
                ::fnhost_sdk::__private::dispatch_http(__FNHOST_FUNCTIONS, &function, request)
            }
        }

        impl ::fnhost_sdk::bindings::exports::fnhost::function::orchestrator::Guest for __FnhostComponent {
            fn run(
                function: ::std::string::String,
                request: ::fnhost_sdk::bindings::fnhost::function::durable_types::OrchestratorRequest,
            ) -> ::fnhost_sdk::bindings::fnhost::function::durable_types::OrchestratorResponse {
                ::fnhost_sdk::__private::dispatch_orchestrator(__FNHOST_FUNCTIONS, &function, request)
            }
        }

        impl ::fnhost_sdk::bindings::exports::fnhost::function::activity::Guest for __FnhostComponent {
            fn run(
                function: ::std::string::String,
                input: ::std::option::Option<::std::string::String>,
            ) -> ::std::result::Result<
                ::std::option::Option<::std::string::String>,
                ::fnhost_sdk::bindings::fnhost::function::durable_types::Failure,
            > {
                ::fnhost_sdk::__private::dispatch_activity(__FNHOST_FUNCTIONS, &function, input)
            }
        }

        ::fnhost_sdk::bindings::__export_function_world!(__FnhostComponent);
    }
    .into()
}

fn registration_ident(ident: &Ident) -> Ident {
    format_ident!("__FNHOST_REGISTRATION_{}", ident)
}

/// `name = "..."` from the attribute, else the Rust function's name.
fn function_name(attr: TokenStream, func: &ItemFn) -> syn::Result<LitStr> {
    let mut name = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            name = Some(meta.value()?.parse::<LitStr>()?);
            Ok(())
        } else {
            Err(meta.error("expected `name = \"...\"`"))
        }
    });
    parser.parse(attr)?;
    Ok(name.unwrap_or_else(|| LitStr::new(&func.sig.ident.to_string(), func.sig.ident.span())))
}

//! Procedural macros of `fnhost-sdk`: trigger attributes and the component export.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{
    FnArg, Ident, ItemFn, LitStr, ReturnType, Token, Type, parse::Parser, parse_macro_input,
    punctuated::Punctuated, spanned::Spanned,
};

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

/// Marks a function as a `queueTrigger` function.
///
/// It takes a `QueueMessage` (`text()`, `json()`, `bytes()`, `id`,
/// `dequeue_count`, ...) and returns `()` or a `Result<(), E: Display>`; an
/// `Err` fails the invocation, and the message is retried (then moved to
/// `{queue}-poison`). Its name is the Rust name, or `#[queue_trigger(name = "...")]`.
#[proc_macro_attribute]
pub fn queue_trigger(attr: TokenStream, item: TokenStream) -> TokenStream {
    simple_trigger(attr, item, "Queue", quote! { ::fnhost_sdk::QueueMessage })
}

/// Marks a function as a `blobTrigger` function.
///
/// It takes a `Blob` (`param("name")`, `text()`, `content`, `etag`, ...) and
/// returns `()` or a `Result<(), E: Display>`; an `Err` fails the invocation
/// (retried, 5 times in all, then reported in `webjobs-blobtrigger-poison`).
#[proc_macro_attribute]
pub fn blob_trigger(attr: TokenStream, item: TokenStream) -> TokenStream {
    simple_trigger(attr, item, "Blob", quote! { ::fnhost_sdk::Blob })
}

/// Marks a function as a `timerTrigger` function: it takes a `TimerInfo`
/// and returns `()` or a `Result<(), E: Display>`.
#[proc_macro_attribute]
pub fn timer_trigger(attr: TokenStream, item: TokenStream) -> TokenStream {
    simple_trigger(attr, item, "Timer", quote! { ::fnhost_sdk::TimerInfo })
}

fn simple_trigger(
    attr: TokenStream,
    item: TokenStream,
    kind: &str,
    input: proc_macro2::TokenStream,
) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    let name = match function_name(attr, &func) {
        Ok(n) => n,
        Err(e) => return e.to_compile_error().into(),
    };
    if func.sig.inputs.len() != 1 {
        return syn::Error::new(
            func.sig.inputs.span(),
            format!("a {kind} trigger function takes one argument, its {input}"),
        )
        .to_compile_error()
        .into();
    }
    let ident = &func.sig.ident;
    let registration = registration_ident(ident);
    let wrapper = format_ident!("__fnhost_{}_{}", kind.to_ascii_lowercase(), ident);
    let variant = format_ident!("{}", kind);
    quote! {
        #func

        #[doc(hidden)]
        fn #wrapper(input: #input) -> ::std::result::Result<(), ::std::string::String> {
            ::fnhost_sdk::IntoTriggerResult::into_trigger_result(#ident(input))
        }

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        const #registration: ::fnhost_sdk::__private::Registration =
            ::fnhost_sdk::__private::Registration::#variant { name: #name, handler: #wrapper };
    }
    .into()
}

/// Marks a function as an `activityTrigger` function.
///
/// The function takes one argument, deserialized from the JSON input (an absent input
/// reads as `null`, so `Option<T>` and `()` accept it), or none, and returns a
/// serializable value or a `Result` of one. An `Err` fails the activity: a `TaskError`
/// keeps its type, any other `Display` error becomes an `ActivityError` with its text.
/// Its name is the Rust name, or `#[activity(name = "SayHello")]`.
#[proc_macro_attribute]
pub fn activity(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    expand_activity(attr, func).unwrap_or_else(|e| e.to_compile_error().into())
}

fn expand_activity(attr: TokenStream, func: ItemFn) -> syn::Result<TokenStream> {
    let name = function_name(attr, &func)?;
    let sig = &func.sig;
    if let Some(asyncness) = sig.asyncness {
        return Err(syn::Error::new(
            asyncness.span(),
            "an activity is a plain `fn`: it runs to completion in one call",
        ));
    }
    reject_generics(&func)?;
    let ident = &sig.ident;
    let call = match sig.inputs.len() {
        0 => quote! { #ident() },
        1 => quote! { #ident(::fnhost_sdk::__private::activity_input(#name, input)?) },
        _ => {
            return Err(syn::Error::new(
                sig.inputs.span(),
                "an activity takes one argument, its JSON input: put several values in a \
                 tuple or a struct",
            ));
        }
    };
    let body = if returns_result(&sig.output) {
        quote! {
            match #call {
                ::std::result::Result::Ok(output) => {
                    ::fnhost_sdk::__private::activity_output(#name, output)
                }
                ::std::result::Result::Err(error) => {
                    use ::fnhost_sdk::__private::{
                        ActivityFailureViaDisplay as _, ActivityFailureViaTaskError as _,
                    };
                    ::std::result::Result::Err(
                        (&::fnhost_sdk::__private::ErrorWrap::new(error)).activity_failure(),
                    )
                }
            }
        }
    } else {
        quote! { ::fnhost_sdk::__private::activity_output(#name, #call) }
    };
    let registration = registration_ident(ident);
    let wrapper = format_ident!("__fnhost_activity_{}", ident);
    Ok(quote! {
        #func

        #[doc(hidden)]
        #[allow(unused_variables)]
        fn #wrapper(
            input: ::std::option::Option<::std::string::String>,
        ) -> ::std::result::Result<
            ::std::option::Option<::std::string::String>,
            ::fnhost_sdk::__private::Failure,
        > {
            #body
        }

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        const #registration: ::fnhost_sdk::__private::Registration =
            ::fnhost_sdk::__private::Registration::Activity { name: #name, handler: #wrapper };
    }
    .into())
}

/// Marks an `async fn(ctx: OrchestrationContext)` as an `orchestrationTrigger` function.
///
/// It returns a serializable value or a `Result` of one. An `Err` fails the instance:
/// an error that converts into `OrchestrationError` (it, `TaskError`,
/// `serde_json::Error`, strings) keeps its type, any other `Display` error becomes an
/// `OrchestrationError` with its text. Its name is the Rust name, or
/// `#[orchestrator(name = "HelloSequence")]`.
#[proc_macro_attribute]
pub fn orchestrator(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    expand_orchestrator(attr, func).unwrap_or_else(|e| e.to_compile_error().into())
}

fn expand_orchestrator(attr: TokenStream, func: ItemFn) -> syn::Result<TokenStream> {
    let name = function_name(attr, &func)?;
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "an orchestrator is an `async fn(ctx: OrchestrationContext)`",
        ));
    }
    reject_generics(&func)?;
    if sig.inputs.len() != 1 || matches!(sig.inputs.first(), Some(FnArg::Receiver(_))) {
        return Err(syn::Error::new(
            sig.inputs.span(),
            "an orchestrator takes one argument, `ctx: OrchestrationContext`; read its input \
             with `ctx.input()`",
        ));
    }
    let ident = &sig.ident;
    let body = if returns_result(&sig.output) {
        quote! {
            match #ident(ctx).await {
                ::std::result::Result::Ok(output) => {
                    ::fnhost_sdk::__private::orchestration_output(#name, output)
                }
                ::std::result::Result::Err(error) => {
                    use ::fnhost_sdk::__private::{
                        OrchestrationFailureViaDisplay as _, OrchestrationFailureViaInto as _,
                    };
                    ::std::result::Result::Err(
                        (&::fnhost_sdk::__private::ErrorWrap::new(error)).orchestration_failure(),
                    )
                }
            }
        }
    } else {
        quote! { ::fnhost_sdk::__private::orchestration_output(#name, #ident(ctx).await) }
    };
    let registration = registration_ident(ident);
    let wrapper = format_ident!("__fnhost_orchestrator_{}", ident);
    Ok(quote! {
        #func

        #[doc(hidden)]
        fn #wrapper(
            ctx: ::fnhost_sdk::OrchestrationContext,
        ) -> ::fnhost_sdk::__private::OrchestratorFuture {
            ::std::boxed::Box::pin(async move { #body })
        }

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        const #registration: ::fnhost_sdk::__private::Registration =
            ::fnhost_sdk::__private::Registration::Orchestrator { name: #name, handler: #wrapper };
    }
    .into())
}

/// Marks a durable entity (an `entityTrigger` function).
///
/// On a `fn(ctx: &mut EntityContext)`: it runs once per operation; it returns
/// `()` or a `Result<(), E>` with a `Display` error: an `Err` fails that
/// operation only (its state change is rolled back, the caller gets the text).
///
/// On an `impl Type` block (`Type: Default + Serialize + Deserialize`): the
/// state is a `Type`, and each `pub fn` taking `&self` or `&mut self` is an
/// operation of the same name (compared ignoring case), with at most one
/// more argument, its input (any `Deserialize` type), optionally preceded by
/// `ctx: &mut EntityContext` to signal or start orchestrations. What it
/// returns is the result (`Result<T, E>`: `Err` fails the operation); the
/// operation `delete` removes the state unless the type defines its own.
///
/// Its name is the Rust name (of the fn, or of the type), or
/// `#[entity(name = "Counter")]`; entity names are compared in lower case.
#[proc_macro_attribute]
pub fn entity(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as syn::Item);
    let expanded = match item {
        syn::Item::Fn(func) => expand_entity(attr, func),
        syn::Item::Impl(block) => expand_entity_type(attr, block),
        other => Err(syn::Error::new(
            other.span(),
            "#[entity] goes on a `fn(ctx: &mut EntityContext)` or on an `impl` block of the state's type",
        )),
    };
    expanded.unwrap_or_else(|e| e.to_compile_error().into())
}

/// `#[entity] impl Type { pub fn op(&mut self, input: I) -> R { .. } }`.
fn expand_entity_type(attr: TokenStream, block: syn::ItemImpl) -> syn::Result<TokenStream> {
    if block.trait_.is_some() || !block.generics.params.is_empty() {
        return Err(syn::Error::new(
            block.span(),
            "#[entity] goes on a plain, non-generic `impl Type { .. }` block",
        ));
    }
    let Type::Path(type_path) = &*block.self_ty else {
        return Err(syn::Error::new(
            block.self_ty.span(),
            "expected a type name",
        ));
    };
    let ty = &block.self_ty;
    let ident = type_path
        .path
        .segments
        .last()
        .map(|s| s.ident.clone())
        .ok_or_else(|| syn::Error::new(type_path.span(), "expected a type name"))?;
    let name = name_or(attr, &ident)?;

    let mut arms = Vec::new();
    let mut has_delete = false;
    for item in &block.items {
        let syn::ImplItem::Fn(method) = item else {
            continue;
        };
        if !matches!(method.vis, syn::Visibility::Public(_)) {
            continue;
        }
        let sig = &method.sig;
        let Some(FnArg::Receiver(receiver)) = sig.inputs.first() else {
            continue;
        };
        if receiver.reference.is_none() {
            return Err(syn::Error::new(
                receiver.span(),
                "an entity operation takes `&self` or `&mut self`",
            ));
        }
        if sig.asyncness.is_some() || !sig.generics.params.is_empty() {
            return Err(syn::Error::new(
                sig.span(),
                "an entity operation is a plain, non-generic, non-async method",
            ));
        }
        let method_ident = &sig.ident;
        let op = method_ident.to_string();
        has_delete |= op.eq_ignore_ascii_case("delete");
        let mut args = Vec::new();
        let mut rest: Vec<&syn::PatType> = sig
            .inputs
            .iter()
            .skip(1)
            .filter_map(|a| match a {
                FnArg::Typed(t) => Some(t),
                FnArg::Receiver(_) => None,
            })
            .collect();
        let takes_ctx = rest.first().is_some_and(|t| {
            matches!(&*t.ty, Type::Reference(r) if r.mutability.is_some()
                && matches!(&*r.elem, Type::Path(p)
                    if p.path.segments.last().is_some_and(|s| s.ident == "EntityContext")))
        });
        if takes_ctx {
            rest.remove(0);
            args.push(quote! { &mut *ctx });
        }
        if rest.len() > 1 {
            return Err(syn::Error::new(
                sig.inputs.span(),
                "an entity operation takes at most one input (after an optional `&mut EntityContext`)",
            ));
        }
        let load_input = match rest.first() {
            Some(input) => {
                let input_ty = &input.ty;
                args.push(quote! { input });
                quote! {
                    let input: #input_ty = ctx
                        .get_input()
                        .map_err(|e| ::std::format!("operation '{}': {}", #op, e))?;
                }
            }
            None => quote! {},
        };
        let call = quote! { state.#method_ident(#(#args),*) };
        let run = match &sig.output {
            ReturnType::Default => quote! { #call; },
            ReturnType::Type(..) if returns_result(&sig.output) => quote! {
                let result = #call.map_err(|e| e.to_string())?;
                ctx.set_result(&result);
            },
            ReturnType::Type(..) => quote! {
                let result = #call;
                ctx.set_result(&result);
            },
        };
        arms.push(quote! {
            if operation.eq_ignore_ascii_case(#op) {
                #load_input
                #run
                ctx.set_state(&state);
                return ::std::result::Result::Ok(());
            }
        });
    }
    if !has_delete {
        arms.push(quote! {
            if operation.eq_ignore_ascii_case("delete") {
                ctx.delete_state();
                return ::std::result::Result::Ok(());
            }
        });
    }
    let registration = registration_ident(&ident);
    let wrapper = format_ident!("__fnhost_entity_{}", ident);
    Ok(quote! {
        #block

        #[doc(hidden)]
        #[allow(non_snake_case)]
        fn #wrapper(
            ctx: &mut ::fnhost_sdk::EntityContext,
        ) -> ::std::result::Result<(), ::std::string::String> {
            #[allow(unused_mut)]
            let mut state: #ty = ctx
                .get_state(<#ty as ::std::default::Default>::default)
                .map_err(|e| e.to_string())?;
            let operation = ctx.operation_name().to_owned();
            #(#arms)*
            ::std::result::Result::Err(::std::format!(
                "entity '{}' has no operation '{}'",
                #name,
                operation
            ))
        }

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        const #registration: ::fnhost_sdk::__private::Registration =
            ::fnhost_sdk::__private::Registration::Entity { name: #name, handler: #wrapper };
    }
    .into())
}

fn expand_entity(attr: TokenStream, func: ItemFn) -> syn::Result<TokenStream> {
    let name = function_name(attr, &func)?;
    let sig = &func.sig;
    if let Some(asyncness) = sig.asyncness {
        return Err(syn::Error::new(
            asyncness.span(),
            "an entity is a plain `fn(&mut EntityContext)`: each operation runs to completion",
        ));
    }
    reject_generics(&func)?;
    if sig.inputs.len() != 1 {
        return Err(syn::Error::new(
            sig.inputs.span(),
            "an entity takes one argument: `ctx: &mut EntityContext`",
        ));
    }
    let ident = &sig.ident;
    let body = if returns_result(&sig.output) {
        quote! { #ident(ctx).map_err(|e| e.to_string()) }
    } else {
        quote! {{ #ident(ctx); ::std::result::Result::Ok(()) }}
    };
    let registration = registration_ident(ident);
    let wrapper = format_ident!("__fnhost_entity_{}", ident);
    Ok(quote! {
        #func

        #[doc(hidden)]
        fn #wrapper(
            ctx: &mut ::fnhost_sdk::EntityContext,
        ) -> ::std::result::Result<(), ::std::string::String> {
            #body
        }

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        const #registration: ::fnhost_sdk::__private::Registration =
            ::fnhost_sdk::__private::Registration::Entity { name: #name, handler: #wrapper };
    }
    .into())
}

/// Whether the return type is spelled `Result<..>` (any path ending so, e.g.
/// `anyhow::Result<T>`): its `Err` then fails the function instead of being its output.
fn returns_result(output: &ReturnType) -> bool {
    match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(path) => path
                .path
                .segments
                .last()
                .is_some_and(|segment| segment.ident == "Result"),
            _ => false,
        },
        ReturnType::Default => false,
    }
}

fn reject_generics(func: &ItemFn) -> syn::Result<()> {
    if func.sig.generics.params.is_empty() {
        Ok(())
    } else {
        Err(syn::Error::new(
            func.sig.generics.span(),
            "a durable function cannot be generic: the host calls it by name",
        ))
    }
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

        impl ::fnhost_sdk::bindings::exports::fnhost::function::queue::Guest for __FnhostComponent {
            fn handle(
                function: ::std::string::String,
                message: ::fnhost_sdk::bindings::fnhost::function::trigger_types::QueueMessage,
            ) -> ::std::result::Result<(), ::std::string::String> {
                ::fnhost_sdk::__private::dispatch_queue(__FNHOST_FUNCTIONS, &function, message)
            }
        }

        impl ::fnhost_sdk::bindings::exports::fnhost::function::blob::Guest for __FnhostComponent {
            fn handle(
                function: ::std::string::String,
                blob: ::fnhost_sdk::bindings::fnhost::function::trigger_types::BlobItem,
            ) -> ::std::result::Result<(), ::std::string::String> {
                ::fnhost_sdk::__private::dispatch_blob(__FNHOST_FUNCTIONS, &function, blob)
            }
        }

        impl ::fnhost_sdk::bindings::exports::fnhost::function::timer::Guest for __FnhostComponent {
            fn handle(
                function: ::std::string::String,
                timer: ::fnhost_sdk::bindings::fnhost::function::trigger_types::TimerInfo,
            ) -> ::std::result::Result<(), ::std::string::String> {
                ::fnhost_sdk::__private::dispatch_timer(__FNHOST_FUNCTIONS, &function, timer)
            }
        }

        impl ::fnhost_sdk::bindings::exports::fnhost::function::entity::Guest for __FnhostComponent {
            fn run(
                function: ::std::string::String,
                batch: ::fnhost_sdk::bindings::fnhost::function::durable_types::EntityBatch,
            ) -> ::fnhost_sdk::bindings::fnhost::function::durable_types::EntityBatchResult {
                ::fnhost_sdk::__private::dispatch_entity(__FNHOST_FUNCTIONS, &function, batch)
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
    name_or(attr, &func.sig.ident)
}

/// `name = "..."` from the attribute, else `ident`'s name.
fn name_or(attr: TokenStream, ident: &Ident) -> syn::Result<LitStr> {
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
    Ok(name.unwrap_or_else(|| LitStr::new(&ident.to_string(), ident.span())))
}

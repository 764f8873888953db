//! HTTP: the requests and responses of `httpTrigger` functions, and a small
//! blocking client for outbound requests ([`get`], [`post`], [`send`]).
//!
//! Outbound requests go through `wasi:http` and only to the origins listed in
//! the folder's function.toml, in Spin's syntax (`scheme://host[:port]`, `*`
//! for any port, `*.example.com` for subdomains):
//!
//! ```toml
//! allowedOutboundHosts = ["https://api.example.com", "http://127.0.0.1:*"]
//! ```
//!
//! Any function may call out except an orchestrator, whose replay must be
//! deterministic (it gets [`Error::Denied`]; call an activity instead). A
//! request to another origin fails with [`Error::Denied`] and the host console
//! names the function and the URL. Requests end at the invocation's
//! `functionTimeout`; a response body may be at most a quarter of
//! `[wasm] maxMemoryMB` (64 MiB by default).
//!
//! ```no_run
//! use fnhost_sdk::{http_trigger, HttpRequest, HttpResponse};
//! use fnhost_sdk::http::{self, Request};
//!
//! #[http_trigger]
//! fn weather(_req: HttpRequest) -> Result<HttpResponse, http::Error> {
//!     let forecast = http::get("https://api.example.com/forecast?city=Oslo")?;
//!     let posted = http::send(
//!         Request::post("https://api.example.com/reports")
//!             .header("authorization", "Bearer ...")
//!             .text(forecast.text()),
//!     )?;
//!     Ok(HttpResponse::new(posted.status).text(forecast.text()))
//! }
//! # fn main() {}
//! ```

mod outbound;

pub use outbound::{Error, Request, Response, get, post, send};

use serde::{Serialize, de::DeserializeOwned};

use crate::bindings::fnhost::function::types as wit;

/// An HTTP request routed to an `httpTrigger` function.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// Upper-case method: `GET`, `POST`, ...
    pub method: String,
    /// The full URL the client addressed.
    pub url: String,
    /// The path, e.g. `/api/hello`.
    pub path: String,
    /// Query parameters, form-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Route parameters from the route template, e.g. `id` of `products/{id:int}`.
    pub params: Vec<(String, String)>,
    /// Headers with lower-case names, in order.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl HttpRequest {
    /// The first query parameter called `name`.
    pub fn query(&self, name: &str) -> Option<&str> {
        first(&self.query, name)
    }

    /// The route parameter called `name`; `None` for an optional one that was left out.
    pub fn param(&self, name: &str) -> Option<&str> {
        first(&self.params, name)
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first(&self.headers, &name.to_ascii_lowercase())
    }

    /// The body as UTF-8 text (invalid sequences replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

impl From<wit::HttpRequest> for HttpRequest {
    fn from(r: wit::HttpRequest) -> Self {
        HttpRequest {
            method: r.method,
            url: r.url,
            path: r.path,
            query: r.query,
            params: r.params,
            headers: r.headers,
            body: r.body,
        }
    }
}

/// An HTTP response, built fluently: `HttpResponse::ok().json(&value)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// 200 OK.
    pub fn ok() -> Self {
        Self::new(200)
    }

    /// 201 Created.
    pub fn created() -> Self {
        Self::new(201)
    }

    /// 400 Bad Request with a plain-text reason.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(400).text(reason)
    }

    /// 404 Not Found.
    pub fn not_found() -> Self {
        Self::new(404)
    }

    /// Add a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A plain-text body (`text/plain; charset=utf-8`).
    pub fn text(self, body: impl Into<String>) -> Self {
        self.body("text/plain; charset=utf-8", body.into().into_bytes())
    }

    /// A JSON body (`application/json`). A value that cannot be serialized gives a 500.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.body("application/json; charset=utf-8", bytes),
            Err(e) => Self::new(500).text(format!("response is not serializable as JSON: {e}")),
        }
    }

    /// A body with its content type.
    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        self.headers
            .push(("content-type".to_string(), content_type.to_string()));
        self.body = body;
        self
    }
}

impl From<HttpResponse> for wit::HttpResponse {
    fn from(r: HttpResponse) -> Self {
        wit::HttpResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl From<wit::HttpResponse> for HttpResponse {
    fn from(r: wit::HttpResponse) -> Self {
        HttpResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

/// What an `#[http_trigger]` function may return.
///
/// `HttpResponse`, text (`String`, `&str`: 200 text/plain), `serde_json::Value` (200 JSON),
/// and `Result<T, E>` of those, where an `Err` becomes a 500 with the error's text.
pub trait IntoHttpResponse {
    fn into_http_response(self) -> HttpResponse;
}

impl IntoHttpResponse for HttpResponse {
    fn into_http_response(self) -> HttpResponse {
        self
    }
}

impl IntoHttpResponse for String {
    fn into_http_response(self) -> HttpResponse {
        HttpResponse::ok().text(self)
    }
}

impl IntoHttpResponse for &str {
    fn into_http_response(self) -> HttpResponse {
        HttpResponse::ok().text(self)
    }
}

impl IntoHttpResponse for serde_json::Value {
    fn into_http_response(self) -> HttpResponse {
        HttpResponse::ok().json(&self)
    }
}

impl<T: IntoHttpResponse, E: std::fmt::Display> IntoHttpResponse for Result<T, E> {
    fn into_http_response(self) -> HttpResponse {
        match self {
            Ok(v) => v.into_http_response(),
            Err(e) => HttpResponse::new(500).text(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_sets_content_type_once() {
        let r = HttpResponse::ok()
            .text("x")
            .json(&serde_json::json!({"a": 1}));
        let types: Vec<_> = r
            .headers
            .iter()
            .filter(|(k, _)| k == "content-type")
            .collect();
        assert_eq!(types.len(), 1);
        assert_eq!(types[0].1, "application/json; charset=utf-8");
        assert_eq!(r.body, br#"{"a":1}"#);
    }

    #[test]
    fn errors_become_500_with_their_text() {
        let r: Result<String, String> = Err("boom".into());
        let r = r.into_http_response();
        assert_eq!(r.status, 500);
        assert_eq!(r.body, b"boom");
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let req = HttpRequest {
            method: "GET".into(),
            url: String::new(),
            path: String::new(),
            query: vec![],
            params: vec![],
            headers: vec![("x-a".into(), "1".into())],
            body: vec![],
        };
        assert_eq!(req.header("X-A"), Some("1"));
    }
}

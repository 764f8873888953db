//! A small blocking HTTP client over `wasi:http/outgoing-handler`.

use std::fmt;
use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

/// An outbound request, built fluently: `Request::post(url).json(&value)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Upper-case method: `GET`, `POST`, ...
    pub method: String,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Gives up connecting, and waiting for the response's first byte, after
    /// this; the host also stops every request at the invocation's functionTimeout.
    pub timeout: Option<Duration>,
}

impl Request {
    /// A request with `method` (any case) to `url`, no headers, no body.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// A GET request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A POST request (add its body with [`Request::body`], [`Request::text`] or [`Request::json`]).
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// Add a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Raw body bytes.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A plain-text body (`text/plain; charset=utf-8`).
    pub fn text(self, body: impl Into<String>) -> Self {
        self.content_type("text/plain; charset=utf-8")
            .body(body.into())
    }

    /// A JSON body (`application/json`).
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, serde_json::Error> {
        let bytes = serde_json::to_vec(value)?;
        Ok(self.content_type("application/json").body(bytes))
    }

    /// Set the `timeout` field: connecting and the first byte of the answer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn content_type(mut self, value: &str) -> Self {
        self.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        self.headers.push(("content-type".into(), value.into()));
        self
    }
}

/// The answer to a [`Request`]: any status counts as an answer, 404 and 500 too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Headers with lower-case names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
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

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The URL is not an absolute `http://` or `https://` URL, or a header is malformed.
    Invalid { url: String, reason: String },
    /// The host refused to send it: its origin is not in the folder's
    /// `allowedOutboundHosts`, or the caller is an orchestrator.
    Denied { url: String },
    /// It failed on the way (connection refused, TLS, timeout, response body
    /// over the host's limit, ...), with wasi:http's error code.
    Failed { url: String, code: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid { url, reason } => write!(f, "cannot send a request to {url}: {reason}"),
            Error::Denied { url } => write!(
                f,
                "the host refused the request to {url} (HttpRequestDenied): add its origin, e.g. \
                 \"https://api.example.com\", to allowedOutboundHosts in this folder's \
                 function.toml; orchestrators may make no requests at all (call an activity)"
            ),
            Error::Failed { url, code } => write!(f, "the request to {url} failed: {code}"),
        }
    }
}

impl std::error::Error for Error {}

/// GET `url`.
pub fn get(url: &str) -> Result<Response, Error> {
    send(Request::get(url))
}

/// POST `body` to `url` (no content type: add one with [`Request::header`] and [`send`]).
pub fn post(url: &str, body: impl Into<Vec<u8>>) -> Result<Response, Error> {
    send(Request::post(url).body(body))
}

/// Send `request` and wait for the whole response.
pub fn send(request: Request) -> Result<Response, Error> {
    let url = request.url.clone();
    let invalid = |reason: String| Error::Invalid {
        url: url.clone(),
        reason,
    };
    let failed = |code: ErrorCode| match code {
        ErrorCode::HttpRequestDenied => Error::Denied { url: url.clone() },
        code => Error::Failed {
            url: url.clone(),
            code: describe(&code),
        },
    };
    let target = Target::parse(&request.url).map_err(invalid)?;

    let mut fields: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone().into_bytes()))
        .collect();
    // The whole body is known: send its length rather than chunks, which
    // some servers refuse.
    if !request.body.is_empty() && !fields.iter().any(|(k, _)| k == "content-length") {
        fields.push((
            "content-length".into(),
            request.body.len().to_string().into_bytes(),
        ));
    }
    let headers = Fields::from_list(&fields).map_err(|e| invalid(format!("bad header: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        "PATCH" => Method::Patch,
        "TRACE" => Method::Trace,
        other => Method::Other(other.to_string()),
    };
    let bad = |what: &str| invalid(format!("the host does not accept its {what}"));
    outgoing.set_method(&method).map_err(|_| bad("method"))?;
    outgoing
        .set_scheme(Some(&target.scheme))
        .map_err(|_| bad("scheme"))?;
    outgoing
        .set_authority(Some(&target.authority))
        .map_err(|_| bad("host"))?;
    outgoing
        .set_path_with_query(Some(&target.path_and_query))
        .map_err(|_| bad("path"))?;
    let body = outgoing.body().expect("the body of a new request");
    let options = request.timeout.map(|t| {
        let options = RequestOptions::new();
        let ns = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
        // Errors only when the host does not support a timeout; it then has its own.
        let _ = options.set_connect_timeout(Some(ns));
        let _ = options.set_first_byte_timeout(Some(ns));
        options
    });

    // Handled first, written after: the host reads the body as it goes out.
    let future = outgoing_handler::handle(outgoing, options).map_err(failed)?;
    // A failed write (a refused request's body has nowhere to go) is reported
    // through the response below, which says why.
    let _ = write_body(body, &request.body);

    let incoming = loop {
        match future.get() {
            Some(Ok(result)) => break result.map_err(failed)?,
            Some(Err(())) => unreachable!("a response is taken once"),
            None => future.subscribe().block(),
        }
    };
    let status = incoming.status();
    let headers = incoming
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let body = incoming.consume().expect("the body of a new response");
    let bytes = read_body(&body).map_err(failed)?;
    drop(IncomingBody::finish(body));
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}

fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), StreamError> {
    {
        let stream = body.write().expect("the stream of a new body");
        // blocking-write-and-flush takes at most 4096 bytes a call.
        for chunk in bytes.chunks(4096) {
            stream.blocking_write_and_flush(chunk)?;
        }
    }
    OutgoingBody::finish(body, None).map_err(|_| StreamError::Closed)
}

fn read_body(body: &IncomingBody) -> Result<Vec<u8>, ErrorCode> {
    let stream = body.stream().expect("the stream of a new body");
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(wasip2::http::types::http_error_code(&e)
                    .unwrap_or_else(|| ErrorCode::InternalError(Some(e.to_debug_string()))));
            }
        }
    }
}

/// A wasi:http error code as a user reads it.
fn describe(code: &ErrorCode) -> String {
    const OVER: &str =
        "the response body is over the host's limit (a quarter of [wasm] maxMemoryMB)";
    match code {
        ErrorCode::HttpResponseBodySize(Some(n)) => {
            format!("HttpResponseBodySize: {OVER}: it has {n} bytes")
        }
        // A body error arrives as the host's own error type, shown in its debug form.
        ErrorCode::InternalError(Some(s)) if s.contains("HttpResponseBodySize") => {
            format!("HttpResponseBodySize: {OVER}")
        }
        ErrorCode::ConnectionTimeout | ErrorCode::HttpResponseTimeout => format!(
            "{code:?}: no answer in time (the request's timeout or the function's functionTimeout)"
        ),
        ErrorCode::InternalError(Some(s)) if s.contains("HttpResponseTimeout") => {
            "HttpResponseTimeout: the body did not arrive within the function's functionTimeout"
                .into()
        }
        ErrorCode::ConnectionRefused => "ConnectionRefused: nothing listens there".into(),
        other => format!("{other:?}"),
    }
}

/// The parts of an absolute URL that wasi:http takes.
#[derive(Debug)]
struct Target {
    scheme: Scheme,
    authority: String,
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("it is not an absolute URL (write http://host/path or https://host/path)")?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(format!("scheme '{other}' is not http or https")),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() || authority.contains('@') {
            return Err("it has no host (or a user name, which is not supported)".into());
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("it contains spaces or control characters: percent-encode them".into());
        }
        let path_and_query = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Target {
            scheme,
            authority: authority.to_string(),
            path_and_query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let t = Target::parse("https://api.example.com:8443/v1/items?x=1#top").unwrap();
        assert!(matches!(t.scheme, Scheme::Https));
        assert_eq!(t.authority, "api.example.com:8443");
        assert_eq!(t.path_and_query, "/v1/items?x=1");
        let t = Target::parse("HTTP://127.0.0.1:7071").unwrap();
        assert!(matches!(t.scheme, Scheme::Http));
        assert_eq!(t.path_and_query, "/");
        assert_eq!(
            Target::parse("http://h?q=1").unwrap().path_and_query,
            "/?q=1"
        );
    }

    #[test]
    fn bad_urls_say_why() {
        assert!(
            Target::parse("api.example.com/x")
                .unwrap_err()
                .contains("absolute URL")
        );
        assert!(Target::parse("ftp://h/x").unwrap_err().contains("'ftp'"));
        assert!(Target::parse("http:///x").unwrap_err().contains("no host"));
        assert!(
            Target::parse("http://h/a b")
                .unwrap_err()
                .contains("spaces")
        );
    }

    #[test]
    fn denied_explains_allowed_outbound_hosts() {
        let e = Error::Denied {
            url: "https://evil.example.net/x".into(),
        };
        let text = e.to_string();
        assert!(text.contains("https://evil.example.net/x"), "{text}");
        assert!(text.contains("allowedOutboundHosts"), "{text}");
    }

    #[test]
    fn requests_build_fluently() {
        let r = Request::post("http://h/")
            .text("a")
            .json(&serde_json::json!({"a": 1}))
            .unwrap()
            .header("x-a", "1");
        assert_eq!(r.method, "POST");
        assert_eq!(r.body, br#"{"a":1}"#);
        let types: Vec<_> = r
            .headers
            .iter()
            .filter(|(k, _)| k == "content-type")
            .collect();
        assert_eq!(
            types,
            [&("content-type".to_string(), "application/json".to_string())]
        );
        let resp = Response {
            status: 201,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"hi".to_vec(),
        };
        assert!(resp.is_success());
        assert_eq!(resp.header("Content-Type"), Some("text/plain"));
        assert_eq!(resp.text(), "hi");
    }
}

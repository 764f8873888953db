//! The HTTP trigger: a hyper server that routes `/{routePrefix}/{route}` to
//! httpTrigger functions, plus the host's admin endpoints.

mod admin;
mod auth;
mod cors;
mod durable_api;
mod keys_api;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;

use crate::catalog::Catalog;
use crate::catalog::routes::RouteMatch;
use crate::config::{AuthLevel, ServerSection, Trigger};
use crate::keys::{DURABLE_SYSTEM_KEY, Keys, Need};
use crate::runtime::{self, InvokeError, Runtime};

pub use cors::Cors;

/// Reason Core Tools gives for HTTP-triggered invocations.
const HTTP_REASON: &str = "This function was programmatically called via the host APIs.";

/// Settings of the HTTP trigger.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// host.toml `extensions.http.routePrefix`, without slashes.
    pub route_prefix: String,
    /// Largest request body accepted (app setting `FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`).
    pub max_body_bytes: u64,
    pub cors: Option<Cors>,
    /// host.toml `extensions.http.customHeaders`.
    pub custom_headers: Vec<(HeaderName, HeaderValue)>,
    /// The app's keys (None when the store could not be opened).
    pub keys: Option<Arc<Keys>>,
    /// Whether keys are checked (beyond loopback always; on loopback when asked).
    pub enforced: bool,
    /// host.toml `[server]`: connection, header and body limits.
    pub limits: ServerSection,
    /// The durable local RPC endpoint: only `/durabletask/...` (the
    /// management API), no keys; served on loopback only.
    pub rpc_only: bool,
}

/// Kestrel's limit on the request line (8 KB): longer answers 414.
const MAX_REQUEST_TARGET: usize = 8 * 1024;
/// Kestrel's grace before the minimum body data rate applies.
const BODY_RATE_GRACE: Duration = Duration::from_secs(5);

/// The HTTP trigger's shared state.
pub struct HttpTrigger {
    catalog: Arc<Catalog>,
    runtime: Arc<Runtime>,
    durable: Option<Arc<crate::durable::Engine>>,
    settings: HttpSettings,
    started: Instant,
    host_id: String,
}

type Body = Full<Bytes>;

impl HttpTrigger {
    pub fn new(
        catalog: Arc<Catalog>,
        runtime: Arc<Runtime>,
        durable: Option<Arc<crate::durable::Engine>>,
        settings: HttpSettings,
    ) -> Arc<HttpTrigger> {
        Arc::new(HttpTrigger {
            catalog,
            runtime,
            durable,
            settings,
            started: Instant::now(),
            host_id: uuid::Uuid::new_v4().simple().to_string(),
        })
    }

    /// The same trigger with other settings (the local RPC endpoint's).
    pub fn with_settings(&self, change: impl FnOnce(&mut HttpSettings)) -> Arc<HttpTrigger> {
        let mut settings = self.settings.clone();
        change(&mut settings);
        HttpTrigger::new(
            self.catalog.clone(),
            self.runtime.clone(),
            self.durable.clone(),
            settings,
        )
    }

    /// Serve connections from `listener` until `shutdown` resolves; then stop
    /// accepting and give in-flight requests up to `drain` to finish.
    /// Returns whether every request finished in time.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        drain: Duration,
    ) -> bool {
        let graceful = GracefulShutdown::new();
        let limits = self.settings.limits.clone();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            // Slow-loris guard: a request's line and headers must arrive
            // within headerTimeout (30 s), which also ends idle keep-alives;
            // they must fit in maxHeaderBytes (32 KiB, else 431). hyper's
            // default of 100 headers at most stays (setting it moves them to the heap).
            .header_read_timeout(limits.header_timeout)
            .max_header_size(limits.max_header_bytes);
        // A connection holds a permit; beyond maxConnections new ones wait in
        // the listen backlog until one closes.
        let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
        let mut full_since: Option<Instant> = None;
        tokio::pin!(shutdown);
        loop {
            let permit = match permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    if full_since.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        tracing::warn!(
                            "{} connections are open (host.toml [server] maxConnections): new ones wait",
                            limits.max_connections
                        );
                        full_since = Some(Instant::now());
                    }
                    tokio::select! {
                        p = permits.clone().acquire_owned() => p.expect("never closed"),
                        () = &mut shutdown => break,
                    }
                }
            };
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off briefly.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let this = self.clone();
                    let service = service_fn(move |req| {
                        let this = this.clone();
                        async move { Ok::<_, Infallible>(this.handle(req, peer).await) }
                    });
                    let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!("connection from {peer}: {e}");
                        }
                        drop(permit);
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_ok()
    }

    async fn handle(&self, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        let origin = req.headers().get(header::ORIGIN).cloned();
        if let (Some(cors), Some(origin)) = (&self.settings.cors, &origin)
            && let Some(preflight) = cors.preflight(req.method(), origin, req.headers())
        {
            return preflight;
        }
        let mut response = self.route(req).await;
        let headers = response.headers_mut();
        for (name, value) in &self.settings.custom_headers {
            headers.insert(name.clone(), value.clone());
        }
        if let (Some(cors), Some(origin)) = (&self.settings.cors, &origin) {
            cors.decorate(origin, headers);
        }
        response
    }

    async fn route(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        if req.uri().path_and_query().map_or(0, |p| p.as_str().len()) > MAX_REQUEST_TARGET {
            return error(
                StatusCode::URI_TOO_LONG,
                format!("the request target is over {MAX_REQUEST_TARGET} bytes"),
            );
        }
        if admin::handles(&path) {
            if !admin::is_page(&path)
                && let Err(denied) = self.authorize(Need::Admin, &req).await
            {
                return denied;
            }
            return self.dashboard(&req.into_parts().0).await;
        }
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        if self.settings.rpc_only {
            // `/durabletask/...`, and the webhook paths its answers' URLs use.
            let webhook = segments.len() >= 3
                && segments[..2]
                    .iter()
                    .zip(["runtime", "webhooks"])
                    .all(|(a, b)| a.eq_ignore_ascii_case(b));
            let skip = if webhook { 2 } else { 0 };
            return match segments.get(skip) {
                Some(s) if s.eq_ignore_ascii_case("durabletask") => {
                    self.management(req, &segments[skip + 1..]).await
                }
                _ => error(
                    StatusCode::NOT_FOUND,
                    format!("the local RPC endpoint serves /durabletask/ only, not {path}"),
                ),
            };
        }
        // `/admin/...` is the host's (as in Azure, no function route can take it).
        if segments
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case("admin"))
        {
            if let Err(denied) = self.authorize(Need::Admin, &req).await {
                return denied;
            }
            return self.admin(req, &segments[1..]).await;
        }
        let webhooks = ["runtime", "webhooks", "durabletask"];
        if segments.len() >= 3
            && segments
                .iter()
                .zip(webhooks)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
        {
            if let Err(denied) = self.authorize(Need::System(DURABLE_SYSTEM_KEY), &req).await {
                return denied;
            }
            return self.management(req, &segments[3..]).await;
        }
        let prefix: Vec<&str> = self
            .settings
            .route_prefix
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let under_prefix = segments.len() >= prefix.len()
            && prefix
                .iter()
                .zip(&segments)
                .all(|(p, s)| p.eq_ignore_ascii_case(s));
        if !under_prefix {
            return error(StatusCode::NOT_FOUND, format!("no function at {path}"));
        }
        let table = self.catalog.table();
        let (function, params) = match table
            .router
            .find(req.method().as_str(), &segments[prefix.len()..])
        {
            RouteMatch::Found { function, params } => (function, params),
            RouteMatch::NotFound => {
                return error(StatusCode::NOT_FOUND, format!("no function at {path}"));
            }
            RouteMatch::MethodNotAllowed(allowed) => {
                let mut r = error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!(
                        "{} is not allowed at {path}; allowed: {}",
                        req.method(),
                        allowed.join(", ")
                    ),
                );
                if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                    r.headers_mut().insert(header::ALLOW, v);
                }
                return r;
            }
        };
        drop(table);
        let need = match &function.trigger {
            Trigger::Http {
                auth_level: AuthLevel::Function,
                ..
            } => Some(Need::Function(&function.name)),
            Trigger::Http {
                auth_level: AuthLevel::Admin,
                ..
            } => Some(Need::Admin),
            _ => None,
        };
        if let Some(need) = need
            && let Err(denied) = self.authorize(need, &req).await
        {
            return denied;
        }

        let request = match self.to_wit(req, params).await {
            Ok(r) => r,
            Err(response) => return response,
        };
        let invocation = super::invocation(&function.name);
        super::log_executing(&invocation, HTTP_REASON);
        let started = Instant::now();
        let result = self
            .runtime
            .invoke_http(&function.component, &invocation, request)
            .await;
        let response = result.and_then(|r| from_wit(r).map_err(InvokeError::Trap));
        match response {
            Ok(response) => {
                super::log_executed(&invocation, None, started.elapsed());
                response
            }
            Err(e) => {
                super::log_executed(&invocation, Some(&e), started.elapsed());
                json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({
                        "error": crate::keys::redact::redact(&format!("function '{}' failed: {}", invocation.function, e.summary())),
                        "function": &*invocation.function,
                        "invocationId": &*invocation.id,
                    }),
                )
            }
        }
    }

    /// `/runtime/webhooks/durabletask/...`: the Durable Functions management API.
    async fn management(&self, req: Request<Incoming>, segments: &[String]) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = match self.read_body(&parts.headers, body).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let query = parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let request = durable_api::ApiRequest {
            method: &parts.method,
            segments,
            query,
            headers: &parts.headers,
            body: &body,
            base: format!("http://{host}"),
        };
        durable_api::handle(self.durable.as_ref(), request).await
    }

    /// Read a body up to the configured limit; 413 beyond it.
    async fn read_body(
        &self,
        headers: &http::HeaderMap,
        body: Incoming,
    ) -> Result<Bytes, Response<Body>> {
        let limit = self.settings.max_body_bytes;
        let too_large = || {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is over the limit of {limit} bytes (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT)"
                ),
            )
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        // Slow senders: after a 5 s grace the body must keep an average of
        // minRequestBodyDataRate (240 bytes/s): one byte a second is cut at ~5 s.
        let rate = self.settings.limits.min_request_body_data_rate as f64;
        let started = tokio::time::Instant::now();
        let mut body = Limited::new(body, limit as usize);
        let mut data = bytes::BytesMut::new();
        loop {
            let allowed = BODY_RATE_GRACE + Duration::from_secs_f64(data.len() as f64 / rate);
            match tokio::time::timeout_at(started + allowed, body.frame()).await {
                Err(_) => {
                    return Err(error(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the request body arrived slower than {rate} bytes/s \
                             (host.toml [server] minRequestBodyDataRate)"
                        ),
                    ));
                }
                Ok(None) => return Ok(data.freeze()),
                Ok(Some(Ok(frame))) => {
                    if let Ok(chunk) = frame.into_data() {
                        data.extend_from_slice(&chunk);
                    }
                }
                Ok(Some(Err(e))) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(too_large());
                }
                Ok(Some(Err(e))) => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the request body: {e}"),
                    ));
                }
            }
        }
    }

    /// The request as the guest sees it; an error response for a body over the limit.
    async fn to_wit(
        &self,
        req: Request<Incoming>,
        params: Vec<(String, String)>,
    ) -> Result<runtime::HttpRequest, Response<Body>> {
        let (parts, body) = req.into_parts();
        let body = self.read_body(&parts.headers, body).await?;
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let query = parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok(runtime::HttpRequest {
            method: parts.method.as_str().to_string(),
            url: format!("http://{host}{path_and_query}"),
            path: parts.uri.path().to_string(),
            query,
            params,
            headers,
            body: body.to_vec(),
        })
    }

    /// `GET /admin/host/status`: the host's health, as Azure Functions answers it.
    fn host_status(&self, method: &Method) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return error(StatusCode::METHOD_NOT_ALLOWED, "use GET".into());
        }
        json_response(
            StatusCode::OK,
            &json!({
                "id": self.host_id,
                "state": "Running",
                "version": env!("CARGO_PKG_VERSION"),
                "processUptime": self.started.elapsed().as_millis() as u64,
                "functions": self.catalog.table().functions.len(),
            }),
        )
    }
}

impl HttpTrigger {
    /// `GET /admin/metrics`: Prometheus text. Storage transactions are what
    /// Azure bills; they are counted at the one place every call goes through.
    fn metrics(&self) -> Response<Body> {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering;
        let mut out = String::new();
        let [ok, failed] = &super::INVOCATIONS;
        let _ = writeln!(
            out,
            "# HELP fnhost_invocations_total Function invocations finished, by result."
        );
        let _ = writeln!(out, "# TYPE fnhost_invocations_total counter");
        let _ = writeln!(
            out,
            "fnhost_invocations_total{{result=\"succeeded\"}} {}",
            ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "fnhost_invocations_total{{result=\"failed\"}} {}",
            failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP fnhost_functions Functions loaded.");
        let _ = writeln!(out, "# TYPE fnhost_functions gauge");
        let _ = writeln!(
            out,
            "fnhost_functions {}",
            self.catalog.table().functions.len()
        );
        if let Some(connections) = crate::bindings::CONNECTIONS.get() {
            let calls = connections.calls();
            let _ = writeln!(
                out,
                "# HELP fnhost_trigger_storage_transactions_total Storage calls of the queue, \
                 blob and timer triggers and the output bindings, by service."
            );
            let _ = writeln!(
                out,
                "# TYPE fnhost_trigger_storage_transactions_total counter"
            );
            for (service, n) in [
                ("queue", calls.queue),
                ("table", calls.table),
                ("blob", calls.blob),
            ] {
                let _ = writeln!(
                    out,
                    "fnhost_trigger_storage_transactions_total{{service=\"{service}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP fnhost_blob_trigger_scans_total Container listings of the blob \
                 triggers (a scan is one call per 5,000 blobs)."
            );
            let _ = writeln!(out, "# TYPE fnhost_blob_trigger_scans_total counter");
            let _ = writeln!(
                out,
                "fnhost_blob_trigger_scans_total {}",
                crate::triggers::blob::SCANS.load(Ordering::Relaxed)
            );
        }
        if let Some(engine) = &self.durable {
            let calls = engine.storage_calls();
            let _ = writeln!(
                out,
                "# HELP fnhost_storage_transactions_total Storage calls made by this host, by service."
            );
            let _ = writeln!(out, "# TYPE fnhost_storage_transactions_total counter");
            for (service, n) in [
                ("queue", calls.queue),
                ("table", calls.table),
                ("blob", calls.blob),
            ] {
                let _ = writeln!(
                    out,
                    "fnhost_storage_transactions_total{{service=\"{service}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP fnhost_partitions_owned Control-queue partitions this host holds."
            );
            let _ = writeln!(out, "# TYPE fnhost_partitions_owned gauge");
            let _ = writeln!(
                out,
                "fnhost_partitions_owned {}",
                engine.owned_partitions().len()
            );
            out.push_str(&engine.stats.prometheus());
        }
        let mut r = Response::new(Full::new(Bytes::from(out)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        r
    }
}

/// The guest's response as an HTTP response; an invalid status or header is an error.
fn from_wit(r: runtime::HttpResponse) -> Result<Response<Body>, String> {
    let status = StatusCode::from_u16(r.status)
        .map_err(|_| format!("the function returned an invalid status {}", r.status))?;
    let mut response = Response::new(Full::new(Bytes::from(r.body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in r.headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("the function returned an invalid header name '{name}'"))?;
        let v = HeaderValue::from_str(&value)
            .map_err(|_| format!("the function returned an invalid value for header '{name}'"))?;
        headers.append(n, v);
    }
    Ok(response)
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// Errors are JSON too: `{"error": "..."}`, with any key or connection
/// string in the message hidden.
fn error(status: StatusCode, message: String) -> Response<Body> {
    let message = crate::keys::redact::redact(&message).into_owned();
    json_response(status, &json!({ "error": message }))
}

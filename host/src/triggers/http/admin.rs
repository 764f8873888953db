//! The dashboard (`/dashboard`, its assets embedded in the binary) and the
//! read-only admin endpoints it needs beyond the management API:
//! `/admin/functions` (every loaded function with its trigger and invocation
//! counts) and `/admin/durable/instances/{id}/history` (the full history with
//! millisecond times, for the timeline).
//!
//! The page and its assets hold no data and load without a key (so that the
//! page can ask for one); every data call, here and in the management API,
//! needs the master key where keys are enforced (checked by the router with
//! the rest of `/admin`).

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use super::{Body, HttpTrigger, error, json_response};
use crate::config::Trigger;

/// The dashboard's files, compiled into the binary: no build step, no CDN.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("dashboard/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("dashboard/app.css"),
    ),
];

/// Whether `path` is the page or one of its assets (served without a key).
pub(super) fn is_page(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower == "/dashboard" || lower.starts_with("/dashboard/")
}

/// Whether `path` is served here.
pub(super) fn handles(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower == "/dashboard"
        || lower.starts_with("/dashboard/")
        || lower == "/admin/functions"
        || lower.starts_with("/admin/durable/")
}

impl HttpTrigger {
    pub(super) async fn dashboard(&self, parts: &Parts) -> Response<Body> {
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return error(StatusCode::METHOD_NOT_ALLOWED, "use GET".into());
        }
        let path = parts.uri.path();
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        // The page and its script hold no data: they load without a key, so
        // that the page can ask for one. Every call that returns data checks it.
        match segs.as_slice() {
            [d] if d.eq_ignore_ascii_case("dashboard") => return asset("index.html"),
            [d, file] if d.eq_ignore_ascii_case("dashboard") => return asset(file),
            _ => {}
        }
        match segs.as_slice() {
            [_, f] if f.eq_ignore_ascii_case("functions") => self.functions(),
            [_, _, i, id, h] if i == &"instances" && h == &"history" => self.history(id).await,
            _ => error(StatusCode::NOT_FOUND, format!("nothing at {path}")),
        }
    }

    /// `GET /admin/functions`: `{taskHub, functions: [{name, folder, trigger, route,
    /// methods, authLevel, invocations: {succeeded, failed}}]}`.
    fn functions(&self) -> Response<Body> {
        let table = self.catalog.table();
        let prefix = &self.settings.route_prefix;
        let functions: Vec<Value> = table
            .functions
            .iter()
            .map(|f| {
                let (succeeded, failed) = crate::triggers::invocation_counts(&f.name);
                let mut v = json!({
                    "name": f.name,
                    "folder": f.folder,
                    "trigger": f.trigger.type_name(),
                    "invocations": {"succeeded": succeeded, "failed": failed},
                });
                match &f.trigger {
                    Trigger::Http {
                        methods,
                        route,
                        auth_level,
                    } => {
                        let path = [prefix.as_str(), route.as_str()]
                            .iter()
                            .filter(|s| !s.is_empty())
                            .copied()
                            .collect::<Vec<_>>()
                            .join("/");
                        v["route"] = json!(format!("/{path}"));
                        v["methods"] = json!(methods);
                        v["authLevel"] = json!(format!("{auth_level:?}").to_ascii_lowercase());
                    }
                    Trigger::Queue { queue_name, .. } => v["queueName"] = json!(queue_name),
                    Trigger::Blob { path, .. } => v["path"] = json!(path),
                    Trigger::Timer { schedule, .. } => v["schedule"] = json!(schedule),
                    Trigger::Orchestration | Trigger::Activity | Trigger::Entity => {}
                }
                v
            })
            .collect();
        json_response(
            StatusCode::OK,
            &json!({
                "taskHub": self.durable.as_ref().map(|e| e.hub.name.clone()),
                "functions": functions,
            }),
        )
    }

    /// `GET /admin/durable/instances/{id}/history`: every event of the current
    /// execution with millisecond times; 404 for an instance without history.
    async fn history(&self, id: &str) -> Response<Body> {
        let Some(engine) = &self.durable else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "durable functions are not available: set AzureWebJobsStorage in [Values] of local.settings.toml".into(),
            );
        };
        match crate::durable::inspect::history_document(&engine.hub, id).await {
            Ok(Some(doc)) => json_response(StatusCode::OK, &doc),
            Ok(None) => error(
                StatusCode::NOT_FOUND,
                format!(
                    "instance '{id}' has no history in task hub '{}'",
                    engine.hub.name
                ),
            ),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}

/// One embedded file; 404 for any other name.
fn asset(name: &str) -> Response<Body> {
    let Some((_, content_type, text)) = ASSETS.iter().find(|(n, ..)| *n == name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("the dashboard has no file '{name}'"),
        );
    };
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The page loads nothing from elsewhere and runs no inline script.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

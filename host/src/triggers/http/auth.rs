//! Who may call what: `authLevel` of functions, the master key for
//! `/admin/*`, the `durabletask_extension` system key (or the master key) for
//! the durable webhooks. Keys come as `x-functions-key` or `?code=`; a
//! missing or wrong one is a 401 with a JSON error, before anything runs.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{Body, HttpTrigger, error, keys_api};
use crate::keys::Need;

/// The key a request presents: the `x-functions-key` header, else `?code=`.
pub fn presented<B>(req: &Request<B>) -> Option<String> {
    if let Some(v) = req.headers().get("x-functions-key")
        && let Ok(v) = v.to_str()
    {
        return Some(v.to_string());
    }
    let query = req.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("code"))
        .map(|(_, v)| v.into_owned())
}

impl HttpTrigger {
    /// Ok when keys are not enforced or the request's key satisfies `need`;
    /// else the 401 (or 503 when the key store cannot be read) to answer.
    pub(super) async fn authorize(
        &self,
        need: Need<'_>,
        req: &Request<Incoming>,
    ) -> Result<(), Response<Body>> {
        if !self.settings.enforced {
            return Ok(());
        }
        let what = match need {
            Need::Function(f) => format!(
                "function '{f}' (authLevel = function) needs a key of the function or a host key"
            ),
            Need::Admin => "this needs the master key".to_string(),
            Need::System(_) => {
                "the durable management API needs the durabletask_extension system key or the master key"
                    .to_string()
            }
        };
        let Some(keys) = &self.settings.keys else {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "keys are enforced but the key store is not available".into(),
            ));
        };
        let Some(key) = presented(req).filter(|k| !k.is_empty()) else {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                format!("{what}: pass it as ?code= or in the x-functions-key header"),
            ));
        };
        match keys.allows(need, &key).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(error(
                StatusCode::UNAUTHORIZED,
                format!("{what}; the key given is not one of them"),
            )),
            Err(e) => Err(keys_api::store_error(&e)),
        }
    }

    /// `/admin/...` (already authorized): health, metrics and the keys API.
    pub(super) async fn admin(
        &self,
        req: Request<Incoming>,
        segments: &[String],
    ) -> Response<Body> {
        let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
        let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
        match lower.as_slice() {
            ["host", "status"] => return self.host_status(req.method()),
            ["metrics"] => return self.metrics(),
            _ => {}
        }
        if !keys_api::is_keys_route(segments) {
            return error(
                StatusCode::NOT_FOUND,
                format!("no admin API at {}", req.uri().path()),
            );
        }
        let Some(keys) = &self.settings.keys else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the key store is not available (see the host's start-up lines)".into(),
            );
        };
        let (parts, body) = req.into_parts();
        let body = match self.read_body(&parts.headers, body).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let request = keys_api::KeysRequest {
            method: &parts.method,
            segments,
            body: &body,
            self_url: format!("http://{host}{}", parts.uri.path()),
        };
        keys_api::handle(keys, &self.catalog, request).await
    }
}

//! The keys admin API with Azure's routes and JSON: `/admin/host/keys`
//! (`functionkeys`, `systemkeys`) and `/admin/functions/{name}/keys`, each
//! with `/{keyName}` for GET, POST (new value), PUT (`{"name", "value"}`)
//! and DELETE. The master key is `_master`. Callers need the master key.

use http::{HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Value, json};

use super::{Body, error, json_response};
use crate::catalog::Catalog;
use crate::keys::{Keys, MASTER, Outcome, Scope, StoreError};

/// A keys API request, already authorized.
pub struct KeysRequest<'a> {
    pub method: &'a Method,
    /// Segments after `admin`, decoded: `["host", "keys", "name"]`.
    pub segments: &'a [String],
    pub body: &'a [u8],
    /// The request's URL without its query (Azure's `links[].href`).
    pub self_url: String,
}

/// Whether `segments` (after `admin`) are a keys API route.
pub fn is_keys_route(segments: &[String]) -> bool {
    let s: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    match s.as_slice() {
        [host, kind, ..] if host == "host" => {
            ["keys", "functionkeys", "systemkeys"].contains(&kind.as_str()) && s.len() <= 3
        }
        [functions, _, keys, ..] if functions == "functions" => keys == "keys" && s.len() <= 4,
        _ => false,
    }
}

pub async fn handle(keys: &Keys, catalog: &Catalog, req: KeysRequest<'_>) -> Response<Body> {
    let (scope, name) = match req.segments {
        [_, kind, rest @ ..] if req.segments[0].eq_ignore_ascii_case("host") => (
            if kind.eq_ignore_ascii_case("systemkeys") {
                Scope::SystemKeys
            } else {
                Scope::HostKeys
            },
            rest.first(),
        ),
        [_, function, _, rest @ ..] => {
            let Some(f) = catalog
                .table()
                .functions
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(function))
                .map(|f| f.name.clone())
            else {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no function named '{function}' is loaded"),
                );
            };
            (Scope::Function(f), rest.first())
        }
        _ => return error(StatusCode::NOT_FOUND, "no such keys route".into()),
    };
    let result = match (req.method, name) {
        (&Method::GET, None) => keys.list(&scope).await.map(|list| {
            let keys: Vec<Value> = list
                .into_iter()
                .map(|(name, value)| json!({ "name": name, "value": value }))
                .collect();
            json_response(
                StatusCode::OK,
                &with_links(json!({ "keys": keys }), &req.self_url),
            )
        }),
        (&Method::GET, Some(name)) => keys.get(&scope, name).await.map(|found| match found {
            Some(value) => json_response(
                StatusCode::OK,
                &with_links(json!({ "name": name, "value": value }), &req.self_url),
            ),
            None => error(StatusCode::NOT_FOUND, format!("no key named '{name}'")),
        }),
        (&Method::POST, Some(name)) => set(keys, &scope, name, None, &req).await,
        (&Method::PUT, Some(name)) => {
            let value = serde_json::from_slice::<Value>(req.body)
                .ok()
                .and_then(|v| v.get("value").and_then(Value::as_str).map(str::to_string));
            match value {
                None => Ok(error(StatusCode::BAD_REQUEST, "Invalid key value".into())),
                Some(v) if !crate::keys::secrets::valid_value(&v) => Ok(error(
                    StatusCode::BAD_REQUEST,
                    "Invalid key value: 16 to 256 printable characters without spaces, '&', '#', '%' or '?'"
                        .into(),
                )),
                Some(v) => set(keys, &scope, name, Some(v), &req).await,
            }
        }
        (&Method::DELETE, Some(name)) => {
            if name.starts_with('_') {
                // Azure: system keys (`_master`) cannot be deleted.
                Ok(error(StatusCode::BAD_REQUEST, "Invalid key name.".into()))
            } else {
                keys.delete(&scope, name).await.map(|deleted| {
                    if deleted {
                        let mut r = Response::new(Body::default());
                        *r.status_mut() = StatusCode::NO_CONTENT;
                        r
                    } else {
                        error(StatusCode::NOT_FOUND, format!("no key named '{name}'"))
                    }
                })
            }
        }
        (m, _) => Ok(error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{m} is not allowed here"),
        )),
    };
    result.unwrap_or_else(|e| store_error(&e))
}

async fn set(
    keys: &Keys,
    scope: &Scope,
    name: &str,
    value: Option<String>,
    req: &KeysRequest<'_>,
) -> Result<Response<Body>, StoreError> {
    // `_master` of the host scopes is the master key; other `_` names are reserved.
    let master = name.eq_ignore_ascii_case(MASTER) && !matches!(scope, Scope::Function(_));
    if !crate::keys::secrets::valid_name(name) || (name.starts_with('_') && !master) {
        return Ok(error(StatusCode::BAD_REQUEST, "Invalid key name.".into()));
    }
    let (value, outcome) = keys.set(scope, name, value).await?;
    let body = with_links(json!({ "name": name, "value": value }), &req.self_url);
    Ok(match outcome {
        Outcome::Updated => json_response(StatusCode::OK, &body),
        Outcome::Created => {
            let mut r = json_response(StatusCode::CREATED, &body);
            if let Ok(v) = HeaderValue::from_str(&req.self_url) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
    })
}

/// Azure's API models carry `links: [{"rel": "self", "href": ...}]`.
fn with_links(mut body: Value, href: &str) -> Value {
    body["links"] = json!([{ "rel": "self", "href": href }]);
    body
}

/// The key store failed: 503 naming where (never a value).
pub fn store_error(e: &StoreError) -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("cannot use the key store: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        path.split('/').map(str::to_string).collect()
    }

    #[test]
    fn keys_routes() {
        assert!(is_keys_route(&segs("host/keys")));
        assert!(is_keys_route(&segs("host/systemkeys/_master")));
        assert!(is_keys_route(&segs("functions/hello/keys/default")));
        assert!(!is_keys_route(&segs("host/status")));
        assert!(!is_keys_route(&segs("host/keys/a/b")));
        assert!(!is_keys_route(&segs("functions/hello/other")));
    }
}

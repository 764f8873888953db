//! The Durable Functions management API under `/runtime/webhooks/durabletask`,
//! with its routes, query parameters, field names, status codes and headers,
//! so that the real Durable Functions clients work against this host.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Value, json};

use super::{Body, error, json_response};
use crate::durable::Engine;
use crate::durable::client::ClientError;
use crate::durable::instances::Filter;
use crate::durable::model::{RuntimeStatus, parse_iso};

/// A request to the management API, already read.
pub struct ApiRequest<'a> {
    pub method: &'a Method,
    /// Path segments after `runtime/webhooks/durabletask`, decoded.
    pub segments: &'a [String],
    pub query: HashMap<String, String>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// `http://host:port` as the client addressed us.
    pub base: String,
}

pub async fn handle(engine: Option<&Arc<Engine>>, req: ApiRequest<'_>) -> Response<Body> {
    let Some(engine) = engine else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "durable functions are not available: set AzureWebJobsStorage in [Values] of local.settings.toml".into(),
        );
    };
    if let Some(hub) = req.query.get("taskHub")
        && !hub.eq_ignore_ascii_case(&engine.hub.name)
    {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "this host serves task hub '{}', not '{hub}'",
                engine.hub.name
            ),
        );
    }
    let result = route(engine, &req).await;
    result.unwrap_or_else(|e| {
        let status = match &e {
            ClientError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ClientError::NotFound(_) => StatusCode::NOT_FOUND,
            ClientError::Conflict(_) => StatusCode::CONFLICT,
            ClientError::Gone(..) => StatusCode::GONE,
            ClientError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        // Durable Functions' clients read `Message`/`ExceptionMessage` (the
        // Python client's start_new does on a 400).
        let message = crate::keys::redact::redact(&e.to_string()).into_owned();
        json_response(
            status,
            &json!({ "error": message, "Message": message, "ExceptionMessage": message }),
        )
    })
}

async fn route(engine: &Arc<Engine>, req: &ApiRequest<'_>) -> Result<Response<Body>, ClientError> {
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let m = req.method;
    match segs.as_slice() {
        ["instances"] if m == Method::GET => list(engine, req).await,
        ["instances"] if m == Method::DELETE => purge_matching(engine, req).await,
        ["instances", id] if m == Method::GET => status(engine, req, id).await,
        ["instances", id] if m == Method::DELETE => {
            if engine.purge(id).await? {
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "instancesDeleted": 1 }),
                ))
            } else {
                Err(ClientError::NotFound(id.to_string()))
            }
        }
        ["instances", id, "raiseEvent", name] if m == Method::POST => {
            let data = json_body(req.body)?;
            engine.raise_event(id, name, data).await?;
            Ok(accepted())
        }
        ["instances", id, op] if m == Method::POST => {
            let reason = req.query.get("reason").cloned();
            match *op {
                "terminate" => engine.terminate(id, reason).await?,
                "suspend" => engine.suspend(id, reason).await?,
                "resume" => engine.resume(id, reason).await?,
                "rewind" => {
                    // Durable Functions answers rewind errors with a JSON string
                    // (412 for an instance that did not fail), which its clients show.
                    if let Err(e) = engine.rewind(id, reason).await {
                        let status = match e {
                            ClientError::NotFound(_) => StatusCode::NOT_FOUND,
                            ClientError::Conflict(_) => StatusCode::PRECONDITION_FAILED,
                            ClientError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
                            _ => StatusCode::BAD_REQUEST,
                        };
                        return Ok(json_response(status, &Value::String(e.to_string())));
                    }
                }
                "restart" => {
                    let new_id = req
                        .query
                        .get("restartWithNewInstanceId")
                        .is_none_or(|v| v != "false");
                    let started = engine.restart(id, !new_id).await?;
                    return Ok(check_status(engine, &req.base, &started));
                }
                _ => return Err(ClientError::NotFound(format!("{id}/{op}"))),
            }
            Ok(accepted())
        }
        ["orchestrators", name] | ["orchestrators", name, _] if m == Method::POST => {
            let id = segs.get(2).map(|s| s.to_string());
            let input = json_body(req.body)?;
            let id = engine.start_new(name, id, input).await?;
            Ok(check_status(engine, &req.base, &id))
        }
        ["entities"] if m == Method::GET => list_entities(engine, req, None).await,
        ["entities"] if m == Method::POST => {
            // Durable Functions' CleanEntityStorage; both when the body says nothing.
            let body: Value = match json_body(req.body)? {
                Some(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
                None => json!({}),
            };
            let flag_of = |key: &str| match body.get(key) {
                None => Ok(true),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(ClientError::BadRequest(format!(
                    "{key} must be true or false, not {other}"
                ))),
            };
            if !body.is_object() {
                return Err(ClientError::BadRequest(
                    "the body must be a JSON object: {\"removeEmptyEntities\": bool, \"releaseOrphanedLocks\": bool}".into(),
                ));
            }
            let (removed, released) = engine
                .clean_entity_storage(
                    flag_of("removeEmptyEntities")?,
                    flag_of("releaseOrphanedLocks")?,
                )
                .await?;
            Ok(json_response(
                StatusCode::OK,
                &crate::durable::entity_client::cleaned_json(removed, released),
            ))
        }
        ["entities", name] if m == Method::GET => list_entities(engine, req, Some(name)).await,
        ["entities", name, key] if m == Method::GET => {
            match engine.read_entity_state(name, key).await? {
                Some(state) => Ok(json_text(StatusCode::OK, state)),
                None => Err(ClientError::NotFound(crate::durable::entity::instance_id(
                    name, key,
                ))),
            }
        }
        ["entities", name, key] if m == Method::POST => {
            let op = req.query.get("op").map(String::as_str).unwrap_or_default();
            let input = json_body(req.body)?;
            let scheduled = match req.query.get("scheduledTime") {
                Some(t) => Some(parse_iso(t).ok_or_else(|| {
                    ClientError::BadRequest(format!("scheduledTime '{t}' is not a date"))
                })?),
                None => None,
            };
            engine
                .signal_entity(name, key, op, input, scheduled)
                .await?;
            Ok(accepted())
        }
        ["entities", name, key] if m == Method::DELETE => {
            if engine.delete_entity(name, key).await? {
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "entitiesDeleted": 1 }),
                ))
            } else {
                Err(ClientError::NotFound(crate::durable::entity::instance_id(
                    name, key,
                )))
            }
        }
        ["instances", ..] | ["orchestrators", ..] | ["entities", ..] => Ok(error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{m} is not allowed here"),
        )),
        _ => Err(ClientError::NotFound(segs.join("/"))),
    }
}

/// An optional JSON body: empty means none; anything else must parse.
fn json_body(body: &[u8]) -> Result<Option<String>, ClientError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ClientError::BadRequest("the body is not UTF-8".into()))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str::<Value>(text)
        .map_err(|e| ClientError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    Ok(Some(text.to_string()))
}

fn accepted() -> Response<Body> {
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// The same 202 + Location + management URLs that functions get from the durable client.
fn check_status(engine: &Engine, base: &str, id: &str) -> Response<Body> {
    super::from_wit(engine.check_status(base, id))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// 202 with `body`, `Location` (where to ask again) and `Retry-After`.
fn accepted_with_location(body: &Value, urls: &Value) -> Response<Body> {
    let mut r = json_response(StatusCode::ACCEPTED, body);
    if let Some(Ok(v)) = urls["statusQueryGetUri"]
        .as_str()
        .map(HeaderValue::from_str)
    {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    r
}

fn flag(req: &ApiRequest<'_>, name: &str) -> bool {
    req.query
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

async fn status(
    engine: &Arc<Engine>,
    req: &ApiRequest<'_>,
    id: &str,
) -> Result<Response<Body>, ClientError> {
    let row = engine.instance(id).await?;
    let show_input = req
        .query
        .get("showInput")
        .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
    let doc = engine
        .status_json(
            &row,
            flag(req, "showHistory"),
            flag(req, "showHistoryOutput"),
            show_input,
        )
        .await?;
    if row.status.is_terminal() {
        return Ok(json_response(StatusCode::OK, &doc));
    }
    // Still going: 202, and where to ask again.
    Ok(accepted_with_location(
        &doc,
        &engine.management_urls(&req.base, id),
    ))
}

fn filter(req: &ApiRequest<'_>) -> Result<Filter, ClientError> {
    let date = |name: &str| -> Result<Option<u64>, ClientError> {
        match req.query.get(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => parse_iso(v).map(Some).ok_or_else(|| {
                ClientError::BadRequest(format!(
                    "{name} '{v}' is not a date (use ISO 8601, e.g. 2025-06-17T10:00:00Z)"
                ))
            }),
        }
    };
    let mut statuses = Vec::new();
    for s in req
        .query
        .get("runtimeStatus")
        .into_iter()
        .flat_map(|v| v.split(','))
    {
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        statuses.push(
            RuntimeStatus::parse(s)
                .ok_or_else(|| ClientError::BadRequest(format!("unknown runtimeStatus '{s}'")))?,
        );
    }
    Ok(Filter {
        created_from: date("createdTimeFrom")?,
        created_to: date("createdTimeTo")?,
        statuses,
        prefix: req.query.get("instanceIdPrefix").cloned(),
        ..Filter::default()
    })
}

async fn list(engine: &Arc<Engine>, req: &ApiRequest<'_>) -> Result<Response<Body>, ClientError> {
    let filter = filter(req)?;
    let top = match req.query.get("top") {
        Some(t) => Some(
            t.parse::<u32>()
                .map_err(|_| ClientError::BadRequest(format!("top '{t}' is not a number")))?,
        ),
        None => Some(100),
    };
    let continuation = req
        .headers
        .get("x-ms-continuation-token")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && *v != "null");
    let (rows, next) =
        crate::durable::instances::query(&engine.hub, &filter, top, continuation).await?;
    let show_input = flag(req, "showInput");
    let mut docs = Vec::with_capacity(rows.len());
    // Entities are listed under entities/, as Durable Functions does.
    for row in rows
        .iter()
        .filter(|r| !crate::durable::entity::is_entity(&r.instance_id))
    {
        docs.push(engine.status_json(row, false, false, show_input).await?);
    }
    let mut r = json_response(StatusCode::OK, &Value::Array(docs));
    if let Some(Ok(token)) = next.as_deref().map(HeaderValue::from_str) {
        r.headers_mut().insert("x-ms-continuation-token", token);
    }
    Ok(r)
}

/// `GET entities[/{name}]`: Durable Functions' entity query.
async fn list_entities(
    engine: &Arc<Engine>,
    req: &ApiRequest<'_>,
    name: Option<&str>,
) -> Result<Response<Body>, ClientError> {
    let date = |key: &str| -> Result<Option<u64>, ClientError> {
        match req.query.get(key) {
            None => Ok(None),
            Some(v) => parse_iso(v)
                .map(Some)
                .ok_or_else(|| ClientError::BadRequest(format!("{key} '{v}' is not a date"))),
        }
    };
    let top = match req.query.get("top") {
        Some(t) => Some(
            t.parse::<u32>()
                .map_err(|_| ClientError::BadRequest(format!("top '{t}' is not a number")))?,
        ),
        None => Some(100),
    };
    let continuation = req
        .headers
        .get("x-ms-continuation-token")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && *v != "null");
    let (entities, next) = engine
        .list_entities(
            name,
            date("lastOperationTimeFrom")?,
            date("lastOperationTimeTo")?,
            top,
            continuation,
            flag(req, "fetchState"),
        )
        .await?;
    let docs: Vec<Value> = entities
        .iter()
        .map(crate::durable::entity_client::summary_json)
        .collect();
    let mut r = json_response(StatusCode::OK, &Value::Array(docs));
    if let Some(Ok(token)) = next.as_deref().map(HeaderValue::from_str) {
        r.headers_mut().insert("x-ms-continuation-token", token);
    }
    Ok(r)
}

/// A JSON document that is already text.
fn json_text(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

async fn purge_matching(
    engine: &Arc<Engine>,
    req: &ApiRequest<'_>,
) -> Result<Response<Body>, ClientError> {
    let filter = filter(req)?;
    let n = engine.purge_matching(&filter).await?;
    if n == 0 {
        return Err(ClientError::NotFound(
            "no finished instance matches the filter".into(),
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "instancesDeleted": n }),
    ))
}

//! Converts our [`Entity`] to and from the Table service's JSON, with the
//! `@odata.type` annotations that keep value types across a round trip.
//!
//! Writing: strings, booleans and integers in i32 range go as they are (Edm.String,
//! Edm.Boolean, Edm.Int32); other integers as `"123"` annotated Edm.Int64 (JSON
//! numbers past 2^53 lose digits, so the service wants them as strings); floats
//! annotated Edm.Double (else `2.0` would come back as Int32 2); nulls are left
//! out (the service has no null; an absent property reads as absent). Arrays
//! and objects are refused: store them as JSON text.
//!
//! Reading: Edm.Int64 strings become numbers again, Edm.Double stays a float,
//! Edm.DateTime/Guid/Binary stay strings; `odata.*` metadata and `Timestamp`
//! are dropped, `odata.etag` becomes [`Entity::etag`].

use serde_json::{Map, Number, Value};

use crate::storage::{Entity, StorageError};

const TYPE_SUFFIX: &str = "@odata.type";

/// Escape a key for an entity URL: `PartitionKey='it''s'` (OData doubles a quote).
pub(crate) fn url_key(key: &str) -> String {
    key.replace('\'', "''")
}

/// A string literal for an OData `$filter`: `'it''s'`.
pub(crate) fn literal(value: &str) -> String {
    format!("'{}'", url_key(value))
}

/// The JSON body for a write of `entity` to `table`.
pub(crate) fn to_json(table: &str, entity: &Entity) -> Result<Map<String, Value>, StorageError> {
    let mut body = Map::new();
    body.insert(
        "PartitionKey".into(),
        Value::String(entity.partition_key.clone()),
    );
    body.insert("RowKey".into(), Value::String(entity.row_key.clone()));
    let refuse = |name: &str, why: &str| {
        StorageError::Other(format!(
            "entity ('{}', '{}') for table '{table}': property {name:?} {why}",
            entity.partition_key, entity.row_key
        ))
    };
    for (name, value) in &entity.properties {
        if matches!(name.as_str(), "PartitionKey" | "RowKey" | "Timestamp") || name.contains('@') {
            return Err(refuse(name, "is a reserved name (the service sets it)"));
        }
        match value {
            Value::Null => {}
            Value::Bool(_) | Value::String(_) => {
                body.insert(name.clone(), value.clone());
            }
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    if i32::try_from(i).is_ok() {
                        body.insert(name.clone(), value.clone());
                    } else {
                        body.insert(name.clone(), Value::String(i.to_string()));
                        body.insert(format!("{name}{TYPE_SUFFIX}"), "Edm.Int64".into());
                    }
                } else if n.is_u64() {
                    return Err(refuse(
                        name,
                        "is over i64::MAX; Edm.Int64 cannot hold it (store it as a string)",
                    ));
                } else {
                    body.insert(name.clone(), value.clone());
                    body.insert(format!("{name}{TYPE_SUFFIX}"), "Edm.Double".into());
                }
            }
            Value::Array(_) | Value::Object(_) => {
                return Err(refuse(
                    name,
                    "is an array or object; table properties are scalars (store it as JSON text)",
                ));
            }
        }
    }
    Ok(body)
}

/// An entity as the service returned it (with `odata=fullmetadata`).
/// `etag` is the response's ETag header when the body has no `odata.etag`.
pub(crate) fn from_json(mut json: Map<String, Value>, etag: Option<String>) -> Entity {
    let key = |json: &mut Map<String, Value>, name: &str| match json.remove(name) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let partition_key = key(&mut json, "PartitionKey");
    let row_key = key(&mut json, "RowKey");
    let etag = match json.get("odata.etag") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => etag,
    };
    let mut properties = Map::new();
    for (name, value) in &json {
        if name.starts_with("odata.") || name.ends_with(TYPE_SUFFIX) || name == "Timestamp" {
            continue;
        }
        let annotation = json
            .get(&format!("{name}{TYPE_SUFFIX}"))
            .and_then(Value::as_str);
        let value = match (annotation, value) {
            (Some("Edm.Int64"), Value::String(s)) => s
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(Value::String(s.clone())),
            (Some("Edm.Double"), Value::Number(n)) => n
                .as_f64()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .unwrap_or(Value::Number(n.clone())),
            _ => value.clone(),
        };
        properties.insert(name.clone(), value);
    }
    Entity {
        partition_key,
        row_key,
        etag,
        properties,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_keep_their_types_across_a_round_trip() {
        let entity = Entity::new("p", "r")
            .with("small", 7)
            .with("big", 1_i64 << 40)
            .with("negative_big", -(1_i64 << 40))
            .with("float", 2.0)
            .with("text", "it's")
            .with("flag", true)
            .with("gone", Value::Null);
        let body = to_json("T", &entity).unwrap();
        assert_eq!(body["small"], json!(7));
        assert_eq!(body["big"], json!("1099511627776"));
        assert_eq!(body["big@odata.type"], json!("Edm.Int64"));
        assert_eq!(body["float@odata.type"], json!("Edm.Double"));
        assert!(!body.contains_key("gone"));

        // What the service answers: Int64 as strings, a whole Double maybe as `2`.
        let mut answer = body.clone();
        answer.insert("float".into(), json!(2));
        answer.insert("odata.etag".into(), json!("W/\"x\""));
        answer.insert(
            "odata.metadata".into(),
            json!("http://x/$metadata#T/@Element"),
        );
        answer.insert("Timestamp".into(), json!("2026-01-01T00:00:00Z"));
        answer.insert("Timestamp@odata.type".into(), json!("Edm.DateTime"));
        let read = from_json(answer, None);
        let mut expected = entity.clone();
        expected.properties.remove("gone");
        expected.etag = Some("W/\"x\"".into());
        assert_eq!(read, expected);
    }

    #[test]
    fn reserved_names_and_nested_values_are_refused() {
        for entity in [
            Entity::new("p", "r").with("RowKey", "x"),
            Entity::new("p", "r").with("a@odata.type", "Edm.Guid"),
            Entity::new("p", "r").with("list", json!([1])),
            Entity::new("p", "r").with("huge", u64::MAX),
        ] {
            let error = to_json("T", &entity).unwrap_err().to_string();
            assert!(error.contains("table 'T'"), "{error}");
        }
    }

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(literal("it's"), "'it''s'");
    }
}

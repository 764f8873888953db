//! What `host durable` prints: aligned tables for people, one JSON document
//! for scripts (`--output json`).

use serde_json::Value;

use super::Output;

/// Columns padded to their widest cell, two spaces apart.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// A JSON value as one line of text: strings without quotes, null as empty.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn pretty(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values print")
    );
}

/// `get-instances`: one row per instance, then how to get the next page.
pub(super) fn instances(out: Output, docs: &[Value], next: Option<&str>) {
    if out == Output::Json {
        pretty(&serde_json::json!({"instances": docs, "continuationToken": next}));
        return;
    }
    if docs.is_empty() {
        println!("No instances match.");
    } else {
        let rows: Vec<Vec<String>> = docs
            .iter()
            .map(|d| {
                [
                    "instanceId",
                    "name",
                    "runtimeStatus",
                    "createdTime",
                    "lastUpdatedTime",
                ]
                .iter()
                .map(|k| cell(&d[*k]))
                .collect()
            })
            .collect();
        print!(
            "{}",
            table(
                &["Instance ID", "Name", "Status", "Created", "Last updated"],
                &rows
            )
        );
    }
    if let Some(token) = next {
        println!("\nMore instances: add --continuation-token '{token}'");
    }
}

/// `get-runtime-status`: the status document as name/value lines.
pub(super) fn status(out: Output, doc: &Value) {
    if out == Output::Json {
        pretty(doc);
        return;
    }
    let labels = [
        ("name", "Name"),
        ("instanceId", "Instance ID"),
        ("runtimeStatus", "Status"),
        ("createdTime", "Created"),
        ("lastUpdatedTime", "Last updated"),
        ("customStatus", "Custom status"),
        ("input", "Input"),
        ("output", "Output"),
    ];
    let rows: Vec<Vec<String>> = labels
        .iter()
        .filter(|(k, _)| doc.get(*k).is_some())
        .map(|(k, label)| vec![format!("{label}:"), cell(&doc[*k])])
        .collect();
    for row in &rows {
        println!("{:<15}{}", row[0], row[1]);
    }
}

/// `get-history`: one row per event.
pub(super) fn history(out: Output, doc: &Value) {
    if out == Output::Json {
        pretty(doc);
        return;
    }
    let events = doc["events"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let id = e
                .get("EventId")
                .or_else(|| e.get("TaskScheduledId"))
                .or_else(|| e.get("TimerId"))
                .map(cell)
                .unwrap_or_default();
            let name = e
                .get("Name")
                .map(cell)
                .or_else(|| e.get("OrchestrationStatus").map(cell))
                .unwrap_or_default();
            let details = ["Input", "Result", "Reason", "FireAt", "InstanceId"]
                .iter()
                .filter_map(|k| {
                    e.get(*k)
                        .filter(|v| !v.is_null())
                        .map(|v| format!("{k}={}", cell(v)))
                })
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                i.to_string(),
                cell(&e["Timestamp"]),
                cell(&e["EventType"]),
                id,
                name,
                details,
            ]
        })
        .collect();
    println!(
        "Instance '{}', execution {}",
        cell(&doc["instanceId"]),
        cell(&doc["executionId"])
    );
    print!(
        "{}",
        table(&["#", "Time", "Event", "Id", "Name", "Details"], &rows)
    );
}

/// A command that did one thing: a sentence, or its JSON.
pub(super) fn done(out: Output, text: &str, json: Value) {
    match out {
        Output::Json => pretty(&json),
        Output::Table => println!("{text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["Id", "Status"],
            &[
                vec!["a".into(), "Running".into()],
                vec!["long-id".into(), "Completed".into()],
            ],
        );
        assert_eq!(t, "Id       Status\na        Running\nlong-id  Completed\n");
    }
}

//! The durable client: what functions (through the `durable-client` import)
//! and the management HTTP API do to instances.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::config::Trigger;
use crate::runtime::durable::{EventRaised, ExecutionStarted, HistoryEvent};
use crate::runtime::{DurableClient, HttpResponse};
use crate::storage::StorageError;

use super::Engine;
use super::history;
use super::instances::{self, Filter};
use super::model::{
    ControlEvent, ControlMessage, InstanceRow, Record, RuntimeStatus, StoredRecord, WorkItem, iso,
    now_ms,
};
use super::outbox;

/// Why a client operation did not happen; the management API maps these to status codes.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 400
    #[error("{0}")]
    BadRequest(String),
    /// 404
    #[error("no instance '{0}' in this task hub")]
    NotFound(String),
    /// 409: e.g. starting an id that is running.
    #[error("{0}")]
    Conflict(String),
    /// 410: the instance already finished.
    #[error("instance '{0}' has already finished ({1})")]
    Gone(String, &'static str),
    /// 500/503
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Engine {
    /// Start `orchestrator`; the instance id. A finished instance of the same
    /// id is replaced; a running one is a Conflict.
    pub async fn start_new(
        self: &Arc<Self>,
        orchestrator: &str,
        instance_id: Option<String>,
        input: Option<String>,
    ) -> Result<String, ClientError> {
        if self
            .catalog
            .table()
            .find(orchestrator, |t| matches!(t, Trigger::Orchestration))
            .is_none()
        {
            return Err(ClientError::BadRequest(format!(
                "no orchestrator function named '{orchestrator}' is loaded"
            )));
        }
        if let Some(input) = &input
            && serde_json::from_str::<Value>(input).is_err()
        {
            return Err(ClientError::BadRequest(
                "the input is not valid JSON".into(),
            ));
        }
        let given = instance_id.is_some();
        let id = instance_id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        if id.is_empty()
            || id.starts_with('@')
            || id.len() > 256
            || id.chars().any(|c| c.is_control() || "/\\#?".contains(c))
        {
            return Err(ClientError::BadRequest(format!(
                "'{id}' is not a valid instance id (no / \\ # ? or control characters, not starting with @, at most 256)"
            )));
        }
        // A fresh id cannot exist yet: no need to read it (one storage call less).
        let mut replaced = None;
        if given && let Some((existing, etag)) = instances::get_versioned(&self.hub, &id).await? {
            if !existing.status.is_terminal() {
                return Err(ClientError::Conflict(format!(
                    "an instance with id '{id}' is already {}",
                    existing.status.as_str()
                )));
            }
            replaced = Some(etag);
        }
        let now = now_ms();
        let execution_id = uuid::Uuid::new_v4().simple().to_string();
        let message = ControlMessage {
            instance_id: id.clone(),
            execution_id: Some(execution_id.clone()),
            event: ControlEvent::Event(HistoryEvent::ExecutionStarted(ExecutionStarted {
                name: orchestrator.to_string(),
                input: input.clone(),
                timestamp: now,
            })),
            parent: None,
            id: Some(uuid::Uuid::new_v4().simple().to_string()),
        };
        let row = InstanceRow {
            instance_id: id.clone(),
            name: orchestrator.to_string(),
            execution_id,
            status: RuntimeStatus::Pending,
            input,
            output: None,
            custom_status: None,
            created: now,
            last_updated: now,
            completed: None,
        };
        let partition = self.hub.partition_of(&id);
        if let Some(part) = self.owned(partition).filter(|p| p.is_active()) {
            // This host runs the instance: the start goes to the partition in
            // memory (no queue message, no Pending row), and the 202 waits
            // for its first checkpoint, which writes the history and the
            // status row (for a quick orchestration, already its final one).
            let (done, started) = tokio::sync::oneshot::channel();
            part.push(
                self,
                &id,
                vec![super::partition::Work::Message {
                    message,
                    held: None,
                    ack: Some(Arc::new(std::sync::Mutex::new(Some(done)))),
                    new_id: !given,
                }],
            );
            return match tokio::time::timeout(Duration::from_secs(30), started).await {
                Ok(Ok(())) => Ok(id),
                // The partition moved while it waited, or storage is down:
                // the start may or may not have happened.
                _ => Err(ClientError::Storage(StorageError::Unavailable(format!(
                    "the start of '{id}' was not confirmed: check its status before starting it again"
                )))),
            };
        }
        // The start message first, then the Pending row: a crash between the
        // two leaves an instance that runs (its first episode writes the row),
        // never a Pending row without a start. The row goes in only where no
        // newer one is (the instance may already have run), and before the
        // 202, so the instance is visible as soon as start answers.
        outbox::send_control(self, vec![message]).await?;
        instances::put_pending(&self.hub, &row, replaced).await?;
        Ok(id)
    }

    /// The instance's row, or NotFound.
    pub async fn instance(&self, instance_id: &str) -> Result<InstanceRow, ClientError> {
        instances::get(&self.hub, instance_id)
            .await?
            .ok_or_else(|| ClientError::NotFound(instance_id.to_string()))
    }

    /// Send a control message to a live instance (404 unknown, 410 finished).
    async fn send_to_live(
        self: &Arc<Self>,
        instance_id: &str,
        event: ControlEvent,
    ) -> Result<(), ClientError> {
        let row = self.instance(instance_id).await?;
        if row.status.is_terminal() {
            return Err(ClientError::Gone(
                instance_id.to_string(),
                row.status.as_str(),
            ));
        }
        let message = ControlMessage {
            instance_id: instance_id.to_string(),
            execution_id: None,
            event,
            parent: None,
            id: Some(uuid::Uuid::new_v4().simple().to_string()),
        };
        outbox::send_control(self, vec![message]).await?;
        Ok(())
    }

    pub async fn raise_event(
        self: &Arc<Self>,
        instance_id: &str,
        name: &str,
        data: Option<String>,
    ) -> Result<(), ClientError> {
        let event = ControlEvent::Event(HistoryEvent::EventRaised(EventRaised {
            name: name.to_string(),
            input: data,
        }));
        self.send_to_live(instance_id, event).await
    }

    pub async fn terminate(
        self: &Arc<Self>,
        instance_id: &str,
        reason: Option<String>,
    ) -> Result<(), ClientError> {
        self.send_to_live(instance_id, ControlEvent::Terminate { reason })
            .await
    }

    pub async fn suspend(
        self: &Arc<Self>,
        instance_id: &str,
        reason: Option<String>,
    ) -> Result<(), ClientError> {
        self.send_to_live(instance_id, ControlEvent::Suspend { reason })
            .await
    }

    pub async fn resume(
        self: &Arc<Self>,
        instance_id: &str,
        reason: Option<String>,
    ) -> Result<(), ClientError> {
        self.send_to_live(instance_id, ControlEvent::Resume { reason })
            .await
    }

    /// Delete an instance's history, row and large payloads; whether it existed.
    pub async fn purge(&self, instance_id: &str) -> Result<bool, ClientError> {
        self.forget_history(instance_id);
        let rows = history::purge(&self.hub, instance_id).await?;
        let existed = instances::delete(&self.hub, instance_id).await?;
        self.hub.delete_large(instance_id).await?;
        Ok(existed || rows > 0)
    }

    /// Purge every finished instance matching `filter`; how many.
    pub async fn purge_matching(&self, filter: &Filter) -> Result<usize, ClientError> {
        let mut count = 0;
        let mut continuation = None;
        loop {
            let (rows, next) =
                instances::query(&self.hub, filter, Some(1000), continuation.as_deref()).await?;
            for row in rows.iter().filter(|r| r.status.is_terminal()) {
                if self.purge(&row.instance_id).await? {
                    count += 1;
                }
            }
            match next {
                Some(n) => continuation = Some(n),
                None => return Ok(count),
            }
        }
    }

    /// Resume a failed instance from its failure: its failed activities run
    /// again and the orchestrator replays up to them.
    pub async fn rewind(
        self: &Arc<Self>,
        instance_id: &str,
        reason: Option<String>,
    ) -> Result<(), ClientError> {
        let row = self.instance(instance_id).await?;
        if row.status != RuntimeStatus::Failed {
            return Err(ClientError::Conflict(format!(
                "only failed instances can be rewound; '{instance_id}' is {}",
                row.status.as_str()
            )));
        }
        let history = history::load(&self.hub, instance_id)
            .await?
            .ok_or_else(|| ClientError::NotFound(instance_id.to_string()))?;
        let failed: Vec<u32> = history
            .records
            .iter()
            .filter_map(|r| match &r.record {
                Record::Event(HistoryEvent::TaskFailed(f)) => Some(f.task_scheduled_id),
                _ => None,
            })
            .collect();
        let retry: Vec<WorkItem> = history
            .records
            .iter()
            .filter_map(|r| match &r.record {
                Record::Event(HistoryEvent::TaskScheduled(t)) if failed.contains(&t.event_id) => {
                    Some(WorkItem {
                        instance_id: instance_id.to_string(),
                        execution_id: history.execution_id.clone(),
                        task_scheduled_id: t.event_id,
                        name: t.name.clone(),
                        input: t.input.clone(),
                    })
                }
                _ => None,
            })
            .collect();
        if retry.is_empty() {
            return Err(ClientError::Conflict(format!(
                "nothing to rewind in '{instance_id}': no activity failed (the orchestrator itself did)"
            )));
        }
        // The owner of the instance's partition rewinds it in one checkpoint:
        // nothing here writes the history or the row (a client racing the owner
        // could only lose or duplicate work).
        let message = ControlMessage {
            instance_id: instance_id.to_string(),
            execution_id: Some(history.execution_id.clone()),
            event: ControlEvent::Rewind { reason },
            parent: None,
            id: Some(uuid::Uuid::new_v4().simple().to_string()),
        };
        outbox::send_control(self, vec![message]).await?;
        Ok(())
    }

    /// Restart a finished instance with its original input (a new id unless `same_id`).
    pub async fn restart(
        self: &Arc<Self>,
        instance_id: &str,
        same_id: bool,
    ) -> Result<String, ClientError> {
        let row = self.instance(instance_id).await?;
        if same_id && !row.status.is_terminal() {
            return Err(ClientError::Conflict(format!(
                "instance '{instance_id}' is still {}",
                row.status.as_str()
            )));
        }
        let new_id = same_id.then(|| instance_id.to_string());
        self.start_new(&row.name, new_id, row.input).await
    }

    /// The status document, with Durable Functions' field names.
    pub async fn status_json(
        &self,
        row: &InstanceRow,
        show_history: bool,
        show_history_output: bool,
        show_input: bool,
    ) -> Result<Value, ClientError> {
        let mut doc = json!({
            "name": row.name,
            "instanceId": row.instance_id,
            "runtimeStatus": row.status.as_str(),
            "input": if show_input { json_or_text(row.input.as_deref()) } else { Value::Null },
            "customStatus": json_or_text(row.custom_status.as_deref()),
            "output": json_or_text(row.output.as_deref()),
            "createdTime": seconds(row.created),
            "lastUpdatedTime": seconds(row.last_updated),
        });
        if show_history {
            let records = history::load(&self.hub, &row.instance_id)
                .await?
                .map(|h| h.records)
                .unwrap_or_default();
            doc["historyEvents"] = Value::Array(history_events(&records, show_history_output));
        }
        Ok(doc)
    }

    /// Wait until the instance finishes or `timeout` passes; its row then.
    pub async fn wait_for_completion(
        &self,
        instance_id: &str,
        timeout: Duration,
    ) -> Result<InstanceRow, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut finished = self.finished.subscribe();
        let mut pause = Duration::from_millis(50);
        loop {
            let row = self.instance(instance_id).await?;
            let now = Instant::now();
            if row.status.is_terminal() || now >= deadline {
                return Ok(row);
            }
            // Woken at once when it finishes on this host; polled when another host runs it.
            let wait = pause.min(deadline - now);
            let _ = tokio::time::timeout(wait, async {
                while let Ok(id) = finished.recv().await {
                    if id == instance_id {
                        break;
                    }
                }
            })
            .await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// The management URLs of an instance, based on `base` (`http://host:port`).
    pub fn management_urls(&self, base: &str, instance_id: &str) -> Value {
        let mut q = format!("taskHub={}&connection=Storage", self.hub.name);
        // While keys are enforced the URLs carry the durabletask_extension
        // system key, as the real extension's do.
        if let Some(code) = crate::keys::url_code() {
            q.push_str("&code=");
            q.extend(percent_encoding::utf8_percent_encode(&code, CODE));
        }
        let id = percent_encoding::utf8_percent_encode(instance_id, PATH_SEGMENT);
        let instance = format!("{base}/runtime/webhooks/durabletask/instances/{id}");
        json!({
            "id": instance_id,
            "statusQueryGetUri": format!("{instance}?{q}"),
            "sendEventPostUri": format!("{instance}/raiseEvent/{{eventName}}?{q}"),
            "terminatePostUri": format!("{instance}/terminate?reason={{text}}&{q}"),
            "rewindPostUri": format!("{instance}/rewind?reason={{text}}&{q}"),
            "purgeHistoryDeleteUri": format!("{instance}?{q}"),
            "restartPostUri": format!("{instance}/restart?{q}"),
            "suspendPostUri": format!("{instance}/suspend?reason={{text}}&{q}"),
            "resumePostUri": format!("{instance}/resume?reason={{text}}&{q}"),
        })
    }

    /// 202 + Location + the management URLs.
    pub fn check_status(&self, request_url: &str, instance_id: &str) -> HttpResponse {
        let urls = self.management_urls(&base_of(request_url), instance_id);
        let location = urls["statusQueryGetUri"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        HttpResponse {
            status: 202,
            headers: vec![
                (
                    "content-type".into(),
                    "application/json; charset=utf-8".into(),
                ),
                ("location".into(), location),
                ("retry-after".into(), "10".into()),
            ],
            body: urls.to_string().into_bytes(),
        }
    }
}

/// Characters escaped in a `code=` value (keys are URL-safe base64: none of these).
const CODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'=');

/// Characters escaped in an instance id used as a URL path segment.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// `scheme://host[:port]` of a URL.
fn base_of(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    url[..end].to_string()
}

/// `2019-04-16T15:23:03Z`: Durable Functions shows whole seconds.
fn seconds(ms: u64) -> String {
    let full = iso(ms);
    format!("{}Z", &full[..19])
}

/// Stored JSON as JSON; anything else as a string; nothing as null.
fn json_or_text(s: Option<&str>) -> Value {
    match s {
        None => Value::Null,
        Some(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string())),
    }
}

/// `historyEvents` as Durable Functions' status API shows them.
fn history_events(records: &[StoredRecord], with_output: bool) -> Vec<Value> {
    let scheduled = |id: u32| {
        records.iter().find_map(|r| match &r.record {
            Record::Event(HistoryEvent::TaskScheduled(t)) if t.event_id == id => {
                Some((t.name.clone(), r.timestamp))
            }
            Record::Event(HistoryEvent::SubOrchestrationCreated(s)) if s.event_id == id => {
                Some((s.name.clone(), r.timestamp))
            }
            _ => None,
        })
    };
    let out = |v: &Option<String>| {
        if with_output {
            json_or_text(v.as_deref())
        } else {
            Value::Null
        }
    };
    let mut events = Vec::new();
    for r in records {
        let ts = seconds(r.timestamp);
        let event = match &r.record {
            Record::Event(HistoryEvent::ExecutionStarted(e)) => {
                json!({"EventType": "ExecutionStarted", "FunctionName": e.name, "Timestamp": ts})
            }
            Record::Event(HistoryEvent::TaskCompleted(c))
            | Record::Event(HistoryEvent::SubOrchestrationCompleted(c)) => {
                let (name, at) = scheduled(c.task_scheduled_id).unwrap_or_default();
                let kind = if matches!(r.record, Record::Event(HistoryEvent::TaskCompleted(_))) {
                    "TaskCompleted"
                } else {
                    "SubOrchestrationInstanceCompleted"
                };
                json!({"EventType": kind, "FunctionName": name, "Result": out(&c.output), "ScheduledTime": seconds(at), "Timestamp": ts})
            }
            Record::Event(HistoryEvent::TaskFailed(f))
            | Record::Event(HistoryEvent::SubOrchestrationFailed(f)) => {
                let (name, at) = scheduled(f.task_scheduled_id).unwrap_or_default();
                let kind = if matches!(r.record, Record::Event(HistoryEvent::TaskFailed(_))) {
                    "TaskFailed"
                } else {
                    "SubOrchestrationInstanceFailed"
                };
                json!({"EventType": kind, "FunctionName": name, "Reason": f.failure.message, "Details": f.failure.details, "ScheduledTime": seconds(at), "Timestamp": ts})
            }
            Record::Event(HistoryEvent::TimerFired(t)) => {
                json!({"EventType": "TimerFired", "FireAt": seconds(t.fire_at), "Timestamp": ts})
            }
            Record::Event(HistoryEvent::EventRaised(e)) => {
                json!({"EventType": "EventRaised", "Name": e.name, "Input": out(&e.input), "Timestamp": ts})
            }
            Record::Event(HistoryEvent::EventSent(e)) => {
                json!({"EventType": "EventSent", "Name": e.name, "InstanceId": e.instance_id, "Timestamp": ts})
            }
            Record::Event(HistoryEvent::ExecutionSuspended) => {
                json!({"EventType": "ExecutionSuspended", "Timestamp": ts})
            }
            Record::Event(HistoryEvent::ExecutionResumed) => {
                json!({"EventType": "ExecutionResumed", "Timestamp": ts})
            }
            Record::ExecutionCompleted { status, output, .. } => {
                json!({"EventType": "ExecutionCompleted", "OrchestrationStatus": status.as_str(), "Result": out(output), "Timestamp": ts})
            }
            Record::ExecutionTerminated { reason } => {
                json!({"EventType": "ExecutionTerminated", "Reason": reason, "Timestamp": ts})
            }
            Record::ContinuedAsNew { input } => {
                json!({"EventType": "ContinueAsNew", "Input": out(input), "Timestamp": ts})
            }
            Record::Event(_) => continue,
        };
        events.push(event);
    }
    events
}

fn message(e: ClientError) -> String {
    e.to_string()
}

/// The `durable-client` import of functions.
#[async_trait]
impl DurableClient for Arc<Engine> {
    async fn start_new(
        &self,
        orchestrator: &str,
        instance_id: Option<String>,
        input: Option<String>,
    ) -> Result<String, String> {
        Engine::start_new(self, orchestrator, instance_id, input)
            .await
            .map_err(message)
    }

    async fn get_status(
        &self,
        instance_id: &str,
        show_history: bool,
        show_input: bool,
    ) -> Result<Option<String>, String> {
        match self.instance(instance_id).await {
            Ok(row) => {
                let doc = self
                    .status_json(&row, show_history, show_history, show_input)
                    .await
                    .map_err(message)?;
                Ok(Some(doc.to_string()))
            }
            Err(ClientError::NotFound(_)) => Ok(None),
            Err(e) => Err(message(e)),
        }
    }

    async fn signal_entity(
        &self,
        name: &str,
        key: &str,
        operation: &str,
        input: Option<String>,
        scheduled_ms: Option<u64>,
    ) -> Result<(), String> {
        Engine::signal_entity(self, name, key, operation, input, scheduled_ms)
            .await
            .map_err(message)
    }

    async fn read_entity_state(&self, name: &str, key: &str) -> Result<Option<String>, String> {
        Engine::read_entity_state(self, name, key)
            .await
            .map_err(message)
    }

    async fn raise_event(
        &self,
        instance_id: &str,
        event_name: &str,
        data: Option<String>,
    ) -> Result<(), String> {
        Engine::raise_event(self, instance_id, event_name, data)
            .await
            .map_err(message)
    }

    async fn terminate(&self, instance_id: &str, reason: Option<String>) -> Result<(), String> {
        Engine::terminate(self, instance_id, reason)
            .await
            .map_err(message)
    }

    async fn suspend(&self, instance_id: &str, reason: Option<String>) -> Result<(), String> {
        Engine::suspend(self, instance_id, reason)
            .await
            .map_err(message)
    }

    async fn resume(&self, instance_id: &str, reason: Option<String>) -> Result<(), String> {
        Engine::resume(self, instance_id, reason)
            .await
            .map_err(message)
    }

    async fn purge(&self, instance_id: &str) -> Result<bool, String> {
        Engine::purge(self, instance_id).await.map_err(message)
    }

    fn check_status_response(&self, request_url: &str, instance_id: &str) -> HttpResponse {
        self.check_status(request_url, instance_id)
    }

    async fn wait_or_check_status(
        &self,
        request_url: &str,
        instance_id: &str,
        timeout: Duration,
    ) -> HttpResponse {
        match self.wait_for_completion(instance_id, timeout).await {
            Ok(row) if row.status == RuntimeStatus::Completed => HttpResponse {
                status: 200,
                headers: vec![(
                    "content-type".into(),
                    "application/json; charset=utf-8".into(),
                )],
                body: row.output.unwrap_or_else(|| "null".into()).into_bytes(),
            },
            Ok(row) if row.status.is_terminal() => {
                match self.status_json(&row, false, false, false).await {
                    Ok(doc) => HttpResponse {
                        status: 200,
                        headers: vec![(
                            "content-type".into(),
                            "application/json; charset=utf-8".into(),
                        )],
                        body: doc.to_string().into_bytes(),
                    },
                    Err(e) => error_response(500, &e.to_string()),
                }
            }
            Ok(_) => self.check_status(request_url, instance_id),
            Err(ClientError::NotFound(id)) => error_response(404, &format!("no instance '{id}'")),
            Err(e) => error_response(500, &e.to_string()),
        }
    }
}

fn error_response(status: u16, message: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![(
            "content-type".into(),
            "application/json; charset=utf-8".into(),
        )],
        body: json!({ "error": message }).to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_and_seconds() {
        assert_eq!(
            base_of("http://localhost:7071/api/x?y=1"),
            "http://localhost:7071"
        );
        assert_eq!(base_of("http://h"), "http://h");
        assert_eq!(seconds(1_750_154_400_123), "2025-06-17T10:00:00Z");
        assert_eq!(json_or_text(Some("{\"a\":1}")), json!({"a": 1}));
        assert_eq!(json_or_text(Some("plain")), json!("plain"));
    }
}

//! Timer trigger sample: each occurrence is logged and recorded in the blob
//! `heartbeat/last.json` (`{"scheduled", "isPastDue", "last", "next"}`, times in
//! ms since the Unix epoch) and appended as a message to the queue `heartbeats`.

use fnhost_sdk::{TimerInfo, blob, json, queue, timer_trigger};

#[timer_trigger]
fn heartbeat(timer: TimerInfo) -> Result<(), String> {
    fnhost_sdk::log::info(format!(
        "heartbeat scheduled={} past_due={}",
        timer.scheduled, timer.is_past_due
    ));
    let record = json!({
        "scheduled": timer.scheduled,
        "isPastDue": timer.is_past_due,
        "last": timer.last,
        "next": timer.next,
    });
    blob::write("heartbeat/last.json", record.to_string())?;
    queue::Queue::new("heartbeats").send_json(&record)
}

fnhost_sdk::export_functions!(heartbeat);

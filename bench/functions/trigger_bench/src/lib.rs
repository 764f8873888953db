//! No-op trigger functions for the trigger benchmark: each logs one line
//! (`q {body}` / `b {name}`) that the benchmark times.

use fnhost_sdk::{Blob, QueueMessage, blob_trigger, queue_trigger};

#[queue_trigger]
fn bench_queue(m: QueueMessage) {
    fnhost_sdk::log::info(format!("q {}", m.text()));
}

#[blob_trigger]
fn bench_blob(b: Blob) {
    fnhost_sdk::log::info(format!("b {}", b.name));
}

fnhost_sdk::export_functions!(bench_queue, bench_blob);

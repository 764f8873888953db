//! Fan-out/fan-in: `POST api/starter_function` with a time range and a number of
//! chunks; the orchestrator processes every chunk in parallel as an activity and
//! aggregates the results.

use std::time::{Duration, Instant};

use fnhost_sdk::durable::{OrchestrationContext, OrchestrationError};
use fnhost_sdk::{HttpRequest, HttpResponse, activity, client, http_trigger, json, orchestrator};
use serde::{Deserialize, Serialize};

/// The request of the starter, and the orchestration's input.
#[derive(Serialize, Deserialize, Clone)]
struct Job {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
    total_chunks: u32,
    #[serde(default)]
    time: Option<String>,
}

/// One chunk's work order.
#[derive(Serialize, Deserialize, Clone)]
struct Chunk {
    chunk_id: u32,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
    #[serde(default = "one")]
    total_chunks: u32,
    #[serde(default)]
    time: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Serialize, Deserialize)]
struct ChunkResult {
    chunk_id: u32,
    status: String,
    processing_time: f64,
}

/// `POST api/starter_function`: start the pipeline; 202 with the status URLs.
#[http_trigger]
fn starter_function(req: HttpRequest) -> HttpResponse {
    let job: Job = match req.json() {
        Ok(j) => j,
        Err(e) => {
            return HttpResponse::bad_request(format!("invalid body: {e} (expected total_chunks)"));
        }
    };
    if job.total_chunks == 0 || job.total_chunks > 10_000 {
        return HttpResponse::bad_request("total_chunks must be between 1 and 10000");
    }
    match client::start_new("orchestrator_function", None, &job) {
        Ok(id) => {
            fnhost_sdk::log::info(format!("Started orchestration with ID = '{id}'."));
            client::create_check_status_response(&req, &id)
        }
        Err(e) => HttpResponse::new(500).json(&json!({ "error": e.to_string() })),
    }
}

#[orchestrator]
async fn orchestrator_function(
    ctx: OrchestrationContext,
) -> Result<fnhost_sdk::JsonValue, OrchestrationError> {
    let job: Job = ctx.input()?;
    // Fan out: every chunk at once.
    let tasks = (0..job.total_chunks).map(|chunk_id| {
        let chunk = Chunk {
            chunk_id,
            start: job.start.clone(),
            end: job.end.clone(),
            total_chunks: job.total_chunks,
            time: job.time.clone(),
        };
        ctx.call_activity::<ChunkResult>("process_chunk_activity", chunk)
    });
    // Fan in: results in chunk order.
    let mut results = Vec::new();
    for r in ctx.when_all(tasks).await {
        results.push(r?);
    }
    Ok(json!({ "status": "completed", "total_chunks": job.total_chunks, "results": results }))
}

/// Process one chunk; its processing time is measured.
fn process(chunk: &Chunk) -> ChunkResult {
    let started = Instant::now();
    // The work: a chunk's share of the range takes 50-250 ms here.
    std::thread::sleep(Duration::from_millis(
        50 + 50 * u64::from(chunk.chunk_id % 5),
    ));
    let secs = started.elapsed().as_secs_f64();
    ChunkResult {
        chunk_id: chunk.chunk_id,
        status: "success".into(),
        processing_time: (secs * 100.0).round() / 100.0,
    }
}

#[activity]
fn process_chunk_activity(chunk: Chunk) -> ChunkResult {
    process(&chunk)
}

/// `POST api/test_activity_function`: run the chunk processing directly, for testing.
#[http_trigger]
fn test_activity_function(req: HttpRequest) -> HttpResponse {
    match req.json::<Chunk>() {
        Ok(chunk) => HttpResponse::ok().json(&process(&chunk)),
        Err(e) => HttpResponse::bad_request(format!("invalid body: {e} (expected chunk_id)")),
    }
}

fnhost_sdk::export_functions!(
    starter_function,
    orchestrator_function,
    process_chunk_activity,
    test_activity_function
);

//! Outbound HTTP from functions (`fnhost_sdk::http` over wasi:http): allowed
//! origins work, others are refused with a clear error and a console line,
//! orchestrators never call out, and bad `allowedOutboundHosts` fail the load.

#[path = "support/azurite.rs"]
mod azurite;
#[path = "durable_support.rs"]
mod durable_support;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use azurite::Azurite;
use durable_support::{finished, project};
use serde_json::Value;
use support::{Project, client, get};

/// An upstream HTTP/1.1 server on a free loopback port, run on threads of
/// this test and stopped when dropped.
///
/// `/hello` answers a text; `/echo` answers the method, the `x-fixture`
/// header and the body; `/big?n=N` answers N bytes; `/hang` never answers.
struct Upstream {
    port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (count, stopped) = (count.clone(), stopped.clone());
                std::thread::spawn(move || serve(conn, &count, &stopped));
            }
        });
        Upstream {
            port,
            requests,
            stop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, count: &AtomicUsize, stop: &AtomicBool) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (mut length, mut fixture) = (0usize, String::from("-"));
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 {
            return;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "x-fixture" => fixture = value.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    count.fetch_add(1, Ordering::SeqCst);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let answer = match path {
        "/hello" => b"hello from upstream".to_vec(),
        "/echo" => format!("{method} {fixture} {}", String::from_utf8_lossy(&body)).into_bytes(),
        "/big" => vec![b'x'; query.trim_start_matches("n=").parse().unwrap_or(0)],
        "/hang" => {
            // Hold the connection open, unanswered, until the test ends.
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        _ => b"not found".to_vec(),
    };
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.len()
    );
    let _ = conn.write_all(&answer);
}

/// The fixture's `fetch` function alone (its durable functions would need
/// storage), with `allowed` as its `allowedOutboundHosts` line.
fn http_only(allowed: &str) -> Project {
    let p = Project::with(&["outbound"]);
    p.write(
        "functions/outbound/function.toml",
        &format!(
            "{allowed}\n[[functions]]\nname = \"fetch\"\ntrigger = {{ type = \"httpTrigger\", methods = [\"get\", \"post\"], authLevel = \"anonymous\" }}\n"
        ),
    );
    p
}

const LOOPBACK: &str = "allowedOutboundHosts = [\"http://127.0.0.1:*\"]";

/// GET `api/fetch?url=...` on `host`; status and body.
fn fetch(host: &support::Host, url: &str) -> (u16, String) {
    get(&host.url(&format!("/api/fetch?url={url}")))
}

#[test]
fn http_function_calls_an_allowed_host() {
    let upstream = Upstream::start();
    let p = http_only(LOOPBACK);
    let host = p.start(&[]);

    let (code, body) = fetch(&host, &upstream.url("/hello"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "200 text/plain hello from upstream");

    let r = client()
        .post(host.url(&format!("/api/fetch?url={}", upstream.url("/echo"))))
        .body("the posted body")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().unwrap(),
        "200 text/plain POST outbound the posted body"
    );
    assert_eq!(upstream.requests(), 2);
}

#[test]
fn forbidden_hosts_are_refused_with_a_clear_error_and_a_console_line() {
    let upstream = Upstream::start();
    let p = http_only(LOOPBACK);
    let mut host = p.start(&[]);

    // The same server by a name that is not listed.
    let other = format!("http://localhost:{}/hello?secret=s3", upstream.port);
    let (code, body) = fetch(&host, &other);
    assert_eq!(code, 502, "{body}");
    assert!(
        body.starts_with(&format!(
            "the host refused the request to {other} (HttpRequestDenied): add its origin"
        )),
        "{body}"
    );
    assert!(body.contains("allowedOutboundHosts"), "{body}");
    let line = host.wait_for(
        "Outbound HTTP request of 'Functions.fetch'",
        Duration::from_secs(10),
    );
    assert!(
        line.contains(&format!(
            "to http://localhost:{}/hello refused",
            upstream.port
        )) && line.contains("not in allowedOutboundHosts [\"http://127.0.0.1:*\"]"),
        "{line}"
    );
    assert!(
        !line.contains("s3"),
        "the query stays out of the console: {line}"
    );

    // A folder that lists nothing (the default) may call nothing, 127.0.0.1 included.
    let closed = http_only("");
    let mut closed_host = closed.start(&[]);
    let (code, body) = fetch(&closed_host, &upstream.url("/hello"));
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    let line = closed_host.wait_for(
        "Outbound HTTP request of 'Functions.fetch'",
        Duration::from_secs(10),
    );
    assert!(line.contains("not in allowedOutboundHosts []"), "{line}");
    assert_eq!(
        upstream.requests(),
        0,
        "no refused request reached the server"
    );
}

#[test]
fn outbound_calls_end_at_function_timeout_and_bodies_are_capped() {
    let upstream = Upstream::start();
    let p = http_only(LOOPBACK);
    // 32 MiB of memory: bodies up to 8 MiB.
    p.write(
        "host.toml",
        "functionTimeout = \"00:00:02\"\n[wasm]\nmaxMemoryMB = 32\n",
    );
    let host = p.start(&[]);

    let started = Instant::now();
    let (code, body) = fetch(&host, &upstream.url("/hang"));
    let took = started.elapsed();
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("functionTimeout"), "{body}");
    assert!(took < Duration::from_secs(10), "took {took:?}");

    let (code, body) = fetch(&host, &upstream.url(&format!("/big?n={}", 9 << 20)));
    assert_eq!(code, 502, "{body}");
    assert!(
        body.contains(&format!(
            "HttpResponseBodySize: the response body is over the host's limit (a quarter of \
             [wasm] maxMemoryMB): it has {} bytes",
            9 << 20
        )),
        "{body}"
    );
    let (code, body) = fetch(&host, &upstream.url(&format!("/big?n={}", 1 << 20)));
    assert_eq!(code, 200);
    assert_eq!(body.len(), "200 text/plain ".len() + (1 << 20));
}

#[test]
fn activities_call_out_and_orchestrators_cannot() {
    let upstream = Upstream::start();
    let azurite = Azurite::start();
    let p = project(&azurite, &["outbound"], "");
    let mut host = p.start(&[]);

    let r = client()
        .post(host.url("/runtime/webhooks/durabletask/orchestrators/FetchOrchestrator"))
        .json(&upstream.url("/hello"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let started: Value = r.json().unwrap();
    let done = finished(
        started["statusQueryGetUri"].as_str().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    let output = &done["output"];
    assert_eq!(output["via_activity"], "hello from upstream", "{done}");
    let direct = output["direct"].as_str().unwrap();
    assert!(
        direct.starts_with(&format!(
            "the host refused the request to {} (HttpRequestDenied)",
            upstream.url("/hello")
        )),
        "{direct}"
    );
    let line = host.wait_for(
        "Outbound HTTP request of 'Functions.FetchOrchestrator'",
        Duration::from_secs(10),
    );
    assert!(
        line.contains("orchestrators have no outbound I/O"),
        "{line}"
    );
    // Only the activity's request reached the server.
    assert_eq!(upstream.requests(), 1);
}

#[test]
fn bad_allowed_outbound_hosts_fail_the_folder_load() {
    let p = Project::with(&["outbound", "hello"]);
    p.write(
        "functions/outbound/function.toml",
        "allowedOutboundHosts = [\"http://127.0.0.1:*\",\n  \"api.example.com\"]\n[[functions]]\nname = \"fetch\"\ntrigger = { type = \"httpTrigger\" }\n",
    );
    let mut host = p.start(&[]);
    let line = host.wait_for(
        "Function folder 'outbound' is in error:",
        Duration::from_secs(30),
    );
    assert!(
        line.contains(
            "outbound/function.toml line 1: allowedOutboundHosts entry \"api.example.com\" has \
             no scheme: write \"https://api.example.com\" (or \"*://api.example.com\" for http \
             and https)"
        ),
        "{line}"
    );
    assert_eq!(get(&host.url("/api/hello?name=a")).0, 200);
    assert_eq!(get(&host.url("/api/fetch")).0, 404);
}

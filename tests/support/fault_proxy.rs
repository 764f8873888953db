//! A storage fault proxy: a real network hop between the host and a test's
//! Azurite, one listener per service (blob, queue, table) on 127.0.0.1, that
//! injects faults into requests at a seeded rate, or takes a service away
//! entirely for an outage.
//!
//! It parses just enough HTTP/1.1 to find where each request and answer
//! ends (Content-Length, chunked, or no body), so that it can fault one
//! request of a keep-alive connection and keep the others. Each request is
//! forwarded on a fresh connection to Azurite (no stale upstream keep-alive
//! to guess about). The faults:
//!
//! - `DropBefore`: the connection is closed before the request is forwarded;
//! - `DropAfter`: the request is applied, then the connection is closed
//!   without the answer (the nastiest case for idempotency);
//! - `Delay`: the answer comes 0.1-1.5 s late;
//! - `ErrorBefore(500|503)`: answered by the proxy, Azure's error body, not forwarded;
//! - `ErrorAfter(500|503)`: applied, and the real answer replaced by the error;
//! - `HangBefore` / `HangAfter`: no answer at all (before or after applying)
//!   until the client gives up and closes the connection.
//!
//! The seed (printed; `FNHOST_FAULT_SEED=N` replays it) fixes the sequence of
//! decisions of each connection (the n-th connection of a service draws from
//! its own generator), so a run's faults are reproducible up to the order in
//! which the host's requests happen to arrive.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::azurite::{Azurite, DEV_KEY};

/// One storage service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    Blob,
    Queue,
    Table,
}

pub const SERVICES: [Service; 3] = [Service::Blob, Service::Queue, Service::Table];

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    DropBefore,
    DropAfter,
    Delay,
    ErrorBefore(u16),
    ErrorAfter(u16),
    HangBefore,
    HangAfter,
}

/// Every kind, in the order a draw picks from.
pub const ALL_FAULTS: [Fault; 9] = [
    Fault::DropBefore,
    Fault::DropAfter,
    Fault::Delay,
    Fault::ErrorBefore(500),
    Fault::ErrorBefore(503),
    Fault::ErrorAfter(500),
    Fault::ErrorAfter(503),
    Fault::HangBefore,
    Fault::HangAfter,
];

/// A hung request is let go after this even if the client still waits.
const MAX_HANG: Duration = Duration::from_secs(120);

/// SplitMix64: small, seedable, good enough to pick faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One service's listener and its switches.
struct Lane {
    service: Service,
    upstream: u16,
    port: u16,
    seed: u64,
    /// Fault rate in parts per million of requests.
    rate_ppm: AtomicU64,
    down: AtomicBool,
    connections: AtomicU64,
    requests: AtomicU64,
    /// Requests refused or cut off while the service was down.
    refused: AtomicU64,
    injected: Mutex<BTreeMap<Fault, u64>>,
    /// Faults for the next requests, before any drawn at the rate.
    forced: Mutex<std::collections::VecDeque<Fault>>,
    /// Clones of the open client connections (an outage closes them).
    open: Mutex<Vec<(u64, TcpStream)>>,
}

/// The proxy of one Azurite's three services.
pub struct FaultProxy {
    lanes: Vec<Arc<Lane>>,
    stop: Arc<AtomicBool>,
    pub seed: u64,
    /// The Azurite account behind the proxy's ports, as a connection string.
    pub connection_string: String,
}

impl FaultProxy {
    /// Listen for each service of `azurite`, faulting `rate` (0.0-1.0) of
    /// every service's requests. The seed comes from `FNHOST_FAULT_SEED`, else
    /// from the clock; it is printed either way.
    pub fn start(azurite: &Azurite, rate: f64) -> FaultProxy {
        let seed = match std::env::var("FNHOST_FAULT_SEED") {
            Ok(s) => s
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("FNHOST_FAULT_SEED={s:?} is not a number")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        };
        eprintln!("fault proxy: seed {seed} (replay with FNHOST_FAULT_SEED={seed})");
        let stop = Arc::new(AtomicBool::new(false));
        let mut lanes = Vec::new();
        for (service, upstream) in [
            (Service::Blob, azurite.blob_port),
            (Service::Queue, azurite.queue_port),
            (Service::Table, azurite.table_port),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let lane = Arc::new(Lane {
                service,
                upstream,
                port: listener.local_addr().unwrap().port(),
                seed: seed ^ (service as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407),
                rate_ppm: AtomicU64::new(ppm(rate)),
                down: AtomicBool::new(false),
                connections: AtomicU64::new(0),
                requests: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                injected: Mutex::new(BTreeMap::new()),
                forced: Mutex::new(std::collections::VecDeque::new()),
                open: Mutex::new(Vec::new()),
            });
            let (accepting, stop) = (lane.clone(), stop.clone());
            std::thread::spawn(move || accept(listener, accepting, stop));
            lanes.push(lane);
        }
        let endpoint = |service: Service| {
            format!(
                "http://127.0.0.1:{}/devstoreaccount1",
                lanes[service as usize].port
            )
        };
        let connection_string = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};\
             BlobEndpoint={};QueueEndpoint={};TableEndpoint={};",
            endpoint(Service::Blob),
            endpoint(Service::Queue),
            endpoint(Service::Table)
        );
        FaultProxy {
            lanes,
            stop,
            seed,
            connection_string,
        }
    }

    fn lane(&self, service: Service) -> &Lane {
        &self.lanes[service as usize]
    }

    /// The proxy's port for `service`.
    pub fn port(&self, service: Service) -> u16 {
        self.lane(service).port
    }

    /// Fault `rate` (0.0-1.0) of `service`'s requests from now on.
    pub fn set_rate(&self, service: Service, rate: f64) {
        self.lane(service)
            .rate_ppm
            .store(ppm(rate), Ordering::SeqCst);
    }

    /// Do `fault` to the next request of `service` (then to the following
    /// ones, if called again), whatever the rate.
    pub fn fault_next(&self, service: Service, fault: Fault) {
        self.lane(service).forced.lock().unwrap().push_back(fault);
    }

    /// Take `service` away (every open connection is closed, new ones are
    /// closed as they come: the client sees its connection refused or cut),
    /// or bring it back.
    pub fn set_down(&self, service: Service, down: bool) {
        let lane = self.lane(service);
        lane.down.store(down, Ordering::SeqCst);
        if down {
            for (_, stream) in lane.open.lock().unwrap().drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Faults injected so far into `service`'s requests, by kind.
    pub fn injected(&self, service: Service) -> BTreeMap<Fault, u64> {
        self.lane(service).injected.lock().unwrap().clone()
    }

    /// Requests `service` received so far (faulted or not).
    pub fn requests(&self, service: Service) -> u64 {
        self.lane(service).requests.load(Ordering::SeqCst)
    }

    /// Connections and requests turned away while `service` was down.
    pub fn refused(&self, service: Service) -> u64 {
        self.lane(service).refused.load(Ordering::SeqCst)
    }

    /// One line per service: requests, and faults by kind.
    pub fn report(&self) -> String {
        SERVICES
            .iter()
            .map(|s| {
                let faults: Vec<String> = self
                    .injected(*s)
                    .iter()
                    .map(|(k, n)| format!("{k:?} {n}"))
                    .collect();
                format!(
                    "{s:?}: {} requests, {} refused while down, faults: {}",
                    self.requests(*s),
                    self.refused(*s),
                    faults.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for lane in &self.lanes {
            for (_, stream) in lane.open.lock().unwrap().drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
            // Wake the accept loop so that it sees the stop.
            let _ = TcpStream::connect(("127.0.0.1", lane.port));
        }
    }
}

fn ppm(rate: f64) -> u64 {
    (rate.clamp(0.0, 1.0) * 1_000_000.0).round() as u64
}

fn accept(listener: TcpListener, lane: Arc<Lane>, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if lane.down.load(Ordering::SeqCst) {
            lane.refused.fetch_add(1, Ordering::SeqCst);
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let number = lane.connections.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            lane.open.lock().unwrap().push((number, clone));
        }
        let (lane, stop) = (lane.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(lane.seed ^ number.wrapping_mul(0x2545_F491_4F6C_DD1D));
            serve(stream, &lane, &stop, &mut rng);
            lane.open.lock().unwrap().retain(|(n, _)| *n != number);
        });
    }
}

/// Bytes read from a socket but not consumed yet.
struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A request or an answer: its head (start line and headers) and its bytes as read.
struct Message {
    head: String,
    bytes: Vec<u8>,
}

impl Reader {
    fn fill(&mut self) -> std::io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Bytes up to and including "\r\n\r\n"; None at a clean end of stream.
    fn head(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                return Ok(Some(self.buf.drain(..end + 4).collect()));
            }
            if !self.fill()? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    fn exact(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill()? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn line(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                return Ok(self.buf.drain(..end + 2).collect());
            }
            if !self.fill()? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// A chunked body, framing included (it is forwarded as it came).
    fn chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let line = self.line()?;
            let size_text = String::from_utf8_lossy(&line);
            let size = usize::from_str_radix(size_text.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {size_text:?}")))?;
            out.extend_from_slice(&line);
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let line = self.line()?;
                    out.extend_from_slice(&line);
                    if line == b"\r\n" {
                        return Ok(out);
                    }
                }
            }
            out.extend(self.exact(size + 2)?);
        }
    }

    /// Everything until the peer closes.
    fn until_closed(&mut self) -> std::io::Result<Vec<u8>> {
        while self.fill()? {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// One message; `request_method` is None when reading a request, else the
    /// method of the request this answers (a HEAD answer has no body).
    fn message(&mut self, request_method: Option<&str>) -> std::io::Result<Option<Message>> {
        let Some(head_bytes) = self.head()? else {
            return Ok(None);
        };
        let head = String::from_utf8_lossy(&head_bytes).to_string();
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let mut bytes = head_bytes;
        let status: Option<u16> = request_method
            .and_then(|_| head.split_whitespace().nth(1).and_then(|s| s.parse().ok()));
        let no_body = request_method == Some("HEAD")
            || status.is_some_and(|s| (100..200).contains(&s) || s == 204 || s == 304);
        if no_body {
        } else if header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            bytes.extend(self.chunked()?);
        } else if let Some(length) = header("content-length") {
            let n: usize = length
                .parse()
                .map_err(|_| std::io::Error::other("bad content-length"))?;
            bytes.extend(self.exact(n)?);
        } else if request_method.is_some() {
            // An answer without a length ends with its connection.
            bytes.extend(self.until_closed()?);
        }
        Ok(Some(Message { head, bytes }))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Serve one client connection until it closes, is dropped by a fault, or
/// the service goes down.
fn serve(stream: TcpStream, lane: &Lane, stop: &AtomicBool, rng: &mut Rng) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut client = Reader {
        stream,
        buf: Vec::new(),
    };
    loop {
        let request = match client.message(None) {
            Ok(Some(r)) => r,
            _ => return,
        };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if lane.down.load(Ordering::SeqCst) {
            lane.refused.fetch_add(1, Ordering::SeqCst);
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
        lane.requests.fetch_add(1, Ordering::SeqCst);
        let method = request
            .head
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        let drawn = (rng.next() % 1_000_000 < lane.rate_ppm.load(Ordering::SeqCst))
            .then(|| ALL_FAULTS[(rng.next() % ALL_FAULTS.len() as u64) as usize]);
        let fault = lane.forced.lock().unwrap().pop_front().or(drawn);
        if let Some(f) = fault {
            *lane.injected.lock().unwrap().entry(f).or_default() += 1;
        }
        let delay = Duration::from_millis(100 + rng.next() % 1400);
        let answer = match fault {
            Some(Fault::DropBefore) => return close(&out),
            Some(Fault::ErrorBefore(code)) => error_answer(lane.service, code),
            Some(Fault::HangBefore) => return hang(&mut client, &out),
            _ => match forward(lane, &request, &method) {
                Ok(answer) => answer,
                // Azurite itself failed us: the client sees its connection cut.
                Err(_) => return close(&out),
            },
        };
        match fault {
            Some(Fault::DropAfter) => return close(&out),
            Some(Fault::HangAfter) => return hang(&mut client, &out),
            Some(Fault::Delay) => std::thread::sleep(delay),
            _ => {}
        }
        let answer = match fault {
            Some(Fault::ErrorAfter(code)) => error_answer(lane.service, code),
            _ => answer,
        };
        if lane.down.load(Ordering::SeqCst) {
            lane.refused.fetch_add(1, Ordering::SeqCst);
            return close(&out);
        }
        if out.write_all(&answer).is_err() {
            return;
        }
        let closing = String::from_utf8_lossy(&answer[..find(&answer, b"\r\n\r\n").unwrap_or(0)])
            .to_ascii_lowercase()
            .contains("connection: close");
        if closing {
            return close(&out);
        }
    }
}

fn close(out: &TcpStream) {
    let _ = out.shutdown(Shutdown::Both);
}

/// Say nothing until the client gives up (closes), at most [`MAX_HANG`].
fn hang(client: &mut Reader, out: &TcpStream) {
    let _ = client.stream.set_read_timeout(Some(MAX_HANG));
    let started = Instant::now();
    while started.elapsed() < MAX_HANG {
        match client.fill() {
            Ok(true) => continue,
            _ => break,
        }
    }
    close(out);
}

/// Send `request` to Azurite on a fresh connection; its answer's bytes.
fn forward(lane: &Lane, request: &Message, method: &str) -> std::io::Result<Vec<u8>> {
    let mut upstream = TcpStream::connect(("127.0.0.1", lane.upstream))?;
    upstream.set_read_timeout(Some(Duration::from_secs(60)))?;
    upstream.write_all(&request.bytes)?;
    let mut reader = Reader {
        stream: upstream,
        buf: Vec::new(),
    };
    let answer = reader
        .message(Some(method))?
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
    let _ = reader.stream.shutdown(Shutdown::Both);
    Ok(answer.bytes)
}

/// Azure's error answer for `code` (500 InternalError, 503 ServerBusy), in
/// the service's error format.
fn error_answer(service: Service, code: u16) -> Vec<u8> {
    let (reason, error, text) = match code {
        503 => (
            "Service Unavailable",
            "ServerBusy",
            "The server is currently unable to receive requests. Please retry your request.",
        ),
        _ => (
            "Internal Server Error",
            "InternalError",
            "The server encountered an internal error. Please retry the request.",
        ),
    };
    let (content_type, body) = match service {
        Service::Table => (
            "application/json;odata=minimalmetadata;streaming=true;charset=utf-8",
            format!(
                r#"{{"odata.error":{{"code":"{error}","message":{{"lang":"en-US","value":"{text}\nRequestId:fault-proxy"}}}}}}"#
            ),
        ),
        _ => (
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{error}</Code><Message>{text}\nRequestId:fault-proxy</Message></Error>"
            ),
        ),
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         x-ms-error-code: {error}\r\nx-ms-request-id: fault-proxy\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

//! The HTTP server's limits with the real binary: a slow-loris client and a
//! trickling body are cut off while others are served, oversized headers and
//! request targets are refused, connections beyond maxConnections wait.

mod support;

use std::time::Duration;

use support::{Project, client};

fn call(method: &str, url: &str, key: Option<&str>) -> (u16, String) {
    let mut r = client().request(method.parse().unwrap(), url);
    if let Some(k) = key {
        r = r.header("x-functions-key", k);
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn project() -> Project {
    Project::with(&["hello"])
}

/// Read what the server sends on `stream` until it closes or `deadline`.
fn read_reply(stream: &mut std::net::TcpStream, deadline: Duration) -> String {
    use std::io::Read;
    stream.set_read_timeout(Some(deadline)).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn slow_and_oversized_requests_are_cut_off_while_others_are_served() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let p = project();
    p.write("host.toml", "[server]\nheaderTimeout = \"00:00:02\"\n");
    let host = p.start(&["--enableAuth"]);
    let addr = host.base.trim_start_matches("http://").to_string();

    // Slow loris: a request line and then one header byte every 0.5 s. The
    // server drops it after headerTimeout (2 s), long before the 60 bytes
    // are out, and serves ordinary requests all the while.
    let mut loris = TcpStream::connect(&addr).unwrap();
    loris
        .write_all(b"GET /api/hello HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    loris
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut served_meanwhile = 0;
    let mut cut_after = None;
    for i in 0..60 {
        if loris.write_all(b"X").is_err() {
            cut_after = Some(i);
            break;
        }
        let mut buf = [0u8; 512];
        match loris.read(&mut buf) {
            Ok(0) => {
                cut_after = Some(i);
                break;
            }
            Ok(_) => {
                // hyper may answer 408 before closing: also cut off.
                cut_after = Some(i);
                break;
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                cut_after = Some(i);
                break;
            }
        }
        let (status, _) = call("GET", &host.url("/api/hello?name=x"), None);
        assert_eq!(status, 200);
        served_meanwhile += 1;
    }
    let cut_after = cut_after.expect("the slow client was never cut off");
    assert!(
        cut_after < 60 && served_meanwhile > 0,
        "{cut_after} {served_meanwhile}"
    );

    // A body that trickles in at 2 bytes a second: 408 once it falls below
    // 240 bytes/s after the 5 s grace.
    let mut slow_body = TcpStream::connect(&addr).unwrap();
    slow_body
        .write_all(b"POST /api/hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        .unwrap();
    slow_body
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut reply = String::new();
    for _ in 0..120 {
        let _ = slow_body.write_all(b"a");
        let mut buf = [0u8; 1024];
        match slow_body.read(&mut buf) {
            Ok(n) if n > 0 => {
                reply = String::from_utf8_lossy(&buf[..n]).into_owned();
                break;
            }
            Ok(_) => break,
            Err(_) => {}
        }
    }
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    assert!(reply.contains("minRequestBodyDataRate"), "{reply}");

    // Headers over 32 KiB: 431. A request target over 8 KiB: 414.
    let mut big = TcpStream::connect(&addr).unwrap();
    let header = format!(
        "GET /api/hello HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(40 * 1024)
    );
    let _ = big.write_all(header.as_bytes());
    let reply = read_reply(&mut big, Duration::from_secs(10));
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:?}");
    let (status, _) = call(
        "GET",
        &host.url(&format!("/api/hello?name={}", "n".repeat(9000))),
        None,
    );
    assert_eq!(status, 414);
    // And the host still serves.
    assert_eq!(call("GET", &host.url("/api/hello"), None).0, 200);
}

#[test]
fn connections_beyond_max_connections_wait_for_a_free_one() {
    use std::io::Read;
    let p = project();
    p.write(
        "host.toml",
        "[server]\nmaxConnections = 1\nheaderTimeout = \"00:00:02\"\n",
    );
    let host = p.start(&[]);
    let addr = host.base.trim_start_matches("http://").to_string();
    // An idle connection holds the only slot until headerTimeout closes it...
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    // ...so this request is served only after that.
    assert_eq!(call("GET", &host.url("/api/hello"), None).0, 200);
    idle.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 64];
    let closed = matches!(idle.read(&mut buf), Ok(0))
        || matches!(idle.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
    assert!(
        closed,
        "the request was served while the idle connection still held the slot"
    );
}

//! The samples and the echo fixture over HTTP: routes, methods, parameters,
//! headers, bodies, limits, CORS, settings, and the console `func start` prints.

mod support;

use serde_json::{Value, json};
use support::{Project, client, get};

fn project() -> Project {
    let p = Project::with(&["hello", "items", "misbehave"]);
    p.write(
        "local.settings.toml",
        r#"
IsEncrypted = false
[Values]
GREETING = "from the file"
OVERRIDDEN = "from the file"
FUNCTIONS_REQUEST_BODY_SIZE_LIMIT = 1024
[Host]
CORS = "https://app.example"
"#,
    );
    p.write(
        "host.toml",
        "[extensions.http.customHeaders]\nx-powered-by = \"fnhost\"\n",
    );
    p
}

#[test]
fn samples_and_echo_over_http() {
    let p = project();
    let host = p.start_with_env(&[], &[("OVERRIDDEN", "from the environment")]);
    let c = client();

    // hello: query string, JSON body, neither.
    assert_eq!(
        get(&host.url("/api/hello?name=Ada")),
        (
            200,
            "Hello, Ada. This HTTP triggered function executed successfully.".into()
        )
    );
    let r = c
        .post(host.url("/api/hello"))
        .json(&json!({"name": "Bob"}))
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-powered-by"], "fnhost");
    assert_eq!(
        r.text().unwrap(),
        "Hello, Bob. This HTTP triggered function executed successfully."
    );
    let (status, body) = get(&host.url("/api/HELLO"));
    assert_eq!(status, 200);
    assert!(body.contains("Pass a name in the query string"), "{body}");

    // items: {id:int} route parameter and repeated, form-decoded query values.
    let (status, body) = get(&host.url("/api/items/42?tag=a&tag=b+c"));
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!({"id": 42, "name": "item-42", "tags": ["a", "b c"]})
    );
    assert_eq!(
        get(&host.url("/api/items/forty-two")).0,
        404,
        "the int constraint rejects text"
    );

    // greet: optional parameter, JSON in and out, a 400 from the function.
    let greet = |path: &str, body: Value| {
        let r = c.post(host.url(path)).json(&body).send().unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    assert_eq!(
        greet("/api/greet", json!({"name": "Ada"})),
        (200, json!({"message": "Hello, Ada!", "lang": "en"}))
    );
    assert_eq!(
        greet("/api/greet/fr", json!({"name": "Ada"})),
        (200, json!({"message": "Bonjour, Ada!", "lang": "fr"}))
    );
    let (status, v) = greet("/api/greet/fr", json!({"nom": "Ada"}));
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("missing field `name`"),
        "{v}"
    );

    // echo: everything reaches the guest, status and headers come back.
    let r = c
        .put(host.url("/api/echo/first%20part/7?x=1&y=two+words&y=3"))
        .header("X-Custom", "abc")
        .body("raw body")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-echo"], "yes");
    let v: Value = r.json().unwrap();
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["path"], "/api/echo/first%20part/7");
    assert_eq!(v["params"], json!([["a", "first part"], ["b", "7"]]));
    assert_eq!(
        v["query"],
        json!([["x", "1"], ["y", "two words"], ["y", "3"]])
    );
    assert_eq!(v["body"], "raw body");
    assert!(
        v["url"]
            .as_str()
            .unwrap()
            .ends_with("/api/echo/first%20part/7?x=1&y=two+words&y=3"),
        "{v}"
    );
    assert!(
        v["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["x-custom", "abc"])),
        "{v}"
    );
    let r = c.get(host.url("/api/echo/a?status=418")).send().unwrap();
    assert_eq!(r.status(), 418);
    assert_eq!(
        r.json::<Value>().unwrap()["params"],
        json!([["a", "a"]]),
        "optional {{b:int?}} left out"
    );

    // App settings are environment variables; the host's environment wins.
    assert_eq!(
        get(&host.url("/api/env?name=GREETING")),
        (200, "from the file".into())
    );
    assert_eq!(
        get(&host.url("/api/env?name=OVERRIDDEN")),
        (200, "from the environment".into())
    );
    assert_eq!(
        get(&host.url("/api/env?name=PATH")).0,
        404,
        "the host's own environment stays private"
    );

    // Health.
    let (status, body) = get(&host.url("/admin/host/status"));
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["state"],
        "Running"
    );

    // The console: the function list, then a line per invocation start and end.
    let out = host.output();
    assert!(out.contains("Skipping 'OVERRIDDEN' from local.settings.toml as it's already defined in current environment variables."), "{out}");
    assert!(out.contains("Functions:"), "{out}");
    let port = host.base.rsplit(':').next().unwrap();
    for line in [
        format!("        hello: [GET,POST] http://localhost:{port}/api/hello"),
        format!("        get_item: [GET] http://localhost:{port}/api/items/{{id:int}}"),
        format!("        greet: [POST] http://localhost:{port}/api/greet/{{lang?}}"),
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
    let executing = out
        .lines()
        .find(|l| l.contains("Executing 'Functions.hello' (Reason="))
        .unwrap();
    let id = executing.split("Id=").nth(1).unwrap().trim_end_matches(')');
    assert!(
        out.contains(&format!("[hello {}] greeting Ada", &id[..8])),
        "the guest's log line is tagged:\n{out}"
    );
    assert!(
        out.lines().any(|l| l.contains(&format!(
            "Executed 'Functions.hello' (Succeeded, Id={id}, Duration="
        ))),
        "{out}"
    );
}

#[test]
fn bad_requests_get_404_405_413() {
    let p = project();
    let host = p.start(&[]);
    let c = client();

    let (status, body) = get(&host.url("/api/nothing-here"));
    assert_eq!(status, 404);
    assert!(
        serde_json::from_str::<Value>(&body).unwrap()["error"].is_string(),
        "{body}"
    );
    assert_eq!(get(&host.url("/not-under-the-prefix")).0, 404);

    let r = c.delete(host.url("/api/hello")).send().unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, POST");

    let r = c
        .post(host.url("/api/echo/big"))
        .body(vec![b'x'; 1025])
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = c
        .post(host.url("/api/echo/fits"))
        .body(vec![b'x'; 1024])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // A chunked body has no Content-Length: the limit holds while reading.
    let chunks = futures_like_stream(2048);
    let r = c
        .post(host.url("/api/echo/chunked"))
        .body(reqwest::blocking::Body::new(chunks))
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
}

/// A reader without a known length, so reqwest sends it chunked.
fn futures_like_stream(len: usize) -> impl std::io::Read + Send + 'static {
    std::io::Cursor::new(vec![b'y'; len])
}

#[test]
fn cors_follows_local_settings() {
    let p = project();
    let host = p.start(&[]);
    let c = client();
    let r = c
        .request(reqwest::Method::OPTIONS, host.url("/api/hello"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(r.headers()["access-control-allow-methods"], "POST");
    assert_eq!(r.headers()["access-control-allow-headers"], "content-type");

    let r = c
        .get(host.url("/api/hello"))
        .header("Origin", "https://app.example")
        .send()
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let r = c
        .get(host.url("/api/hello"))
        .header("Origin", "https://evil.example")
        .send()
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

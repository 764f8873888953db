//! Keys and access with the real binary: authLevel enforcement with every
//! kind of key, Azure's key store (blobs in Azurite, or files) shared by
//! hosts and kept across restarts, the keys admin API and `host keys`, when
//! enforcement is on, and secrets kept out of the console and error bodies.

#[path = "support/azurite.rs"]
mod azurite;
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Project, client, host_bin, poll};

/// `hello` (anonymous) plus the misbehave component with `echo` at
/// authLevel function and `env` at admin.
fn project() -> Project {
    let p = Project::with(&["hello", "misbehave"]);
    p.write(
        "functions/misbehave/function.toml",
        r#"
[[functions]]
name = "echo"
trigger = { type = "httpTrigger", route = "echo/{a}/{b:int?}", authLevel = "function" }
[[functions]]
name = "env"
trigger = { type = "httpTrigger", methods = ["get"], authLevel = "admin" }
[[functions]]
name = "trap"
trigger = { type = "httpTrigger", methods = ["get"] }
"#,
    );
    p
}

/// `host keys ...` against the project's store; its stdout (asserts success).
fn keys_cli(root: &Path, args: &[&str]) -> String {
    let out = Command::new(host_bin())
        .arg("keys")
        .args(args)
        .arg("--script-root")
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "host keys {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `host keys list` as scope/name → value.
fn list_keys(root: &Path) -> HashMap<String, String> {
    keys_cli(root, &["list"])
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (scope, name, value) = (parts.next()?, parts.next()?, parts.next()?);
            Some((format!("{scope}/{name}"), value.to_string()))
        })
        .collect()
}

fn call(method: &str, url: &str, key: Option<&str>) -> (u16, String) {
    let mut r = client().request(method.parse().unwrap(), url);
    if let Some(k) = key {
        r = r.header("x-functions-key", k);
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn get_code(url: &str, key: &str) -> u16 {
    let sep = if url.contains('?') { '&' } else { '?' };
    call("GET", &format!("{url}{sep}code={key}"), None).0
}

#[test]
fn auth_levels_accept_exactly_the_right_keys() {
    let p = project();
    let mut host = p.start(&["--enableAuth"]);
    host.wait_for("Keys are enforced (as asked)", Duration::from_secs(5));
    let keys = list_keys(p.root());
    let master = keys["master/_master"].clone();
    let host_key = keys["host/default"].clone();
    let system = keys["system/durabletask_extension"].clone();
    // Function keys are created on first use, here through the CLI.
    let echo_key = keys_cli(p.root(), &["list", "--function", "echo"])
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    let env_key = keys_cli(p.root(), &["list", "--function", "env"])
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    let wrong = "not-a-key-of-this-app-000000000000";

    let hello = host.url("/api/hello?name=x");
    let echo = host.url("/api/echo/x");
    let env = host.url("/api/env?name=PATH");
    let mut served = 0;
    // (url, key, expected status) for each auth level and kind of key.
    let cases: Vec<(&str, Option<&str>, u16)> = vec![
        (&hello, None, 200),
        (&hello, Some(wrong), 200),
        (&echo, None, 401),
        (&echo, Some(wrong), 401),
        (&echo, Some(&env_key), 401), // another function's key
        (&echo, Some(&echo_key), 200),
        (&echo, Some(&host_key), 200),
        (&echo, Some(&master), 200),
        (&echo, Some(&system), 401),
        (&env, None, 401),
        (&env, Some(wrong), 401),
        (&env, Some(&env_key), 401),
        (&env, Some(&host_key), 401),
        (&env, Some(&master), 404), // it ran: PATH is no app setting
    ];
    for (url, key, want) in &cases {
        let (status, body) = call("GET", url, *key);
        assert_eq!(status, *want, "{url} with {key:?}: {body}");
        if status == 401 || *want == 401 {
            let doc: Value = serde_json::from_str(&body).unwrap();
            assert!(doc["error"].as_str().unwrap().contains("key"), "{body}");
            assert!(!body.contains(wrong), "the error echoes the key: {body}");
        } else {
            served += 1;
        }
    }
    // `?code=` works as the header does.
    assert_eq!(get_code(&echo, &echo_key), 200);
    assert_eq!(get_code(&echo, wrong), 401);
    served += 1;
    // Nothing ran for a refused request: only the served ones were executed.
    let executed = host.count("Executed 'Functions.");
    assert_eq!(executed, served, "{}", host.output());

    // /admin/* and the durable webhooks.
    let status = host.url("/admin/host/status");
    assert_eq!(call("GET", &status, None).0, 401);
    assert_eq!(call("GET", &status, Some(&host_key)).0, 401);
    assert_eq!(call("GET", &status, Some(&master)).0, 200);
    assert_eq!(
        call("GET", &host.url("/admin/metrics"), Some(&system)).0,
        401
    );
    let hooks = host.url("/runtime/webhooks/durabletask/instances");
    assert_eq!(call("GET", &hooks, None).0, 401);
    assert_eq!(call("GET", &hooks, Some(&host_key)).0, 401);
    assert_eq!(call("GET", &hooks, Some(&echo_key)).0, 401);
    // Past the key check: no storage here, so the API itself answers 503.
    assert_eq!(call("GET", &hooks, Some(&system)).0, 503);
    assert_eq!(call("GET", &hooks, Some(&master)).0, 503);

    // A key set with the CLI is accepted by the running host (once its
    // cache is older than the 5 s miss re-read), a deleted one stops working
    // within the 60 s refresh, at once on the host that deleted it.
    keys_cli(p.root(), &["set", "ci", "ci-key-given-by-the-operator-01"]);
    poll(
        "the CLI's key to be accepted",
        Duration::from_secs(15),
        || (call("GET", &echo, Some("ci-key-given-by-the-operator-01")).0 == 200).then_some(()),
    );
    let admin = |m: &str, path: &str, body: Option<Value>| {
        let mut r = client()
            .request(m.parse().unwrap(), host.url(path))
            .header("x-functions-key", &master);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
        )
    };
    let (s, doc) = admin("DELETE", "/admin/host/keys/ci", None);
    assert_eq!(s, 204, "{doc}");
    assert_eq!(
        call("GET", &echo, Some("ci-key-given-by-the-operator-01")).0,
        401
    );
    assert!(!keys_cli(p.root(), &["list"]).contains("ci-key-given"));
}

#[test]
fn the_keys_admin_api_has_azures_routes_and_shapes() {
    let p = project();
    let host = p.start(&["--enableAuth"]);
    let master = list_keys(p.root())["master/_master"].clone();
    let admin = |m: &str, path: &str, body: Option<Value>, key: &str| {
        let mut r = client()
            .request(m.parse().unwrap(), host.url(path))
            .header("x-functions-key", key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().unwrap();
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        let text = r.text().unwrap();
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            location,
        )
    };
    let (s, list, _) = admin("GET", "/admin/host/keys", None, &master);
    assert_eq!(s, 200);
    assert_eq!(list["keys"][0]["name"], "default");
    assert_eq!(list["links"][0]["rel"], "self");
    assert!(
        list["links"][0]["href"]
            .as_str()
            .unwrap()
            .ends_with("/admin/host/keys")
    );

    // POST a name: a new value, 201 + Location; again: 200 with another value.
    let (s, made, location) = admin("POST", "/admin/host/keys/deploy", None, &master);
    assert_eq!(s, 201, "{made}");
    assert!(location.unwrap().ends_with("/admin/host/keys/deploy"));
    assert_eq!(made["name"], "deploy");
    let first = made["value"].as_str().unwrap().to_string();
    assert_eq!(first.len(), 56, "{first}");
    let (s, again, _) = admin("POST", "/admin/host/keys/deploy", None, &master);
    assert_eq!(s, 200);
    assert_ne!(again["value"], first.as_str());
    // PUT a value of one's own.
    let mine = "my-own-deploy-key-0123456789";
    let (s, put, _) = admin(
        "PUT",
        "/admin/host/keys/deploy",
        Some(json!({"name": "deploy", "value": mine})),
        &master,
    );
    assert_eq!((s, put["value"].as_str()), (200, Some(mine)));
    let (s, got, _) = admin("GET", "/admin/host/keys/deploy", None, &master);
    assert_eq!((s, got["value"].as_str()), (200, Some(mine)));
    assert_eq!(
        admin(
            "PUT",
            "/admin/host/keys/x",
            Some(json!({"name": "x"})),
            &master
        )
        .0,
        400
    );
    assert_eq!(
        admin(
            "PUT",
            "/admin/host/keys/x",
            Some(json!({"value": "short"})),
            &master
        )
        .0,
        400
    );
    // The new host key calls function-level functions; not the admin API.
    assert_eq!(call("GET", &host.url("/api/echo/a"), Some(mine)).0, 200);
    assert_eq!(admin("GET", "/admin/host/keys", None, mine).0, 401);

    // Function keys.
    let (s, fkeys, _) = admin("GET", "/admin/functions/echo/keys", None, &master);
    assert_eq!(s, 200);
    assert_eq!(fkeys["keys"][0]["name"], "default");
    let (s, k, _) = admin("POST", "/admin/functions/echo/keys/partner", None, &master);
    assert_eq!(s, 201);
    let partner = k["value"].as_str().unwrap().to_string();
    assert_eq!(call("GET", &host.url("/api/echo/a"), Some(&partner)).0, 200);
    assert_eq!(call("GET", &host.url("/api/env"), Some(&partner)).0, 401);
    assert_eq!(
        admin("GET", "/admin/functions/nosuch/keys", None, &master).0,
        404
    );
    assert_eq!(
        admin(
            "DELETE",
            "/admin/functions/echo/keys/partner",
            None,
            &master
        )
        .0,
        204
    );
    assert_eq!(
        admin(
            "DELETE",
            "/admin/functions/echo/keys/partner",
            None,
            &master
        )
        .0,
        404
    );
    assert_eq!(call("GET", &host.url("/api/echo/a"), Some(&partner)).0, 401);

    // System keys; `_master` is the master key and cannot be deleted.
    let (s, sys, _) = admin("GET", "/admin/host/systemkeys", None, &master);
    assert_eq!(s, 200);
    assert_eq!(sys["keys"][0]["name"], "durabletask_extension");
    let (s, m, _) = admin("GET", "/admin/host/systemkeys/_master", None, &master);
    assert_eq!((s, m["value"].as_str()), (200, Some(master.as_str())));
    assert_eq!(
        admin("DELETE", "/admin/host/keys/_master", None, &master).0,
        400
    );
    // Rotating the master key: the old one stops working at once.
    let (s, rotated, _) = admin("POST", "/admin/host/keys/_master", None, &master);
    assert_eq!(s, 201, "{rotated}");
    let new_master = rotated["value"].as_str().unwrap().to_string();
    assert_eq!(admin("GET", "/admin/host/keys", None, &master).0, 401);
    assert_eq!(admin("GET", "/admin/host/keys", None, &new_master).0, 200);
    assert_eq!(list_keys(p.root())["master/_master"], new_master);
    // The store is Azure's host.json.
    let stored: Value =
        serde_json::from_slice(&std::fs::read(p.root().join(".host-secrets/host.json")).unwrap())
            .unwrap();
    assert_eq!(stored["masterKey"]["value"], new_master.as_str());
    assert_eq!(stored["masterKey"]["encrypted"], false);
    assert!(
        stored["functionKeys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "deploy")
    );
    assert!(p.root().join(".host-secrets/echo.json").exists());
    // No key value ever reached the console.
    let out = host.output();
    for secret in [&master, &new_master, &partner, &first] {
        assert!(
            !out.contains(secret.as_str()),
            "a key in the console:\n{out}"
        );
    }
}

#[test]
fn keys_in_blob_storage_survive_restarts_and_are_shared_by_hosts() {
    let azurite = azurite::Azurite::start();
    let settings = format!(
        "[Values]\nAzureWebJobsStorage = \"{}\"\n",
        azurite.connection_string
    );
    let a = project();
    a.write("local.settings.toml", &settings);
    let b = project();
    b.write("local.settings.toml", &settings);
    let mut first = a.start(&["--enableAuth"]);
    first.wait_for(
        "Keys: blob container 'azure-webjobs-secrets' under 'testhubname/'",
        Duration::from_secs(5),
    );
    let keys = list_keys(a.root());
    let master = keys["master/_master"].clone();
    // The other project (another folder, same storage and hub) sees the same keys.
    assert_eq!(list_keys(b.root()), keys);
    let second = b.start(&["--enableAuth"]);
    assert_eq!(call("GET", &second.url("/api/env"), Some(&master)).0, 404);
    // A key made on one host works on the other.
    let made = client()
        .post(first.url("/admin/functions/echo/keys/shared"))
        .header("x-functions-key", &master)
        .send()
        .unwrap();
    assert_eq!(made.status().as_u16(), 201);
    let shared = made.json::<Value>().unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string();
    poll(
        "host B to accept host A's new key",
        Duration::from_secs(15),
        || (call("GET", &second.url("/api/echo/x"), Some(&shared)).0 == 200).then_some(()),
    );
    // A restart keeps every key.
    first.terminate(Duration::from_secs(30));
    let again = a.start(&["--enableAuth"]);
    assert_eq!(call("GET", &again.url("/api/env"), Some(&master)).0, 404);
    assert_eq!(call("GET", &again.url("/api/echo/x"), Some(&shared)).0, 200);
    assert_eq!(list_keys(a.root())["master/_master"], master);
    // Without enforcement (loopback) the same host needs no key.
    drop(again);
    let open = a.start(&[]);
    assert_eq!(call("GET", &open.url("/api/echo/x"), None).0, 200);
}

#[test]
fn keys_are_enforced_beyond_loopback_and_when_asked() {
    let p = project();
    // Loopback, not asked: Core Tools' local behaviour.
    let mut local = p.start(&[]);
    local.wait_for("Keys are not enforced on localhost", Duration::from_secs(5));
    assert_eq!(call("GET", &local.url("/api/echo/x"), None).0, 200);
    assert_eq!(call("GET", &local.url("/admin/host/status"), None).0, 200);
    drop(local);
    // Beyond loopback: always (the test still connects through 127.0.0.1).
    let mut wide = p.start(&["--listen", "0.0.0.0"]);
    wide.wait_for(
        "Keys are enforced (the host listens on 0.0.0.0)",
        Duration::from_secs(5),
    );
    assert_eq!(call("GET", &wide.url("/api/echo/x"), None).0, 401);
    assert_eq!(call("GET", &wide.url("/admin/host/status"), None).0, 401);
    assert_eq!(call("GET", &wide.url("/api/hello"), None).0, 200);
    drop(wide);
    // By the setting.
    p.write("local.settings.toml", "[Host]\nEnableAuth = true\n");
    let mut asked = p.start(&[]);
    asked.wait_for("Keys are enforced (as asked)", Duration::from_secs(5));
    assert_eq!(call("GET", &asked.url("/api/echo/x"), None).0, 401);
}

#[test]
fn secrets_never_reach_the_console_error_bodies_or_other_settings() {
    let p = project();
    // A storage account that cannot be reached, with a key that must stay hidden.
    let account_key = "U2VjcmV0QWNjb3VudEtleUZvclRlc3RzT25seTAwMDA=";
    p.write(
        "local.settings.toml",
        &format!(
            "[Values]\nAzureWebJobsStorage = \"DefaultEndpointsProtocol=http;AccountName=acct;\
             AccountKey={account_key};BlobEndpoint=http://127.0.0.1:9/acct;\
             QueueEndpoint=http://127.0.0.1:9/acct;TableEndpoint=http://127.0.0.1:9/acct\"\n\
             AzureWebJobsSecretStorageType = \"files\"\nGREETING = \"hi\"\n"
        ),
    );
    let mut host = p.start_with_env(
        &["--enableAuth"],
        &[("FNHOST_TEST_NOT_A_SETTING", "host-only")],
    );
    host.wait_for("Host started", Duration::from_secs(10));
    let master = list_keys(p.root())["master/_master"].clone();
    let env = |name: &str| {
        call(
            "GET",
            &host.url(&format!("/api/env?name={name}")),
            Some(&master),
        )
    };
    // A function sees its app settings (the storage connection is one)...
    assert_eq!(env("GREETING"), (200, "hi".to_string()));
    assert!(env("AzureWebJobsStorage").1.contains(account_key));
    // ...but not the host's own environment, nor any key.
    assert_eq!(env("FNHOST_TEST_NOT_A_SETTING").0, 404);
    assert_eq!(env("FNHOST_ENABLE_AUTH").0, 404);
    // The management API fails for want of storage: its error hides the key.
    let (status, body) = call(
        "GET",
        &host.url("/runtime/webhooks/durabletask/instances"),
        Some(&master),
    );
    assert!(status >= 400, "{status} {body}");
    assert!(!body.contains(account_key), "{body}");
    // A function that fails: its 500 hides keys too.
    let (status, body) = call(
        "GET",
        &host.url(&format!("/api/trap?k={master}")),
        Some(&master),
    );
    assert_eq!(status, 500, "{body}");
    assert!(!body.contains(&master), "{body}");
    let out = host.output();
    assert!(
        !out.contains(account_key),
        "the account key in the console:\n{out}"
    );
    assert!(
        !out.contains(&master),
        "the master key in the console:\n{out}"
    );
    // Start-up errors too: a connection string the host cannot parse.
    let bad = project();
    bad.write(
        "local.settings.toml",
        &format!("[Values]\nAzureWebJobsStorage = \"AccountName=acct;AccountKey={account_key};Nonsense\"\n"),
    );
    let out = Command::new(host_bin())
        .args(["start", "--port", "0", "--enableAuth", "--script-root"])
        .arg(bad.root())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("AzureWebJobsStorage"), "{text}");
    assert!(!text.contains(account_key), "{text}");
}

//! The durable client and outbound HTTP from queue, blob and timer functions,
//! on a private Azurite with the real `host`: messages and blobs written by the
//! real Azure Storage SDK for Python start orchestrations and raise events
//! (checked over the management API), and call an allowed loopback server and
//! a forbidden origin.

#[path = "support/azurite.rs"]
mod azurite;
#[path = "durable_support.rs"]
mod durable_support;
mod support;
#[path = "triggers_support.rs"]
mod triggers_support;
#[path = "support/upstream.rs"]
mod upstream;

use std::time::Duration;

use azurite::Azurite;
use durable_support::finished;
use serde_json::{Value, json};
use support::{Host, Project, client};
use triggers_support::sdk;
use upstream::Upstream;

const DEADLINE: Duration = Duration::from_secs(60);
const FUNCTIONS: [&str; 3] = ["queue_client", "blob_client", "timer_client"];

/// The fixture on `azurite`, the timer's job in its app setting; queues polled
/// at least every 2 s.
fn clients(azurite: &Azurite, timer_job: &Value) -> Project {
    let p = durable_support::project(
        azurite,
        &["trigger_clients"],
        &format!("TimerClientJob = '{timer_job}'"),
    );
    p.write(
        "host.toml",
        &format!(
            "{}[extensions.queues]\nmaxPollingInterval = \"00:00:02\"\n",
            durable_support::HOST_TOML
        ),
    );
    p
}

/// Start `WaitForGo` as `id` over the management API.
fn start_waiting(host: &Host, id: &str) {
    let r = client()
        .post(host.url(&format!(
            "/runtime/webhooks/durabletask/orchestrators/WaitForGo/{id}"
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap());
}

/// The output of instance `id` once it completed, from the management API.
fn output(host: &Host, id: &str) -> Value {
    let done = finished(
        &host.url(&format!("/runtime/webhooks/durabletask/instances/{id}")),
        DEADLINE,
    );
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    done["output"].clone()
}

#[test]
fn queue_blob_and_timer_functions_start_orchestrations_and_raise_events() {
    let azurite = Azurite::start();
    // The timer runs once at start: it starts one instance and raises the
    // event the other waits for, which it started itself.
    let p = clients(
        &azurite,
        &json!([
            {"start": "WaitForGo", "id": "timer-wait"},
            {"raise": "go", "id": "timer-wait", "data": "from the timer"},
            {"start": "Echo", "id": "timer-echo", "input": {"from": "timer"}},
        ]),
    );
    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    start_waiting(&host, "queue-wait");
    start_waiting(&host, "blob-wait");
    let job = |from: &str| {
        json!([
            {"start": "Echo", "id": format!("{from}-echo"), "input": {"from": from}},
            {"raise": "go", "id": format!("{from}-wait"), "data": format!("from the {from}")},
        ])
        .to_string()
    };
    sdk(&azurite, &["send", "client-jobs", &job("queue")]);
    sdk(
        &azurite,
        &["upload", "client-jobs", "job.json", &job("blob")],
    );

    for from in ["queue", "blob", "timer"] {
        assert_eq!(
            output(&host, &format!("{from}-echo")),
            json!({"from": from})
        );
        assert_eq!(
            output(&host, &format!("{from}-wait")),
            json!(format!("from the {from}"))
        );
    }
    for function in FUNCTIONS {
        assert_eq!(
            host.count(&format!("Executed 'Functions.{function}' (Succeeded")),
            1,
            "{}",
            host.output()
        );
        host.wait_for(&format!("{function}: started Echo as "), DEADLINE);
    }
}

#[test]
fn queue_blob_and_timer_functions_call_allowed_hosts_and_are_refused_others() {
    let upstream = Upstream::start();
    let allowed = upstream.url("/hello");
    // The same server by a name that allowedOutboundHosts does not list.
    let forbidden = format!("http://localhost:{}/hello", upstream.port);
    let job = json!([{"fetch": allowed}, {"fetch": forbidden}]);
    let azurite = Azurite::start();
    let p = clients(&azurite, &job);
    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    sdk(&azurite, &["send", "client-jobs", &job.to_string()]);
    sdk(
        &azurite,
        &["upload", "client-jobs", "job.json", &job.to_string()],
    );

    for function in FUNCTIONS {
        host.wait_for(
            &format!("{function}: fetched {allowed}: 200 hello from upstream"),
            DEADLINE,
        );
        let refused = host.wait_for(
            &format!("{function}: fetch of {forbidden} failed: "),
            DEADLINE,
        );
        assert!(
            refused.contains(&format!(
                "the host refused the request to {forbidden} (HttpRequestDenied): add its origin"
            )) && refused.contains("allowedOutboundHosts"),
            "{refused}"
        );
        let console = host.wait_for(
            &format!("Outbound HTTP request of 'Functions.{function}'"),
            DEADLINE,
        );
        assert!(
            console.contains(&format!("to {forbidden} refused"))
                && console.contains("not in allowedOutboundHosts [\"http://127.0.0.1:*\"]"),
            "{console}"
        );
    }
    assert_eq!(
        upstream.requests(),
        3,
        "the allowed requests reached the server, the refused ones did not"
    );
}

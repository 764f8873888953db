//! blobTrigger against a private Azurite and the real `host` binary, with
//! blobs uploaded by the real Azure Storage SDK for Python.

#[path = "support/azurite.rs"]
mod azurite;
mod support;
#[path = "triggers_support.rs"]
mod triggers_support;

use std::collections::BTreeMap;
use std::time::Duration;

use azurite::Azurite;
use base64::Engine as _;
use serde_json::Value;
use support::{Host, poll};
use triggers_support::{HOST_TOML, project, receive, sdk};

const DEADLINE: Duration = Duration::from_secs(60);

/// The `blob=` of each `image …` line the fixture logged.
fn image_runs(host: &Host) -> Vec<String> {
    host.output()
        .lines()
        .filter_map(|l| l.split_once("image container=images blob=").map(|(_, r)| r))
        .map(|r| r.split(' ').next().unwrap().to_string())
        .collect()
}

fn upload(azurite: &Azurite, container: &str, name: &str, text: &str) {
    sdk(azurite, &["upload", container, name, text]);
}

#[test]
fn a_blob_upload_runs_the_function_with_its_bound_parameters_and_properties() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["blob_fixtures"], HOST_TOML);
    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    // The container does not exist yet: created after the host started.
    sdk(
        &azurite,
        &["upload", "images", "cat.photo.png", "meow", "image/png"],
    );
    upload(&azurite, "images", "no-extension", "ignored: no match");
    let line = host.wait_for("image container=images blob=cat.photo.png", DEADLINE);
    for part in [
        "name=cat.photo ",
        "ext=png ",
        "length=4 ",
        "type=image/png ",
        "modified=true ",
        "text=meow",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert!(line.contains("etag=0x"), "{line}");
    let copied = poll("the output blob", DEADLINE, || {
        triggers_support::sdk_status(&azurite, &["download", "images-out", "cat.photo.png.txt"])
            .0
            .eq(&0)
            .then(|| sdk(&azurite, &["download", "images-out", "cat.photo.png.txt"]))
    });
    assert_eq!(copied, "meow");
    host.wait_for(
        "New blob detected(image/png): images/cat.photo.png",
        DEADLINE,
    );
    assert_eq!(image_runs(&host), vec!["cat.photo.png"]);
    assert!(
        !host.output().contains("failed (retrying)"),
        "{}",
        host.output()
    );
    // Azure's receipt, complete (no IncompleteInvocationId).
    let receipts = sdk(&azurite, &["list", "azure-webjobs-hosts", "blobreceipts/"]);
    assert!(
        receipts
            .lines()
            .any(|l| l.contains("/Host.Functions.on_image/\"0x")
                && l.ends_with("\"/images/cat.photo.png")),
        "{receipts}"
    );
}

#[test]
fn a_blob_runs_once_across_a_restart_and_again_when_overwritten() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["blob_fixtures"], HOST_TOML);
    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    upload(&azurite, "images", "a.png", "first");
    host.wait_for("blob=a.png", DEADLINE);
    host.terminate(DEADLINE);

    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    // b.png's run proves a scan that also listed a.png.
    upload(&azurite, "images", "b.png", "other");
    host.wait_for("blob=b.png", DEADLINE);
    assert_eq!(
        image_runs(&host),
        vec!["b.png"],
        "a.png ran before the restart"
    );

    upload(&azurite, "images", "a.png", "second");
    let line = host.wait_for("blob=a.png", DEADLINE);
    assert!(line.contains("text=second"), "{line}");
    assert_eq!(image_runs(&host), vec!["b.png", "a.png"]);
}

#[test]
fn two_hosts_process_each_blob_once() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["blob_fixtures"], HOST_TOML);
    let mut a = p.start(&[]);
    let mut b = p.start(&[]);
    a.wait_for("Host started", DEADLINE);
    b.wait_for("Host started", DEADLINE);
    let n = 30;
    sdk(
        &azurite,
        &[
            "upload-many",
            "images",
            "img-{i}.png",
            "picture {i}",
            &n.to_string(),
        ],
    );
    poll("every blob processed", DEADLINE, || {
        (image_runs(&a).len() + image_runs(&b).len() >= n).then_some(())
    });
    // A last one after: a second run of any of them would have happened by now.
    upload(&azurite, "images", "last.png", "x");
    poll("the last blob", DEADLINE, || {
        (image_runs(&a).len() + image_runs(&b).len() > n).then_some(())
    });
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for name in image_runs(&a).into_iter().chain(image_runs(&b)) {
        *counts.entry(name).or_default() += 1;
    }
    assert_eq!(counts.len(), n + 1, "{counts:?}");
    assert!(
        counts.values().all(|c| *c == 1),
        "each blob once: {counts:?}"
    );
}

#[test]
fn a_failing_blob_is_tried_five_times_then_named_in_the_poison_queue() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["blob_fixtures"], HOST_TOML);
    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    upload(&azurite, "broken", "doc.txt", "bad");
    let poisoned = poll("a poison message", DEADLINE, || {
        let got = receive(&azurite, "webjobs-blobtrigger-poison");
        (!got.is_empty()).then_some(got)
    });
    let text = base64::engine::general_purpose::STANDARD
        .decode(&poisoned[0].0)
        .unwrap();
    let message: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(message["Type"], "BlobTrigger");
    assert_eq!(message["FunctionId"], "Host.Functions.always_fails");
    assert_eq!(message["ContainerName"], "broken");
    assert_eq!(message["BlobName"], "doc.txt");
    assert!(
        message["ETag"].as_str().unwrap().starts_with("\"0x"),
        "{message}"
    );
    assert_eq!(
        host.count("Executed 'Functions.always_fails' (Failed"),
        5,
        "{}",
        host.output()
    );
    // Not tried again: another blob's run proves a later scan.
    upload(&azurite, "images", "after.png", "x");
    host.wait_for("blob=after.png", DEADLINE);
    assert_eq!(host.count("Executed 'Functions.always_fails' (Failed"), 5);
}

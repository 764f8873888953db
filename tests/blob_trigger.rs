//! blobTrigger against a private Azurite and the real `host` binary, with
//! blobs uploaded by the real Azure Storage SDK for Python.

#[path = "support/azurite.rs"]
mod azurite;
mod support;
#[path = "triggers_support.rs"]
mod triggers_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use azurite::Azurite;
use base64::Engine as _;
use serde_json::Value;
use support::{Host, poll};
use triggers_support::{HOST_TOML, project, receive, sdk};

const DEADLINE: Duration = Duration::from_secs(60);

/// Blobs already processed in the scan-cost test: enough that reading each
/// would dwarf a listing, few enough to process in under 20 s on 2 cores
/// (about 60 blobs/s here). 10,000 (two listing pages) are measured by
/// `./dev bench blob`.
const OLD_BLOBS: usize = 1_000;

const BLOB_CALLS: &str = "fnhost_trigger_storage_transactions_total{service=\"blob\"}";
const SCANS: &str = "fnhost_blob_trigger_scans_total";

/// Blob storage calls per scan over the next `n` scans of `host` (from the
/// end of a scan, after the start-up listing of the receipts); and how many were seen.
fn per_scan(host: &Host, n: u64) -> (f64, u64) {
    let [calls, scans] = poll("a first scan", DEADLINE, || {
        let now = triggers_support::metrics(host, [BLOB_CALLS, SCANS]);
        (now[1] >= 1).then_some(now)
    });
    let [calls_after, scans_after] = poll(&format!("{n} more scans"), DEADLINE, || {
        let now = triggers_support::metrics(host, [BLOB_CALLS, SCANS]);
        (now[1] >= scans + n).then_some(now)
    });
    let seen = scans_after - scans;
    ((calls_after - calls) as f64 / seen as f64, seen)
}

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

#[test]
fn a_blob_whose_host_is_killed_mid_run_is_run_to_completion_by_another_host() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["blob_fixtures"], HOST_TOML);
    let mut hosts = [p.start(&[]), p.start(&[])];
    for h in &mut hosts {
        h.wait_for("Host started", DEADLINE);
    }
    upload(&azurite, "slow", "job.txt", "the job");
    let started = "slow started blob=job.txt";
    let runner = poll("one host to start the blob", DEADLINE, || {
        (0..2).find(|i| hosts[*i].count(started) > 0)
    });
    hosts[runner].kill();
    let killed = Instant::now();
    // Let it finish from now on: the next run finds the go-ahead at once.
    upload(&azurite, "slow-control", "job.txt", "go");
    let other = &mut hosts[1 - runner];
    assert_eq!(other.count(started), 0, "one host runs a version at a time");
    let [calls_before] = triggers_support::metrics(other, [BLOB_CALLS]);

    // The dead host's receipt lease (60 s, renewed every 20 s) lapses; the
    // other host's next try takes it and runs the version again.
    other.wait_for("slow finished blob=job.txt", Duration::from_secs(150));
    let took = killed.elapsed();
    let [calls_after] = triggers_support::metrics(other, [BLOB_CALLS]);
    let per_minute = (calls_after - calls_before) as f64 * 60.0 / took.as_secs_f64();
    eprintln!(
        "blob takeover: the other host finished the blob {:.1} s after the runner's SIGKILL \
         ({per_minute:.0} blob calls a minute meanwhile, its three listeners included)",
        took.as_secs_f64()
    );
    // Three containers listed every 10 s once idle, and the held version
    // tried every 5-10 s (two calls): about 30 a minute, not a try every scan.
    assert!(
        per_minute < 60.0,
        "{per_minute} blob calls a minute while waiting"
    );
    assert!(
        took > Duration::from_secs(30),
        "the dead host's lease was respected: {took:?}"
    );
    assert!(
        took < Duration::from_secs(100),
        "took {took:?}; the lease lapses within 60 s"
    );
    assert_eq!(other.count(started), 1, "{}", other.output());
    assert_eq!(
        sdk(&azurite, &["download", "slow-out", "job.txt"]),
        "the job"
    );
    // The receipt is complete: no IncompleteInvocationId; the killed run was attempt 1.
    let receipts = triggers_support::metadata(&azurite, "azure-webjobs-hosts", "blobreceipts/");
    let (_, meta) = receipts
        .iter()
        .find(|(name, _)| {
            name.contains("/Host.Functions.slow_blob/") && name.ends_with("/slow/job.txt")
        })
        .unwrap_or_else(|| panic!("a receipt for slow/job.txt: {receipts:?}"));
    assert!(!meta.contains_key("incompleteinvocationid"), "{meta:?}");
    assert_eq!(
        meta.get("attempts").map(String::as_str),
        Some("2"),
        "{meta:?}"
    );
    // And it does not run again.
    upload(&azurite, "images", "after.png", "x");
    other.wait_for("blob=after.png", DEADLINE);
    assert_eq!(other.count(started), 1);
}

#[test]
fn processed_blobs_cost_one_listing_per_scan_and_do_not_run_again_at_start() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["blob_fixtures"], HOST_TOML);
    // on_image alone, so that every scan is of one container.
    p.write(
        "functions/blob_fixtures/function.toml",
        "[[functions]]\nname = \"on_image\"\n\
         trigger = { type = \"blobTrigger\", path = \"images/{name}.{ext}\" }\n",
    );
    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    // Before any blob (the container does not exist yet).
    let (empty, _) = per_scan(&host, 2);

    let uploaded = Instant::now();
    sdk(
        &azurite,
        &[
            "upload-many",
            "images",
            "old-{i}.png",
            "old {i}",
            &OLD_BLOBS.to_string(),
        ],
    );
    let [before] = triggers_support::metrics(&host, [BLOB_CALLS]);
    poll("every old blob processed", Duration::from_secs(120), || {
        (host.count("Executed 'Functions.on_image' (Succeeded") >= OLD_BLOBS).then_some(())
    });
    let [after] = triggers_support::metrics(&host, [BLOB_CALLS]);
    eprintln!(
        "{OLD_BLOBS} blobs uploaded and processed in {:.1} s, {:.2} blob calls per blob \
         (receipt, lease, reads, output blob, completion)",
        uploaded.elapsed().as_secs_f64(),
        (after - before) as f64 / OLD_BLOBS as f64
    );
    // Scans are 10 s apart by now (nothing new for a while).
    let (full, scans) = per_scan(&host, 2);
    eprintln!(
        "blob calls per scan: {empty:.2} without blobs, {full:.2} with {OLD_BLOBS} processed \
         ({scans} scans)"
    );
    // One listing per scan (±1 call at the window's edges), whatever the count.
    assert!(full <= 1.5, "{full} calls per scan with {OLD_BLOBS} blobs");
    assert!(empty <= 1.5, "{empty} calls per scan without blobs");
    assert_eq!(image_runs(&host).len(), OLD_BLOBS, "each once");
    host.terminate(DEADLINE);

    // A restart learns the receipts in one listing and runs none again; its
    // first scans (1 s, then 2 s apart) cost one listing each.
    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    let (restarted, _) = per_scan(&host, 2);
    let [start_up, scans] = triggers_support::metrics(&host, [BLOB_CALLS, SCANS]);
    eprintln!(
        "after the restart: {start_up} blob calls until the end of scan {scans} (receipts \
         listed once), {restarted:.2} per scan"
    );
    assert!(
        start_up <= scans + 2,
        "{start_up} blob calls for {scans} scans and one listing of the receipts"
    );
    assert!(
        restarted <= 1.5,
        "{restarted} calls per scan after the restart"
    );
    assert_eq!(host.count("Executing 'Functions.on_image'"), 0);
    upload(&azurite, "images", "new.png", "new");
    host.wait_for("blob=new.png", DEADLINE);
    assert_eq!(image_runs(&host), vec!["new.png"]);
}

#[test]
fn a_slow_blob_does_not_hold_up_the_others() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["blob_fixtures"], HOST_TOML);
    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    upload(&azurite, "slow", "long.txt", "long");
    host.wait_for("slow started blob=long.txt", DEADLINE);
    // Scans go on while it runs: a new blob of the same listener's kind runs now.
    upload(&azurite, "slow", "quick.txt", "quick");
    upload(&azurite, "slow-control", "quick.txt", "go");
    host.wait_for("slow finished blob=quick.txt", DEADLINE);
    assert_eq!(host.count("slow finished blob=long.txt"), 0);
    upload(&azurite, "slow-control", "long.txt", "go");
    host.wait_for("slow finished blob=long.txt", DEADLINE);
}

//! timerTrigger against a private Azurite and the real `host` binary: the
//! heartbeat sample on a fast schedule, the schedule status blob, the
//! listener lock across two hosts, past-due and start-up runs.

#[path = "support/azurite.rs"]
mod azurite;
mod support;
#[path = "triggers_support.rs"]
mod triggers_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use azurite::Azurite;
use serde_json::Value;
use support::{Project, poll};
use triggers_support::{HOST_TOML, project, sdk};

const DEADLINE: Duration = Duration::from_secs(60);
const HOST_ID: &str = "timer-tests";
const STATUS: &str = "timers/timer-tests/Host.Functions.heartbeat/status";

/// The heartbeat sample with `trigger` instead of its own, under a fixed host id.
fn heartbeat(azurite: &Azurite, trigger: &str) -> Project {
    let p = project(azurite, &["heartbeat"], HOST_TOML);
    p.write(
        "functions/heartbeat/function.toml",
        &format!("[[functions]]\nname = \"heartbeat\"\ntrigger = {trigger}\n"),
    );
    p.write(
        "local.settings.toml",
        &format!(
            "[Values]\nAzureWebJobsStorage = \"{}\"\nAzureFunctionsWebHost__hostid = \"{HOST_ID}\"\n",
            azurite.connection_string
        ),
    );
    p
}

/// The (scheduled ms, past due) of each `heartbeat scheduled=… past_due=…` line.
fn runs(output: &str) -> Vec<(u64, bool)> {
    output
        .lines()
        .filter_map(|l| l.split_once("heartbeat scheduled=").map(|(_, r)| r))
        .map(|r| {
            let (at, due) = r.split_once(" past_due=").unwrap();
            (at.trim().parse().unwrap(), due.trim().starts_with("true"))
        })
        .collect()
}

fn status(azurite: &Azurite) -> Value {
    serde_json::from_str(&sdk(azurite, &["download", "azure-webjobs-hosts", STATUS])).unwrap()
}

#[test]
fn timer_occurrences_run_once_across_two_hosts() {
    let azurite = Azurite::start();
    let p = heartbeat(
        &azurite,
        r#"{ type = "timerTrigger", schedule = "*/2 * * * * *" }"#,
    );
    let mut a = p.start(&[]);
    let mut b = p.start(&[]);
    a.wait_for("Host started", DEADLINE);
    b.wait_for("Host started", DEADLINE);
    poll("six occurrences", DEADLINE, || {
        (runs(&a.output()).len() + runs(&b.output()).len() >= 6).then_some(())
    });
    let mut all: Vec<u64> = runs(&a.output())
        .into_iter()
        .chain(runs(&b.output()))
        .map(|(at, due)| {
            assert!(!due, "no occurrence was missed");
            at
        })
        .collect();
    all.sort();
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "an occurrence ran twice: {all:?}"
    );
    for pair in all.windows(2) {
        assert_eq!(pair[1] - pair[0], 2000, "every 2 s, none skipped: {all:?}");
    }
    assert!(
        all.iter().all(|t| t % 2000 == 0),
        "on the schedule: {all:?}"
    );
    // Only the lock holder runs the schedule.
    assert!(
        runs(&a.output()).is_empty() || runs(&b.output()).is_empty(),
        "one host runs the schedule"
    );
    // Azure's ScheduleStatus blob.
    let s = status(&azurite);
    for key in ["Last", "Next", "LastUpdated"] {
        assert!(s[key].is_string(), "{key} in {s}");
    }
    // The output bindings of the sample ran too.
    let last: Value =
        serde_json::from_str(&sdk(&azurite, &["download", "heartbeat", "last.json"])).unwrap();
    assert_eq!(last["isPastDue"], false);
}

#[test]
fn an_occurrence_missed_while_no_host_ran_runs_once_at_start_as_past_due() {
    let azurite = Azurite::start();
    // Once a year; the status says the last run was 2019's and 2020's is due.
    let p = heartbeat(
        &azurite,
        r#"{ type = "timerTrigger", schedule = "0 0 0 1 1 *" }"#,
    );
    sdk(
        &azurite,
        &[
            "upload",
            "azure-webjobs-hosts",
            STATUS,
            r#"{"Last":"2019-01-01T00:00:00+00:00","Next":"2020-01-01T00:00:00+00:00","LastUpdated":"2019-01-01T00:00:00.1+00:00"}"#,
        ],
    );
    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    host.wait_for("past due: it was due while no host ran it", DEADLINE);
    host.wait_for(
        "The next 5 occurrences of the 'Functions.heartbeat'",
        DEADLINE,
    );
    assert_eq!(runs(&host.output()), vec![(1_577_836_800_000, true)]);
    assert!(
        host.output()
            .contains("Executed 'Functions.heartbeat' (Succeeded")
    );
    let s = status(&azurite);
    assert_eq!(s["Last"], "2020-01-01T00:00:00.000Z", "{s}");
    assert!(
        s["Next"].as_str().unwrap() > "2026-01-01",
        "the next occurrence is a future New Year: {s}"
    );
    // A restart does not run it again.
    host.terminate(DEADLINE);
    let mut again = p.start(&[]);
    again.wait_for(
        "The next 5 occurrences of the 'Functions.heartbeat'",
        DEADLINE,
    );
    assert_eq!(runs(&again.output()), vec![]);
}

#[test]
fn run_on_startup_runs_once_when_the_host_starts() {
    let azurite = Azurite::start();
    let p = heartbeat(
        &azurite,
        r#"{ type = "timerTrigger", schedule = "0 0 0 1 1 *", runOnStartup = true }"#,
    );
    let mut host = p.start(&[]);
    host.wait_for(
        "The next 5 occurrences of the 'Functions.heartbeat'",
        DEADLINE,
    );
    let got = runs(&host.output());
    assert_eq!(got.len(), 1, "{}", host.output());
    assert!(!got[0].1, "a start-up run is not past due");
}

#[test]
fn a_timespan_schedule_repeats() {
    let azurite = Azurite::start();
    let p = heartbeat(
        &azurite,
        r#"{ type = "timerTrigger", schedule = "00:00:01", useMonitor = false }"#,
    );
    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    poll("three occurrences", DEADLINE, || {
        (runs(&host.output()).len() >= 3).then_some(())
    });
    let got = runs(&host.output());
    assert_eq!(got[1].0 - got[0].0, 1000, "{got:?}");
    // No status blob without useMonitor.
    let (code, _) =
        triggers_support::sdk_status(&azurite, &["download", "azure-webjobs-hosts", STATUS]);
    assert_eq!(code, 3);
}

/// `ms` since the Unix epoch as the status blob writes it (`2026-01-01T00:00:05.000Z`).
fn rfc3339_ms(ms: u64) -> String {
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

#[test]
fn rfc3339_ms_formats_as_the_status_blob() {
    assert_eq!(rfc3339_ms(1_577_836_800_000), "2020-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_ms(1_709_210_096_789), "2024-02-29T12:34:56.789Z");
}

#[test]
fn when_the_lock_holder_is_killed_the_other_host_takes_the_schedule_over() {
    let azurite = Azurite::start();
    let p = heartbeat(
        &azurite,
        r#"{ type = "timerTrigger", schedule = "*/5 * * * * *" }"#,
    );
    let mut hosts = [p.start(&[]), p.start(&[])];
    for h in &mut hosts {
        h.wait_for("Host started", DEADLINE);
    }
    let holder = poll("the first occurrence", DEADLINE, || {
        (0..2).find(|i| !runs(&hosts[*i].output()).is_empty())
    });
    // Kill it between occurrences: once the status records its last run, which
    // the next occurrence (5 s later) is not yet.
    poll("the status of the holder's last run", DEADLINE, || {
        let last = runs(&hosts[holder].output()).last()?.0;
        (status(&azurite)["Last"] == rfc3339_ms(last)).then_some(())
    });
    hosts[holder].kill();
    let killed = Instant::now();
    let before = runs(&hosts[holder].output());
    let next = status(&azurite)["Next"].as_str().unwrap().to_string();
    let other = &mut hosts[1 - holder];
    assert!(
        runs(&other.output()).is_empty(),
        "one host ran the schedule"
    );

    // The lease (60 s, renewed every 20 s) lapses, then the other host's next
    // try (every 30 s) takes it: the design's bound is about 90 s.
    let line = other.wait_for("heartbeat scheduled=", Duration::from_secs(180));
    let took = killed.elapsed();
    eprintln!(
        "timer takeover: the other host ran the schedule {:.1} s after the holder's SIGKILL",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(120),
        "took {took:?}; the design says about 90 s"
    );
    poll("two more occurrences on the new holder", DEADLINE, || {
        (runs(&other.output()).len() >= 3).then_some(())
    });
    let after = runs(&other.output());
    // The occurrence due while no host held the lock runs once, past due ...
    assert_eq!(rfc3339_ms(after[0].0), next, "{line}");
    assert!(after[0].1, "the missed occurrence is past due: {after:?}");
    // ... then the schedule goes on, every 5 s, none run by both hosts.
    for pair in after.windows(2) {
        assert!(pair[1].0 > pair[0].0, "{after:?}");
    }
    for (at, due) in &after[1..] {
        assert!(!due, "{after:?}");
        assert_eq!(at % 5000, 0, "{after:?}");
    }
    let last_before = before.last().unwrap().0;
    assert!(
        after[0].0 > last_before,
        "no occurrence of the killed host ran again: {before:?} then {after:?}"
    );
}

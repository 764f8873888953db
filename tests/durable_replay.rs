//! The replay property test: random orchestrations (activities that succeed
//! or fail, retries, timers, external events, when_all / when_any,
//! sub-orchestrations, continue-as-new) generated from a seed, each run once
//! on a clean host and once on two hosts that are SIGKILLed at random points
//! (one of them, or both) while a third party delivers copies of the task
//! hub's queue messages. Both runs must give every program the output its
//! definition implies, and record the same histories (normalized: see
//! replay/history.rs).
//!
//! Short run (the suite): one seed, 8 programs, 3 kills. Long run:
//!   REPLAY_RUNS=20 REPLAY_KILLS=6 cargo test -p host --test durable_replay -- --nocapture
//! A failure prints its seed; `REPLAY_SEED=<seed>` runs the same programs and
//! the same kill schedule again (where the kills land still depends on
//! timing). The settings: REPLAY_SEED (random by default), REPLAY_RUNS (1;
//! seeds SEED, SEED+1, ...), REPLAY_PROGRAMS (8), REPLAY_KILLS (3),
//! REPLAY_DUPLICATES (percent of messages copied, 30), REPLAY_VERBOSE (set:
//! the hosts run with --verbose, for the report).

#[path = "support/azurite.rs"]
mod azurite;
#[path = "replay/cluster.rs"]
mod cluster;
#[path = "replay/duplicator.rs"]
mod duplicator;
#[path = "durable_support.rs"]
mod durable_support;
#[path = "replay/generate.rs"]
mod generate;
#[path = "replay/history.rs"]
mod history;
#[path = "fixtures/replay_fixtures/src/program.rs"]
mod program;
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use azurite::Azurite;
use cluster::Cluster;
use durable_support::{HOST_TOML, project};
use generate::{EventPlan, Rng};
use program::{Program, event_data};
use serde_json::{Value, json};

/// A clean run of 8 programs takes about 20 s.
const CLEAN_DEADLINE: Duration = Duration::from_secs(180);
/// Each kill stalls the victim's partitions for up to ~45 s (30 s leases,
/// then the messages it held come back after their 5 s visibility).
const CHAOS_DEADLINE: Duration = Duration::from_secs(420);
const PARTITIONS: u32 = 4;

struct Settings {
    seed: u64,
    runs: u64,
    programs: usize,
    kills: usize,
    duplicates: u32,
}

fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Settings {
        let random = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            % 1_000_000;
        Settings {
            seed: setting("REPLAY_SEED", random),
            runs: setting("REPLAY_RUNS", 1),
            programs: setting("REPLAY_PROGRAMS", 8) as usize,
            kills: setting("REPLAY_KILLS", 3) as usize,
            duplicates: setting("REPLAY_DUPLICATES", 30) as u32,
        }
    }
}

#[test]
fn random_orchestrations_record_the_same_histories_under_kills_and_redeliveries() {
    let settings = Settings::from_env();
    for seed in settings.seed..settings.seed + settings.runs {
        one_seed(seed, &settings);
    }
}

/// What one run of the programs ended with.
struct Run {
    /// Per program: its runtime status and output, or why it did not finish.
    statuses: Vec<Result<(String, Value), String>>,
    histories: Vec<history::Histories>,
    /// Per program: each of its instances' status (runtime status and output).
    instances: Vec<BTreeMap<String, Value>>,
    logs: String,
    /// Lines about what the chaos did.
    chaos: Vec<String>,
    took: Duration,
}

fn one_seed(seed: u64, settings: &Settings) {
    println!(
        "replay seed {seed}: REPLAY_SEED={seed} cargo test -p host --test durable_replay runs it again"
    );
    let mut rng = Rng::new(seed);
    let programs: Vec<(Program, Vec<EventPlan>)> = (0..settings.programs)
        .map(|_| generate::program(&mut rng))
        .collect();
    let sessions = rng.chance(50);
    let azurite = Azurite::start();
    let clean = run(&azurite, "Clean", &programs, None, settings);
    let chaos = run(
        &azurite,
        "Chaos",
        &programs,
        Some((rng.next_u64(), sessions)),
        settings,
    );

    let mut failures = Vec::new();
    for (i, (program, _)) in programs.iter().enumerate() {
        let (status, output) = generate::expected_status(program);
        let expected = Ok((status.to_string(), output));
        for (name, r) in [("clean", &clean), ("chaos", &chaos)] {
            if r.statuses[i] != expected {
                failures.push(format!(
                    "p{i}, {name} run: ended {:?}, its program says {:?}",
                    r.statuses[i], expected
                ));
            }
            for p in history::problems(&r.histories[i]) {
                failures.push(format!("p{i}, {name} run: {p}"));
            }
        }
        if clean.instances[i] != chaos.instances[i] {
            failures.push(format!(
                "p{i}: its instances ended differently (status code, runtime status, output):\n  \
                 clean run: {:?}\n  chaos run: {:?}",
                clean.instances[i], chaos.instances[i]
            ));
        }
        if let Some(diff) = history::diff(&clean.histories[i], &chaos.histories[i]) {
            failures.push(format!(
                "p{i}: the histories differ between the runs\n{diff}"
            ));
        }
    }
    let instances: usize = chaos.histories.iter().map(|h| h.len()).sum();
    println!(
        "seed {seed}: {} programs ({instances} instances), clean run {:.0?}, chaos run {:.0?} \
         (extended sessions {sessions}):\n  {}",
        programs.len(),
        clean.took,
        chaos.took,
        chaos.chaos.join("\n  ")
    );
    if failures.is_empty() {
        return;
    }
    let report = support::repo()
        .join("target/replay-failures")
        .join(format!("seed-{seed}.txt"));
    let programs_text: Vec<String> = programs
        .iter()
        .enumerate()
        .map(|(i, (p, _))| format!("p{i}: {}", serde_json::to_string_pretty(p).unwrap()))
        .collect();
    std::fs::create_dir_all(report.parent().unwrap()).unwrap();
    std::fs::write(
        &report,
        format!(
            "seed {seed}\n\n{}\n\n--- programs\n{}\n\n--- chaos\n{}\n\n--- chaos hosts\n{}\n\n--- clean host\n{}\n",
            failures.join("\n\n"),
            programs_text.join("\n"),
            chaos.chaos.join("\n"),
            chaos.logs,
            clean.logs
        ),
    )
    .unwrap();
    // The console gets the start of the first failures; the report has all.
    let first: Vec<String> = failures
        .iter()
        .take(3)
        .map(|f| {
            let lines: Vec<&str> = f.lines().collect();
            let mut s = lines
                .iter()
                .take(60)
                .copied()
                .collect::<Vec<_>>()
                .join("\n");
            if lines.len() > 60 {
                s.push_str("\n  ... (the rest in the report)");
            }
            s
        })
        .collect();
    panic!(
        "replay seed {seed}: {} failure(s); the first:\n{}\n\nThe programs, the chaos and \
         the hosts' output: {}\nAgain: REPLAY_SEED={seed} cargo test -p host --test durable_replay",
        failures.len(),
        first.join("\n\n"),
        report.display()
    );
}

/// Run every program on the hub `hub`: on one host, or (with `chaos`: its
/// seed and whether extended sessions are on) on two hosts under kills and
/// redeliveries.
fn run(
    azurite: &Azurite,
    hub: &str,
    programs: &[(Program, Vec<EventPlan>)],
    chaos: Option<(u64, bool)>,
    settings: &Settings,
) -> Run {
    let p = project(azurite, &["replay_fixtures"], "");
    let mut toml = HOST_TOML.replace("hubName = \"TestHub\"", &format!("hubName = \"{hub}\""));
    if let Some((_, sessions)) = chaos {
        // Few activity slots: activities also go through the work-item queue.
        toml = toml.replace(
            "[extensions.durableTask]\n",
            &format!(
                "[extensions.durableTask]\nmaxConcurrentActivityFunctions = 2\n\
                 extendedSessionsEnabled = {sessions}\n"
            ),
        );
    }
    p.write("host.toml", &toml);
    let started = Instant::now();
    // REPLAY_VERBOSE=1: the hosts' debug lines (each episode and checkpoint) in the report.
    let args = if std::env::var_os("REPLAY_VERBOSE").is_some() {
        vec!["--verbose"]
    } else {
        Vec::new()
    };
    let cluster = Cluster::start(p, if chaos.is_some() { 2 } else { 1 }, args);
    let mut chaos_log = Vec::new();
    let statuses = match chaos {
        None => run_programs(&cluster, programs, Instant::now() + CLEAN_DEADLINE),
        Some((seed, _)) => {
            let end = Instant::now() + Duration::from_secs(60);
            while !cluster.balanced() {
                assert!(
                    Instant::now() < end,
                    "the two hosts did not share the partitions within 60 s:\n{}",
                    cluster.logs()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            let lower = hub.to_ascii_lowercase();
            let mut queues: Vec<String> = (0..PARTITIONS)
                .map(|i| format!("{lower}-control-{i:02}"))
                .collect();
            queues.push(format!("{lower}-workitems"));
            let mut duplicator = duplicator::Duplicator::start(
                &azurite.connection_string,
                seed,
                settings.duplicates,
                8,
                &queues,
            );
            let done = AtomicBool::new(false);
            let mut rng = Rng::new(seed);
            let (statuses, kills) = std::thread::scope(|s| {
                let killer = s.spawn(|| cluster::chaos(&cluster, &mut rng, settings.kills, &done));
                let statuses = run_programs(&cluster, programs, Instant::now() + CHAOS_DEADLINE);
                done.store(true, Ordering::SeqCst);
                (statuses, killer.join().unwrap())
            });
            chaos_log = kills;
            let drained = duplicator.drain(Duration::from_secs(60));
            let copies = duplicator.copies();
            chaos_log.push(format!(
                "{} message(s) delivered twice{}",
                copies.len(),
                if drained {
                    ""
                } else {
                    " (some copies were still in the queues 60 s later)"
                }
            ));
            chaos_log.extend(copies);
            // A copy that revived a finished instance shows as a status that
            // is no longer final: wait for it to be final again.
            let again =
                run_programs_wait(&cluster, programs.len(), Instant::now() + CHAOS_DEADLINE);
            statuses
                .into_iter()
                .zip(again)
                .map(|(first, again)| if first.is_ok() { again } else { first })
                .collect()
        }
    };
    let took = started.elapsed();
    let histories = read_histories(azurite, hub, programs.len());
    let instances = histories
        .iter()
        .map(|h| {
            h.keys()
                .map(|id| {
                    let (code, doc) =
                        cluster.get(&format!("/runtime/webhooks/durabletask/instances/{id}"));
                    let status = json!([code, doc["runtimeStatus"], doc["output"]]);
                    (id.clone(), status)
                })
                .collect()
        })
        .collect();
    Run {
        statuses,
        histories,
        instances,
        logs: cluster.logs(),
        chaos: chaos_log,
        took,
    }
}

/// Start every program (instance `p{i}`), raise their events, and wait for
/// all to finish.
fn run_programs(
    cluster: &Cluster,
    programs: &[(Program, Vec<EventPlan>)],
    end: Instant,
) -> Vec<Result<(String, Value), String>> {
    for (i, (program, _)) in programs.iter().enumerate() {
        let code = cluster.post(
            &format!("/runtime/webhooks/durabletask/orchestrators/ReplayProgram/p{i}"),
            &generate::input(program),
        );
        assert_eq!(code, 202, "starting p{i}");
    }
    std::thread::scope(|s| {
        let raisers: Vec<_> = programs
            .iter()
            .enumerate()
            .flat_map(|(i, (_, events))| events.iter().map(move |e| (i, e)))
            .map(|(i, e)| (i, s.spawn(move || raise(cluster, &format!("p{i}"), e, end))))
            .collect();
        let mut statuses = run_programs_wait(cluster, programs.len(), end);
        for (i, r) in raisers {
            if let Err(e) = r.join().unwrap() {
                statuses[i] = Err(match &statuses[i] {
                    Ok(status) => format!("{e} (it ended {status:?})"),
                    Err(stuck) => format!("{e}; it {stuck}"),
                });
            }
        }
        statuses
    })
}

/// Wait until the instances `p0..p{count}` are finished; each one's status
/// and output, or its status when `end` came.
fn run_programs_wait(
    cluster: &Cluster,
    count: usize,
    end: Instant,
) -> Vec<Result<(String, Value), String>> {
    let mut statuses: Vec<Option<(String, Value)>> = vec![None; count];
    let mut last: Vec<Value> = vec![Value::Null; count];
    while statuses.iter().any(Option::is_none) && Instant::now() < end {
        for i in 0..count {
            if statuses[i].is_some() {
                continue;
            }
            let (code, doc) = cluster.get(&format!("/runtime/webhooks/durabletask/instances/p{i}"));
            let status = doc["runtimeStatus"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if code == 200 && ["Completed", "Failed", "Terminated"].contains(&status.as_str()) {
                statuses[i] = Some((status, doc["output"].clone()));
            }
            last[i] = doc;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    statuses
        .into_iter()
        .zip(last)
        .map(|(s, last)| s.ok_or_else(|| format!("did not finish; its status: {last}")))
        .collect()
}

/// Raise `plan`'s event on its instance once that instance runs the
/// generation that waits for it, after the plan's delay.
fn raise(cluster: &Cluster, root: &str, plan: &EventPlan, end: Instant) -> Result<(), String> {
    let id = format!("{root}{}", plan.path);
    let what = format!(
        "{root}: event '{}' for '{id}' (generation {})",
        plan.name, plan.generation
    );
    loop {
        if Instant::now() > end {
            return Err(format!(
                "{what}: the instance did not reach that generation"
            ));
        }
        let (code, doc) = cluster.get(&format!(
            "/runtime/webhooks/durabletask/instances/{id}?showInput=true"
        ));
        if code == 200 {
            return Err(format!("{what}: the instance finished first: {doc}"));
        }
        match doc["input"]["generation"].as_u64() {
            Some(g) if g == plan.generation as u64 && code == 202 => break,
            Some(g) if g > plan.generation as u64 => {
                return Err(format!("{what}: the instance went past it: {doc}"));
            }
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
    // Part of the program (before or after the wait starts), not a wait for something.
    std::thread::sleep(Duration::from_millis(plan.delay_ms));
    loop {
        let path = format!(
            "/runtime/webhooks/durabletask/instances/{id}/raiseEvent/{}",
            plan.name
        );
        match cluster.post(&path, &event_data(&plan.name)) {
            202 => return Ok(()),
            404 if Instant::now() < end => std::thread::sleep(Duration::from_millis(250)),
            code => return Err(format!("{what}: raiseEvent answered {code}")),
        }
    }
}

/// The normalized histories of `p0..p{count}` and their sub-orchestrations.
fn read_histories(azurite: &Azurite, hub: &str, count: usize) -> Vec<history::Histories> {
    let storage = host::storage::azure::connect(&azurite.connection_string).unwrap();
    let hub = host::durable::hub::Hub::new(hub, PARTITIONS, storage);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut out = Vec::new();
        for i in 0..count {
            out.push(history::read(&hub, &format!("p{i}")).await);
        }
        out
    })
}

//! Hosts on one task hub that the test kills and restarts, and the client
//! requests that go to whichever of them is alive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::generate::Rng;
use crate::support::{Host, Project, client};

/// A line each function invocation ends with: the pace of a host's work.
const EXECUTED: &str = "Executed 'Functions.";

pub struct Cluster {
    project: Project,
    /// Added to `host start`.
    args: Vec<&'static str>,
    slots: Mutex<Vec<Option<Host>>>,
    /// Per slot: the bytes of its host's output counted so far, and the
    /// invocations they showed (outputs grow to megabytes: count each line once).
    counted: Mutex<Vec<(usize, usize)>>,
    /// Requests that change something (starts, raised events) hold it
    /// shared and a kill holds it alone: no such request is cut off
    /// halfway, so none is retried after it took effect (twice raised is
    /// two events). Reads need no gate.
    gate: RwLock<()>,
    /// The output of every host that was killed or stopped, for the report.
    graveyard: Mutex<Vec<String>>,
}

impl Cluster {
    /// `count` hosts of `project`, started one after another with `args`.
    pub fn start(project: Project, count: usize, args: Vec<&'static str>) -> Cluster {
        let slots = (0..count).map(|_| Some(project.start(&args))).collect();
        Cluster {
            project,
            args,
            counted: Mutex::new(vec![(0, 0); count]),
            slots: Mutex::new(slots),
            gate: RwLock::new(()),
            graveyard: Mutex::new(Vec::new()),
        }
    }

    fn bases(&self) -> Vec<String> {
        let slots = self.slots.lock().unwrap();
        slots.iter().flatten().map(|h| h.base.clone()).collect()
    }

    /// GET `path` on a live host until one answers; the status code and
    /// the JSON body (Null when it is not JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let end = Instant::now() + Duration::from_secs(120);
        let mut turn = 0;
        loop {
            let bases = self.bases();
            if !bases.is_empty() {
                let base = &bases[turn % bases.len()];
                turn += 1;
                if let Ok(r) = client().get(format!("{base}{path}")).send() {
                    let code = r.status().as_u16();
                    let body = r.text().unwrap_or_default();
                    return (code, serde_json::from_str(&body).unwrap_or(Value::Null));
                }
            }
            assert!(
                Instant::now() < end,
                "no host answered GET {path} for 120 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// POST `body` to `path` on a live host, inside the gate: the status code.
    pub fn post(&self, path: &str, body: &Value) -> u16 {
        let end = Instant::now() + Duration::from_secs(120);
        loop {
            {
                let _gate = self.gate.read().unwrap();
                if let Some(base) = self.bases().first() {
                    // A host that is up answers (it cannot be killed meanwhile);
                    // an error here is the host's, not the connection's.
                    let r = client()
                        .post(format!("{base}{path}"))
                        .json(body)
                        .send()
                        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
                    return r.status().as_u16();
                }
            }
            assert!(
                Instant::now() < end,
                "no host was up for POST {path} for 120 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// How many invocations host `i` has finished (0 while it is down).
    pub fn executed(&self, i: usize) -> usize {
        let slots = self.slots.lock().unwrap();
        let Some(host) = slots[i].as_ref() else {
            return 0;
        };
        let mut counted = self.counted.lock().unwrap();
        let (bytes, count) = &mut counted[i];
        let (more, len) = host.count_from(EXECUTED, *bytes);
        *bytes = len;
        *count += more;
        *count
    }

    /// SIGKILL the hosts `which` at once, with no request of the gate in flight.
    pub fn kill(&self, which: &[usize]) {
        let _gate = self.gate.write().unwrap();
        let mut slots = self.slots.lock().unwrap();
        for &i in which {
            if let Some(mut host) = slots[i].take() {
                host.kill();
                self.bury(i, "killed", &host);
            }
        }
    }

    /// Start host `i` again on the same storage (if it is down).
    pub fn restart(&self, i: usize) {
        if self.slots.lock().unwrap()[i].is_some() {
            return;
        }
        let host = self.project.start(&self.args);
        self.slots.lock().unwrap()[i] = Some(host);
        self.counted.lock().unwrap()[i] = (0, 0);
    }

    /// Whether every host is up and holds some partitions (from its /admin/metrics).
    pub fn balanced(&self) -> bool {
        let bases = self.bases();
        bases.len() == self.slots.lock().unwrap().len()
            && bases.iter().all(|base| {
                client()
                    .get(format!("{base}/admin/metrics"))
                    .send()
                    .and_then(|r| r.text())
                    .ok()
                    .and_then(|text| {
                        text.lines()
                            .find_map(|l| l.strip_prefix("fnhost_partitions_owned "))
                            .and_then(|n| n.trim().parse::<u32>().ok())
                    })
                    .is_some_and(|n| n > 0)
            })
    }

    fn bury(&self, i: usize, how: &str, host: &Host) {
        self.graveyard.lock().unwrap().push(format!(
            "===== host {i} ({}), {how} =====\n{}",
            host.base,
            host.output()
        ));
    }

    /// Everything every host printed: the dead ones', then the living ones'.
    pub fn logs(&self) -> String {
        let mut out = self.graveyard.lock().unwrap().join("\n");
        for (i, host) in self.slots.lock().unwrap().iter().enumerate() {
            if let Some(host) = host {
                out.push_str(&format!(
                    "\n===== host {i} ({}), alive =====\n{}",
                    host.base,
                    host.output()
                ));
            }
        }
        out
    }
}

/// Kill hosts at random points, `kills` times, until `done`: once the
/// victim has run a random number of invocations more (or after a random
/// time, for a victim with no work); one of the hosts or all at once; each
/// restarted after a random pause (a survivor takes the partitions of a
/// host that stays down: leases last 30 s). What it did, one line per kill.
pub fn chaos(cluster: &Cluster, rng: &mut Rng, kills: usize, done: &AtomicBool) -> Vec<String> {
    let hosts = cluster.slots.lock().unwrap().len();
    let mut log = Vec::new();
    let started = Instant::now();
    for _ in 0..kills {
        let wait = Duration::from_millis(rng.range(2_000, 30_000));
        let work = rng.range(1, 25) as usize;
        let victims: Vec<usize> = if hosts > 1 && rng.chance(30) {
            (0..hosts).collect()
        } else {
            vec![rng.range(0, hosts as u64 - 1) as usize]
        };
        let pause = Duration::from_millis(*rng.pick(&[0, 300, 2_000, 6_000]));
        let from = Instant::now();
        let before = cluster.executed(victims[0]);
        while !done.load(Ordering::SeqCst)
            && from.elapsed() < wait
            && cluster.executed(victims[0]) < before + work
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        if done.load(Ordering::SeqCst) {
            break;
        }
        let ran = cluster.executed(victims[0]).saturating_sub(before);
        cluster.kill(&victims);
        log.push(format!(
            "{:>6.1} s: killed host(s) {victims:?} after {ran} invocation(s); restarting after {pause:?}",
            started.elapsed().as_secs_f64()
        ));
        // The pause is part of the chaos (how long a host stays dead), not a wait for something.
        std::thread::sleep(pause);
        for &v in &victims {
            cluster.restart(v);
        }
    }
    log
}

//! Random programs from a seed, what each must return, and the external
//! events the test raises for them.

use serde_json::{Value, json};

use crate::program::{Activity, FAILURE_TYPE, Program, Run, Step, event_data};

/// SplitMix64: small, and the same sequence for a seed on every machine and
/// every version of every crate, so a printed seed replays the same programs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 99) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }
}

/// An external event the test raises: on the instance `{root}{path}` while
/// its generation `generation` runs, `delay_ms` after the test sees it run
/// (0 is often before the orchestration reaches the wait).
#[derive(Debug, Clone)]
pub struct EventPlan {
    pub path: String,
    pub generation: usize,
    pub name: String,
    pub delay_ms: u64,
}

/// Names made unique across one generated program tree.
struct Generator<'a> {
    rng: &'a mut Rng,
    next: u32,
    events: Vec<EventPlan>,
}

impl Generator<'_> {
    fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    /// `path` is the instance id suffix of the program being generated.
    fn program(&mut self, depth: u32, path: &str) -> Program {
        let generations = if self.rng.chance(30) {
            self.rng.range(2, 3)
        } else {
            1
        } as usize;
        let mut all = Vec::new();
        for generation in 0..generations {
            let steps = self.rng.range(1, if depth == 0 { 5 } else { 3 });
            let mut g = Vec::new();
            for _ in 0..steps {
                g.push(self.step(depth, path, generation));
            }
            all.push(g);
        }
        let fail = self
            .rng
            .chance(12)
            .then(|| format!("boom-{}", self.fresh("f")));
        Program {
            generations: all,
            fail,
        }
    }

    fn step(&mut self, depth: u32, path: &str, generation: usize) -> Step {
        match self.rng.range(0, 99) {
            0..=39 => self.leaf(depth, path, generation, true),
            40..=59 => {
                // At most one retry per when_all: a retry schedules its next
                // attempt when its previous one fails, and two doing so would
                // take their sequence ids in whichever order they failed.
                let n = self.rng.range(2, 4);
                let mut retried = false;
                let branches = (0..n)
                    .map(|_| {
                        let leaf = self.leaf(depth, path, generation, !retried);
                        retried |= matches!(leaf, Step::Retry { .. });
                        leaf
                    })
                    .collect();
                Step::All { branches }
            }
            _ => {
                // One branch that can finish; the losers never do, so neither
                // the winner nor the history depend on timing.
                let losers = self.rng.range(1, 2) as usize;
                let winner = self.rng.range(0, losers as u64) as usize;
                let branches = (0..=losers)
                    .map(|i| {
                        if i == winner {
                            self.leaf(depth, path, generation, true)
                        } else {
                            Step::Never {
                                name: self.fresh("never"),
                            }
                        }
                    })
                    .collect();
                Step::Any { branches }
            }
        }
    }

    /// A step that schedules nothing after its first action, but for a
    /// retry (when `retry` allows) and a sub-orchestration (its own history).
    fn leaf(&mut self, depth: u32, path: &str, generation: usize, retry: bool) -> Step {
        let roll = self.rng.range(0, 99);
        match roll {
            0..=34 => Step::Activity(self.activity()),
            35..=44 if retry => {
                let mut activity = self.activity();
                activity.fail = self.rng.chance(50);
                Step::Retry {
                    activity,
                    attempts: self.rng.range(2, 3) as u32,
                    interval_ms: self.rng.range(200, 800),
                }
            }
            45..=64 => Step::Timer {
                ms: self.rng.range(100, 1500),
            },
            65..=84 => {
                let name = self.fresh("e");
                let delay_ms = *self.rng.pick(&[0, 0, 200, 1000, 2500]);
                self.events.push(EventPlan {
                    path: path.to_string(),
                    generation,
                    name: name.clone(),
                    delay_ms,
                });
                Step::Event { name }
            }
            _ if depth < 2 => {
                let id = self.fresh("c");
                let child_path = format!("{path}-{id}");
                let before = self.events.len();
                let program = self.program(depth + 1, &child_path);
                // The test raises events on a child by its id: give it one
                // it knows. Others keep the default id `{parent}:{sequence}`
                // (reused by the parent's next generation: a restart).
                let id = (self.events.len() > before || self.rng.chance(50)).then_some(id);
                Step::Sub {
                    id,
                    program: Box::new(program),
                }
            }
            _ => Step::Activity(self.activity()),
        }
    }

    fn activity(&mut self) -> Activity {
        Activity {
            tag: self.fresh("a"),
            fail: self.rng.chance(25),
            sleep_ms: *self.rng.pick(&[0, 0, 50, 200, 600]),
        }
    }
}

/// A random program and the events to raise for it.
pub fn program(rng: &mut Rng) -> (Program, Vec<EventPlan>) {
    let mut g = Generator {
        rng,
        next: 0,
        events: Vec::new(),
    };
    let program = g.program(0, "");
    (program, g.events)
}

/// What a finished instance running `program` shows: its runtime status and output.
pub fn expected_status(program: &Program) -> (&'static str, Value) {
    match expected(program) {
        Ok(trace) => ("Completed", trace),
        Err((kind, message)) => ("Failed", json!(format!("{kind}: {message}"))),
    }
}

/// The output of `program` (its trace), or its failure.
fn expected(program: &Program) -> Result<Value, (String, String)> {
    let trace: Vec<Value> = program
        .generations
        .iter()
        .enumerate()
        .map(|(generation, steps)| {
            let steps: Vec<Value> = steps.iter().map(step_result).collect();
            json!({"generation": generation, "steps": steps})
        })
        .collect();
    match &program.fail {
        Some(message) => Err((FAILURE_TYPE.to_string(), message.clone())),
        None => Ok(Value::Array(trace)),
    }
}

fn step_result(step: &Step) -> Value {
    match step {
        Step::Activity(a) | Step::Retry { activity: a, .. } => activity_result(a),
        Step::Timer { .. } => json!("fired"),
        Step::Event { name } => event_data(name),
        Step::Never { name } => panic!("the generator made a lone Never step ({name})"),
        Step::Sub { program, .. } => match expected(program) {
            Ok(v) => json!({ "ok": v }),
            Err((kind, message)) => json!({ "err": [kind, message] }),
        },
        Step::All { branches } => Value::Array(branches.iter().map(step_result).collect()),
        Step::Any { branches } => {
            let winner = branches
                .iter()
                .position(|b| !matches!(b, Step::Never { .. }))
                .expect("an Any step has one branch that can finish");
            json!({"winner": winner, "result": step_result(&branches[winner])})
        }
    }
}

fn activity_result(a: &Activity) -> Value {
    if a.fail {
        json!({"err": ["ActivityError", format!("failed:{}", a.tag)]})
    } else {
        json!({"ok": format!("done:{}", a.tag)})
    }
}

/// The input the test starts a program with.
pub fn input(program: &Program) -> Value {
    serde_json::to_value(Run::new(program.clone())).unwrap()
}

//! What the console says about a storage service: the transient errors its
//! calls retried (named; the first at once, then at most one summary line
//! every 10 s), an outage once (when a call fails after every retry), and one
//! line when the service answers again.
//!
//! One [`Health`] per service and endpoint for the whole process: the engine,
//! the triggers, the bindings and the key store each connect on their own,
//! and an outage is still reported once, not once per client or per poll.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::connection::Endpoint;
use crate::storage::StorageError;

/// Retries after the first of a quiet spell are summed up this often.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// The console's view of one service of one account.
pub(crate) struct Health {
    /// "the queue service at http://127.0.0.1:10001/devstoreaccount1".
    name: String,
    service: &'static str,
    /// Set while an outage is reported (read on every call: no lock).
    down: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Since when, and how many calls failed meanwhile.
    outage: Option<(Instant, u64)>,
    /// Retries since the last line, by error; None when no line is pending.
    retried: Option<BTreeMap<String, u64>>,
    /// Which summarizing task owns `retried` (an outage ends one; the next
    /// retry after it starts another).
    summarizer: u64,
}

/// Every [`Health`] of the process, by service and place.
type Registry = Mutex<HashMap<(&'static str, String), Arc<Health>>>;

/// The process's [`Health`] of `service` ("queue", "table", "blob") at `endpoint`.
pub(crate) fn of(service: &'static str, endpoint: &Endpoint) -> Arc<Health> {
    static ALL: OnceLock<Registry> = OnceLock::new();
    let mut all = ALL
        .get_or_init(Default::default)
        .lock()
        .expect("health lock");
    all.entry((service, endpoint.place.clone()))
        .or_insert_with(|| {
            Arc::new(Health {
                // Azurite's place names all three services; a URL names one.
                name: if endpoint.place.starts_with("the ") {
                    endpoint.place.clone()
                } else {
                    format!("the {service} service of {}", endpoint.place)
                },
                service,
                down: AtomicBool::new(false),
                state: Mutex::new(State::default()),
            })
        })
        .clone()
}

impl Health {
    /// A call is retried after `error` ("503 ServerBusy", "connection closed
    /// before message completed"); `attempt` is the one about to be made.
    pub fn retrying(self: &Arc<Self>, error: &str, attempt: u32, attempts: u32) {
        if self.down.load(Ordering::Acquire) || super::transport::is_quiet() {
            return; // The outage line says it all.
        }
        let mut state = self.state.lock().expect("health lock");
        if let Some(counts) = state.retried.as_mut() {
            *counts.entry(error.to_string()).or_default() += 1;
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(state);
            tracing::info!(
                "Storage: a {} call failed with {error}; retrying (attempt {attempt} of {attempts})",
                self.service
            );
            return;
        };
        state.retried = Some(BTreeMap::new());
        state.summarizer += 1;
        let summarizer = state.summarizer;
        drop(state);
        tracing::info!(
            "Storage: a {} call failed with {error}; retrying (attempt {attempt} of {attempts}). \
             Further retries of {} calls are summed up every {} s",
            self.service,
            self.service,
            SUMMARY_EVERY.as_secs()
        );
        runtime.spawn(self.clone().summarize(summarizer));
    }

    /// Every [`SUMMARY_EVERY`]: one line naming the errors retried since the
    /// last, until a spell passes without any.
    async fn summarize(self: Arc<Self>, me: u64) {
        loop {
            tokio::time::sleep(SUMMARY_EVERY).await;
            let counts = {
                let mut state = self.state.lock().expect("health lock");
                if state.summarizer != me {
                    return;
                }
                let counts = state.retried.take().unwrap_or_default();
                if counts.is_empty() || state.outage.is_some() {
                    return; // The next retry gets a line of its own.
                }
                state.retried = Some(BTreeMap::new());
                counts
            };
            let total: u64 = counts.values().sum();
            let mut named: Vec<(&String, &u64)> = counts.iter().collect();
            named.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let named: Vec<String> = named.iter().map(|(e, n)| format!("{n} × {e}")).collect();
            tracing::info!(
                "Storage: retried {total} more {} call{} in the last {} s: {}",
                self.service,
                if total == 1 { "" } else { "s" },
                SUMMARY_EVERY.as_secs(),
                named.join(", ")
            );
        }
    }

    /// The error a call ends with, reported first when it is an outage.
    pub fn note(&self, error: StorageError) -> StorageError {
        if let StorageError::Unavailable(message) = &error {
            self.unavailable(message);
        }
        error
    }

    /// A call failed after every retry (`message` says where and why).
    pub fn unavailable(&self, message: &str) {
        if super::transport::is_quiet() {
            return;
        }
        let mut state = self.state.lock().expect("health lock");
        match state.outage.as_mut() {
            Some((_, failed)) => {
                *failed += 1;
                drop(state);
                tracing::debug!("storage still unavailable: {message}");
            }
            None => {
                state.outage = Some((Instant::now(), 1));
                state.retried = None;
                self.down.store(true, Ordering::Release);
                drop(state);
                tracing::warn!(
                    "Storage unavailable: {message}. The host keeps trying (one line when it \
                     answers again) and goes on serving what does not need storage"
                );
            }
        }
    }

    /// A call got an answer from the service (any but a transient error).
    pub fn answered(&self) {
        if !self.down.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state.lock().expect("health lock");
        let Some((since, failed)) = state.outage.take() else {
            return;
        };
        self.down.store(false, Ordering::Release);
        drop(state);
        tracing::info!(
            "Storage is back: {} answers again after {:.1} s ({failed} call{} failed meanwhile)",
            self.name,
            since.elapsed().as_secs_f64(),
            if failed == 1 { "" } else { "s" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_storage::CloudLocation;

    fn endpoint(place: &str) -> Endpoint {
        Endpoint {
            location: CloudLocation::Emulator {
                address: "127.0.0.1".into(),
                port: 1,
            },
            place: place.to_string(),
            hint: String::new(),
        }
    }

    #[test]
    fn one_health_per_service_and_place() {
        let a = of("queue", &endpoint("the queue service at http://x:1/a"));
        let b = of("queue", &endpoint("the queue service at http://x:1/a"));
        let c = of("table", &endpoint("the queue service at http://x:1/a"));
        assert!(Arc::ptr_eq(&a, &b) && !Arc::ptr_eq(&a, &c));
        let dev = of("blob", &endpoint("Azurite at 127.0.0.1:10000-10002"));
        assert_eq!(
            dev.name,
            "the blob service of Azurite at 127.0.0.1:10000-10002"
        );
    }

    #[test]
    fn an_outage_is_down_until_an_answer() {
        let h = of("queue", &endpoint("the queue service at http://outage:1/a"));
        let down = |h: &Health| h.down.load(Ordering::Acquire);
        assert!(!down(&h));
        h.unavailable("cannot reach it");
        h.unavailable("cannot reach it");
        assert!(down(&h));
        assert_eq!(h.state.lock().unwrap().outage.map(|o| o.1), Some(2));
        h.answered();
        assert!(!down(&h) && h.state.lock().unwrap().outage.is_none());
    }
}

//! timerTrigger: a function run on a schedule, as the Azure Functions timer
//! extension does it.
//!
//! Several hosts on one storage account run each occurrence once: only the
//! host that holds the lease on `azure-webjobs-hosts/locks/{hostId}/
//! Host.Functions.{name}.Listener` (Azure's singleton listener lock) runs the
//! schedule; the others try to take it every 30 s. With `useMonitor` (the
//! default) the schedule status `{"Last", "Next", "LastUpdated"}` is kept in
//! `azure-webjobs-hosts/timers/{hostId}/Host.Functions.{name}/status`,
//! written after each occurrence; a host that takes the lock and finds
//! `Next` already past (every host was down, or the holder died) runs that
//! occurrence once at once with `isPastDue = true`. `runOnStartup` runs it
//! once when the listener starts (when there is no past-due run).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::lease::{self, HOSTS_CONTAINER};
use super::schedule::{Schedule, parse_rfc3339, rfc3339};
use super::{TriggerContext, TriggerKind};
use crate::catalog::FunctionEntry;
use crate::config::Trigger;
use crate::runtime::{TimerInfo, TriggerInput};
use crate::storage::{PutOptions, Storage, StorageError};

/// How often a host without the lock tries to take it: a released lock is
/// taken within this long, an abandoned one within this plus the 60 s lease.
const LOCK_RETRY: Duration = Duration::from_secs(30);

/// A storage error is reported at most this often per listener.
const ERROR_REPORT: Duration = Duration::from_secs(60);

/// The timerTrigger kind.
pub struct TimerTrigger;

impl TriggerKind for TimerTrigger {
    fn handles(&self, trigger: &Trigger) -> bool {
        matches!(trigger, Trigger::Timer { .. })
    }

    fn listen(
        &self,
        ctx: TriggerContext,
        function: Arc<FunctionEntry>,
        stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(listen(ctx, function, stop))
    }
}

/// Azure's ScheduleStatus blob.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Status {
    last: Option<String>,
    next: Option<String>,
    last_updated: Option<String>,
}

struct Timer {
    ctx: TriggerContext,
    function: String,
    schedule: Schedule,
    use_monitor: bool,
    storage: Storage,
    lock: String,
    status: String,
}

async fn listen(
    ctx: TriggerContext,
    function: Arc<FunctionEntry>,
    mut stop: watch::Receiver<bool>,
) {
    let Trigger::Timer {
        schedule,
        run_on_startup,
        use_monitor,
    } = &function.trigger
    else {
        return;
    };
    let unable = |why: String| {
        tracing::error!(
            "The listener for function 'Functions.{}' was unable to start: {why}",
            function.name
        )
    };
    let schedule = match Schedule::parse(schedule) {
        Ok(s) => s,
        Err(e) => return unable(e),
    };
    // Timers keep their lock and status in the host's own storage, as Azure does.
    let storage = match ctx.connections.get("") {
        Ok(s) => s,
        Err(e) => return unable(e),
    };
    let full = super::full_name(&function.name);
    let timer = Timer {
        lock: format!("locks/{}/{full}.Listener", ctx.host_id),
        status: format!("timers/{}/{full}/status", ctx.host_id),
        function: function.name.clone(),
        schedule,
        use_monitor: *use_monitor,
        storage,
        ctx,
    };
    let mut startup = *run_on_startup;
    let mut reported: Option<Instant> = None;
    while !*stop.borrow() {
        let held = match timer.take_lock().await {
            Ok(held) => held,
            Err(e) => {
                // An outage is reported once by the storage layer.
                if !e.is_unavailable() && reported.is_none_or(|t| t.elapsed() > ERROR_REPORT) {
                    tracing::warn!(
                        "Function 'Functions.{}': taking the timer lock '{}' failed (retrying): {e}",
                        timer.function,
                        timer.lock
                    );
                    reported = Some(Instant::now());
                }
                None
            }
        };
        let Some(mut held) = held else {
            tokio::select! {
                _ = tokio::time::sleep(LOCK_RETRY) => {}
                _ = super::stopped(&mut stop) => {}
            }
            continue;
        };
        tracing::debug!(
            "Function 'Functions.{}': this host runs the schedule",
            timer.function
        );
        timer
            .run(&mut held, &mut stop, std::mem::take(&mut startup))
            .await;
        if held.is_lost() {
            tracing::warn!(
                "Function 'Functions.{}': the timer lock was lost; another host may run the schedule",
                timer.function
            );
        }
        held.release().await;
    }
}

impl Timer {
    /// The listener lock, if no other host holds it.
    async fn take_lock(&self) -> Result<Option<lease::Held>, StorageError> {
        lease::ensure_blob(
            self.storage.blobs.as_ref(),
            HOSTS_CONTAINER,
            &self.lock,
            &PutOptions::default(),
        )
        .await?;
        lease::acquire(&self.storage, HOSTS_CONTAINER, &self.lock).await
    }

    /// Run the schedule while the lock is held, until stopped.
    async fn run(&self, held: &mut lease::Held, stop: &mut watch::Receiver<bool>, startup: bool) {
        let status = if self.use_monitor {
            self.read_status().await
        } else {
            None
        };
        let time = |s: Option<&str>| s.and_then(parse_rfc3339);
        let mut last = time(status.as_ref().and_then(|s| s.last.as_deref()));
        let mut recorded = time(status.as_ref().and_then(|s| s.next.as_deref()));
        let now = SystemTime::now();
        let mut base = match (&self.schedule, last) {
            // A TimeSpan repeats from the last occurrence; a cron expression from now.
            (Schedule::Interval(_), Some(l)) => l,
            _ => now,
        };
        if let Some(due) = recorded.filter(|d| *d <= now) {
            recorded = self.occur(due, &mut last, true).await;
            base = due;
        } else if startup {
            recorded = self.occur(now, &mut last, false).await;
            base = now;
        }
        self.log_next(base);
        loop {
            let Some(next) = self.following(base) else {
                return; // no occurrence ever again
            };
            if self.use_monitor && recorded != Some(next) {
                // Recorded before it is due, so that a host starting after
                // every host missed it knows it is past due.
                self.write_status(last, next).await;
            }
            let wait = next.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = held.lost() => return,
                _ = super::stopped(stop) => return,
            }
            recorded = self.occur(next, &mut last, false).await;
            base = next;
        }
    }

    /// Azure's start-up line: the next 5 occurrences.
    fn log_next(&self, base: SystemTime) {
        let mut times = Vec::new();
        let mut at = base;
        while times.len() < 5 {
            let Some(next) = self.following(at) else {
                break;
            };
            times.push(rfc3339(next));
            at = next;
        }
        tracing::info!(
            "The next {} occurrences of the 'Functions.{}' schedule will be:\n  {}",
            times.len(),
            self.function,
            times.join("\n  ")
        );
    }

    /// The occurrence after `base`, or after now if that one has passed
    /// (an invocation ran longer than the interval: no burst of late runs).
    fn following(&self, base: SystemTime) -> Option<SystemTime> {
        let next = self.schedule.next_after(base)?;
        let now = SystemTime::now();
        if next < now {
            self.schedule.next_after(now)
        } else {
            Some(next)
        }
    }

    /// Invoke the function for the occurrence `scheduled`, then record it as
    /// the last; returns the next occurrence recorded in the status.
    async fn occur(
        &self,
        scheduled: SystemTime,
        last: &mut Option<SystemTime>,
        past_due: bool,
    ) -> Option<SystemTime> {
        let next = self.following(scheduled);
        let info = TimerInfo {
            is_past_due: past_due,
            scheduled: super::queue::millis(scheduled),
            last: last.map(super::queue::millis),
            next: next.map_or(0, super::queue::millis),
        };
        let reason = if past_due {
            format!(
                "Timer fired at {} (past due: it was due while no host ran it)",
                rfc3339(scheduled)
            )
        } else {
            format!("Timer fired at {}", rfc3339(scheduled))
        };
        // A failed occurrence is not retried, as in Azure: the next one runs on schedule.
        let _ = super::run_trigger(
            &self.ctx,
            &self.function,
            &reason,
            TriggerInput::Timer(info),
        )
        .await;
        *last = Some(scheduled);
        match next {
            Some(next) if self.use_monitor => {
                self.write_status(Some(scheduled), next).await;
                Some(next)
            }
            _ => None,
        }
    }

    async fn read_status(&self) -> Option<Status> {
        match self.storage.blobs.get(HOSTS_CONTAINER, &self.status).await {
            Ok(Some((data, _))) => serde_json::from_slice(&data).ok(),
            Ok(None) | Err(StorageError::NotFound(_)) => None,
            Err(e) => {
                tracing::warn!(
                    "Function 'Functions.{}': reading the schedule status '{}' failed: {e}",
                    self.function,
                    self.status
                );
                None
            }
        }
    }

    async fn write_status(&self, last: Option<SystemTime>, next: SystemTime) {
        let status = Status {
            last: last.map(rfc3339),
            next: Some(rfc3339(next)),
            last_updated: Some(rfc3339(SystemTime::now())),
        };
        let body = serde_json::to_vec(&status).expect("status serializes");
        let options = PutOptions {
            content_type: Some("application/json".into()),
            ..Default::default()
        };
        if let Err(e) = self
            .storage
            .blobs
            .put_with(HOSTS_CONTAINER, &self.status, body, &options)
            .await
        {
            tracing::warn!(
                "Function 'Functions.{}': writing the schedule status '{}' failed: {e}",
                self.function,
                self.status
            );
        }
    }
}

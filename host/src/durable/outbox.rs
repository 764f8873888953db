//! Group commit of queue messages: messages bound for the same queue that
//! are sent while an earlier send to it is still under way travel together
//! in one queue message (up to the 45 KB limit), so concurrent client calls,
//! episodes and activity results to one partition cost one storage call, not
//! one each. A caller's send returns once its message is stored; when the
//! queue is idle a message goes at once (no timer adds latency).

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::storage::StorageError;

use super::Engine;
use super::model::{ControlMessage, WorkItem};

/// Sends under way per queue; what arrives meanwhile waits and is packed.
const IN_FLIGHT: usize = 2;
/// Work items per queue message: small enough that a big fan-out is spread
/// over several messages, hence over several hosts.
pub const WORK_PER_MESSAGE: usize = 25;

enum Item {
    Control(ControlMessage),
    Work(WorkItem),
}

struct Waiting {
    item: Item,
    done: oneshot::Sender<Result<(), StorageError>>,
}

#[derive(Default)]
struct Lane {
    waiting: Vec<Waiting>,
    in_flight: usize,
}

/// One lane per control queue, and one for `{hub}-workitems`.
pub struct Outbox {
    lanes: Vec<Mutex<Lane>>,
}

impl Outbox {
    pub fn new(partitions: u32) -> Outbox {
        Outbox {
            lanes: (0..=partitions).map(|_| Mutex::default()).collect(),
        }
    }

    fn work_lane(&self) -> usize {
        self.lanes.len() - 1
    }
}

/// Store `messages` (no delay) in their partitions' control queues.
pub async fn send_control(
    engine: &Arc<Engine>,
    messages: Vec<ControlMessage>,
) -> Result<(), StorageError> {
    let items = messages
        .into_iter()
        .map(|m| {
            let lane = engine.hub.partition_of(&m.instance_id) as usize;
            (lane, Item::Control(m))
        })
        .collect();
    send(engine, items).await
}

/// Store `items` in `{hub}-workitems`.
pub async fn send_work(engine: &Arc<Engine>, items: Vec<WorkItem>) -> Result<(), StorageError> {
    let lane = engine.outbox.work_lane();
    send(
        engine,
        items.into_iter().map(|i| (lane, Item::Work(i))).collect(),
    )
    .await
}

async fn send(engine: &Arc<Engine>, items: Vec<(usize, Item)>) -> Result<(), StorageError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut receivers = Vec::with_capacity(items.len());
    let mut start = Vec::new();
    for (lane, item) in items {
        let (done, receiver) = oneshot::channel();
        receivers.push(receiver);
        let mut l = engine.outbox.lanes[lane].lock().expect("outbox lock");
        l.waiting.push(Waiting { item, done });
        if l.in_flight < IN_FLIGHT && !start.contains(&lane) {
            l.in_flight += 1;
            start.push(lane);
        }
    }
    for lane in start {
        tokio::spawn(flush(engine.clone(), lane));
    }
    let mut result = Ok(());
    for r in receivers {
        match r.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err(StorageError::Other("the outbox stopped".into())),
        }
    }
    result
}

/// Send what waits in `lane` until nothing does.
async fn flush(engine: Arc<Engine>, lane: usize) {
    loop {
        let batch = {
            let mut l = engine.outbox.lanes[lane].lock().expect("outbox lock");
            if l.waiting.is_empty() {
                l.in_flight -= 1;
                return;
            }
            std::mem::take(&mut l.waiting)
        };
        if lane == engine.outbox.work_lane() {
            send_work_batch(&engine, batch).await;
        } else {
            send_control_batch(&engine, lane as u32, batch).await;
        }
    }
}

async fn send_control_batch(engine: &Arc<Engine>, partition: u32, batch: Vec<Waiting>) {
    let (messages, dones): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|w| match w.item {
            Item::Control(m) => (m, w.done),
            Item::Work(_) => unreachable!("work items have their own lane"),
        })
        .unzip();
    let queue = engine.hub.control_queue(partition);
    let result = async {
        for text in engine.hub.pack_control(messages).await? {
            engine
                .hub
                .storage
                .queues
                .send(&queue, &text, std::time::Duration::ZERO)
                .await?;
        }
        Ok(())
    }
    .await;
    if result.is_ok() {
        engine.sent_to_partition(partition).await;
    }
    for done in dones {
        let _ = done.send(result.clone());
    }
}

async fn send_work_batch(engine: &Arc<Engine>, batch: Vec<Waiting>) {
    let (items, dones): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|w| match w.item {
            Item::Work(i) => (i, w.done),
            Item::Control(_) => unreachable!("control messages have their own lanes"),
        })
        .unzip();
    let queue = engine.hub.workitems_queue();
    let result = async {
        let texts = engine.hub.pack_work(items, WORK_PER_MESSAGE).await?;
        let sends = texts.iter().map(|text| {
            engine
                .hub
                .storage
                .queues
                .send(&queue, text, std::time::Duration::ZERO)
        });
        futures::future::try_join_all(sends).await?;
        Ok(())
    }
    .await;
    if result.is_ok() {
        engine.sent_work().await;
    }
    for done in dones {
        let _ = done.send(result.clone());
    }
}

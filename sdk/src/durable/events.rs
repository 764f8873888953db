//! External events: arrivals buffered per name, handed to waiters first come, first served.

use std::collections::{HashMap, VecDeque};

/// Event payloads (JSON) and the waiters for them, keyed by lower-cased name: event
/// names are case-insensitive, as in Durable Functions.
#[derive(Default)]
pub(crate) struct ExternalEvents {
    /// Events that arrived and no waiter has taken yet, oldest first.
    arrived: HashMap<String, VecDeque<Option<String>>>,
    /// Waiters not yet given an event, oldest first.
    waiting: HashMap<String, VecDeque<u64>>,
    /// Events handed to a waiter that has not picked them up yet.
    delivered: HashMap<u64, Option<String>>,
    next_waiter: u64,
}

impl ExternalEvents {
    /// An event named `name` arrived with `data`.
    pub(crate) fn raise(&mut self, name: &str, data: Option<String>) {
        let key = name.to_lowercase();
        self.arrived.entry(key.clone()).or_default().push_back(data);
        self.hand_out(&key);
    }

    /// A new waiter for `name`; it gets the oldest event not taken yet, or the next to come.
    pub(crate) fn wait(&mut self, name: &str) -> u64 {
        let key = name.to_lowercase();
        let waiter = self.next_waiter;
        self.next_waiter += 1;
        self.waiting
            .entry(key.clone())
            .or_default()
            .push_back(waiter);
        self.hand_out(&key);
        waiter
    }

    /// The event handed to `waiter`, once (`None` while it has none).
    pub(crate) fn take(&mut self, waiter: u64) -> Option<Option<String>> {
        self.delivered.remove(&waiter)
    }

    /// `waiter` gave up (its future was dropped, e.g. it lost a race against a timer):
    /// an event it was handed but did not take goes back to the front of the queue, so
    /// the next waiter gets it.
    pub(crate) fn cancel(&mut self, name: &str, waiter: u64) {
        let key = name.to_lowercase();
        if let Some(data) = self.delivered.remove(&waiter) {
            self.arrived
                .entry(key.clone())
                .or_default()
                .push_front(data);
        } else if let Some(queue) = self.waiting.get_mut(&key) {
            queue.retain(|w| *w != waiter);
        }
        self.hand_out(&key);
    }

    fn hand_out(&mut self, key: &str) {
        let (Some(arrived), Some(waiting)) = (self.arrived.get_mut(key), self.waiting.get_mut(key))
        else {
            return;
        };
        while !arrived.is_empty() && !waiting.is_empty() {
            let (Some(data), Some(waiter)) = (arrived.pop_front(), waiting.pop_front()) else {
                break;
            };
            self.delivered.insert(waiter, data);
        }
    }
}

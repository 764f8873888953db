//! External events: arrivals buffered per name, handed to waiters first come, first served.

use std::collections::{HashMap, VecDeque};

/// One event that arrived: its place in the order of arrival, its name as sent, its data.
struct Arrival {
    order: u64,
    name: String,
    data: Option<String>,
}

/// Event payloads (JSON) and the waiters for them, keyed by lower-cased name: event
/// names are case-insensitive, as in Durable Functions.
#[derive(Default)]
pub(crate) struct ExternalEvents {
    /// Events that arrived and no waiter has taken yet, oldest first.
    arrived: HashMap<String, VecDeque<Arrival>>,
    /// Waiters not yet given an event, oldest first.
    waiting: HashMap<String, VecDeque<u64>>,
    /// Events handed to a waiter that has not picked them up yet.
    delivered: HashMap<u64, Arrival>,
    next_waiter: u64,
    next_arrival: u64,
}

impl ExternalEvents {
    /// An event named `name` arrived with `data`.
    pub(crate) fn raise(&mut self, name: &str, data: Option<String>) {
        let key = name.to_lowercase();
        let arrival = Arrival {
            order: self.next_arrival,
            name: name.to_owned(),
            data,
        };
        self.next_arrival += 1;
        self.arrived
            .entry(key.clone())
            .or_default()
            .push_back(arrival);
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
        self.delivered.remove(&waiter).map(|a| a.data)
    }

    /// `waiter` gave up (its future was dropped, e.g. it lost a race against a timer):
    /// an event it was handed but did not take goes back to the front of the queue, so
    /// the next waiter gets it.
    pub(crate) fn cancel(&mut self, name: &str, waiter: u64) {
        let key = name.to_lowercase();
        if let Some(arrival) = self.delivered.remove(&waiter) {
            self.arrived
                .entry(key.clone())
                .or_default()
                .push_front(arrival);
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
            let (Some(arrival), Some(waiter)) = (arrived.pop_front(), waiting.pop_front()) else {
                break;
            };
            self.delivered.insert(waiter, arrival);
        }
    }

    /// The events no waiter has consumed, in the order they arrived, as (name, data):
    /// what `continue_as_new` carries over when asked to keep them.
    pub(crate) fn unconsumed(&self) -> Vec<(String, Option<String>)> {
        let mut left: Vec<&Arrival> = self
            .arrived
            .values()
            .flatten()
            .chain(self.delivered.values())
            .collect();
        left.sort_by_key(|a| a.order);
        left.into_iter()
            .map(|a| (a.name.clone(), a.data.clone()))
            .collect()
    }
}

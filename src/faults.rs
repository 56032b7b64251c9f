//! Faults injected into the published stream, for testing pipelines: each a configured
//! fraction of events, off by default, and each recorded in the ledger.
//!
//! - **Duplicates**: the same event (same `event_id`) sent a second time, right after.
//! - **Late**: an event held back and published once simulated time has passed its event time
//!   by the configured delay.
//! - **Out of order**: an order or payment event held back until the next event of the same
//!   key (`order_id`) on its topic has been published, then published after it. One whose key
//!   has no next event within a day is published then, and counted as late instead.
//!
//! Pure apart from its seeded generator: the ledger's [`crate::ledger::Recorder`] drives it.

use std::collections::HashMap;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use serde::{Deserialize, Serialize};

use crate::model::{Event, Timestamp, Topic};
use crate::settings::{duration, number};

crate::section! {
    /// Faults injected into the published stream; each a fraction of events, 0 to 0.5.
    pub struct FaultSettings in "faults" {
        /// The same event (same event_id) sent a second time.
        pub duplicate_fraction: f64 = number(0.0, 0.5);
        /// Events published late_delay after their event time.
        pub late_fraction: f64 = number(0.0, 0.5);
        /// How late the late events are published.
        pub late_delay: Duration = duration(Duration::ZERO);
        /// Events published after the next event of the same key.
        pub out_of_order_fraction: f64 = number(0.0, 0.5);
    }
}

impl Copy for FaultSettings {}

impl FaultSettings {
    pub fn any(&self) -> bool {
        self.duplicate_fraction > 0.0
            || self.late_fraction > 0.0
            || self.out_of_order_fraction > 0.0
    }
}

/// Faults injected into the stream, as counted: events sent more than once, late, or out of
/// order.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    pub duplicates: u64,
    pub late: u64,
    pub out_of_order: u64,
}

impl Faults {
    /// One event sent twice.
    pub const DUPLICATE: Self = Self {
        duplicates: 1,
        late: 0,
        out_of_order: 0,
    };
    /// One event published late.
    pub const LATE: Self = Self {
        duplicates: 0,
        late: 1,
        out_of_order: 0,
    };
    /// One event published after a later event of its key.
    pub const OUT_OF_ORDER: Self = Self {
        duplicates: 0,
        late: 0,
        out_of_order: 1,
    };

    /// Adds `other` to these counts.
    pub fn add(&mut self, other: Faults) {
        self.duplicates += other.duplicates;
        self.late += other.late;
        self.out_of_order += other.out_of_order;
    }
}

/// Held-back events are released at the latest this long after their event time, even when
/// no later event of their key comes.
const OUT_OF_ORDER_LIMIT: Duration = Duration::from_secs(86_400);

/// Decides, event by event, what is published when.
#[derive(Debug)]
pub struct FaultInjector {
    settings: FaultSettings,
    rng: Pcg64Mcg,
    /// Late events, with the instant from which they may go.
    late: Vec<(Timestamp, Event)>,
    /// Events waiting for the next event of their key.
    waiting: HashMap<(Topic, i64), Event>,
}

/// The key of an event within its topic, for the topics whose keys have several events.
fn key(event: &Event) -> Option<(Topic, i64)> {
    match event {
        Event::Order(o) => Some((Topic::Orders, o.order_id)),
        Event::Payment(p) => Some((Topic::Payments, p.order_id)),
        Event::Product(_) | Event::Customer(_) => None,
    }
}

impl FaultInjector {
    pub fn new(settings: FaultSettings, seed: u64) -> Self {
        Self {
            settings,
            rng: Pcg64Mcg::seed_from_u64(seed ^ 0xFA17_5EED),
            late: Vec::new(),
            waiting: HashMap::new(),
        }
    }

    /// Takes a batch handed to the sink; returns what to publish now, and calls `record` with
    /// each fault injected (against the affected event's time).
    pub fn apply(
        &mut self,
        events: &[Event],
        mut record: impl FnMut(Timestamp, Faults),
    ) -> Vec<Event> {
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let at = event.event_time();
            let draw = self.rng.random::<f64>();
            let s = self.settings;
            // One fault per event at most: late, else out of order, else perhaps duplicated.
            if draw < s.late_fraction {
                record(at, Faults::LATE);
                self.late.push((at + s.late_delay, event.clone()));
                continue;
            }
            let key = key(event);
            if let Some(key) = key
                && draw < s.late_fraction + s.out_of_order_fraction
                && !self.waiting.contains_key(&key)
            {
                self.waiting.insert(key, event.clone());
                continue;
            }
            out.push(event.clone());
            if let Some(held) = key.and_then(|k| self.waiting.remove(&k)) {
                record(held.event_time(), Faults::OUT_OF_ORDER);
                out.push(held);
            }
            if self.rng.random::<f64>() < s.duplicate_fraction {
                record(at, Faults::DUPLICATE);
                out.push(event.clone());
            }
        }
        out
    }

    /// What is due at `watermark`: late events whose delay has passed, and held events whose
    /// key has had no later event within the limit (recorded as late).
    pub fn due(
        &mut self,
        watermark: Timestamp,
        mut record: impl FnMut(Timestamp, Faults),
    ) -> Vec<Event> {
        let mut out = Vec::new();
        self.late.retain(|(from, event)| {
            let due = *from <= watermark;
            if due {
                out.push(event.clone());
            }
            !due
        });
        let expired: Vec<(Topic, i64)> = self
            .waiting
            .iter()
            .filter(|(_, e)| e.event_time() + OUT_OF_ORDER_LIMIT <= watermark)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(held) = self.waiting.remove(&k) {
                record(held.event_time(), Faults::LATE);
                out.push(held);
            }
        }
        out.sort_by_key(Event::event_time);
        out
    }

    /// Everything still held, at the end of the run (held-back events count as late).
    pub fn drain(&mut self, record: impl FnMut(Timestamp, Faults)) -> Vec<Event> {
        self.due(Timestamp::from_micros(i64::MAX / 2), record)
    }
}

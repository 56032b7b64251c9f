//! The ground truth: what really happened, per event-time hour, written beside the data.
//!
//! The pipeline passes every event bound for the sink through a [`Recorder`]: it is first
//! counted in the ledger of its event-time hour (events by type, unique orders placed, order
//! value, captured and refunded amounts by currency, payments by status, and the faults
//! injected into the stream), then the fault injector decides what goes on now. When
//! simulated time has passed an hour's end by [`GRACE`], the hour is written to
//! `<dir>/date=YYYY-MM-DD/hour=HH.json` (replaced atomically, see [`crate::durable`]), and
//! written again if anything of that hour comes later. A downstream pipeline that is correct
//! reproduces these numbers exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::durable::{self, DirLock, LockError};
use crate::faults::{FaultInjector, Faults};
use crate::model::{
    CurrencyCode, Event, EventType, MICROS_PER_HOUR, Money, PaymentStatus, Timestamp,
};
use crate::settings::{optional, path};

/// The ledger directory's lock (hidden: readers take `date=*/hour=*.json`).
const LOCK_FILE: &str = ".simulator.lock";

/// How long after an hour ends its ledger is written (simulated time): events of an hour can
/// reach the sink a little after the hour, from shoppers that ran late within the clock's skew.
pub const GRACE: Duration = Duration::from_secs(60);

crate::section! {
    /// The ground truth written beside the data.
    pub struct LedgerSettings in "ledger" {
        /// Where the ground-truth ledger goes (default: <output-dir>/_ledger).
        pub dir: Option<PathBuf> = optional(path()), flag = "--ledger-dir";
    }
}

/// A ledger file that cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the ledger file `{path}`: {source}")]
pub struct LedgerError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// One event-time hour of ground truth. Its serde form is what a save of the run keeps.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourLedger {
    pub events: BTreeMap<EventType, u64>,
    pub orders_placed: u64,
    #[serde(with = "cents")]
    pub order_value: BTreeMap<CurrencyCode, Money>,
    #[serde(with = "cents")]
    pub captured: BTreeMap<CurrencyCode, Money>,
    #[serde(with = "cents")]
    pub refunded: BTreeMap<CurrencyCode, Money>,
    pub payments: BTreeMap<PaymentStatus, u64>,
    pub faults: Faults,
}

impl HourLedger {
    /// Counts one event.
    pub fn record(&mut self, event: &Event) {
        *self.events.entry(event.event_type()).or_default() += 1;
        match event {
            Event::Order(o) if o.event_type == EventType::OrderPlaced => {
                self.orders_placed += 1;
                *self.order_value.entry(o.currency).or_default() += o.total;
            }
            Event::Payment(p) => {
                *self.payments.entry(p.status).or_default() += 1;
                match p.status {
                    PaymentStatus::Captured => {
                        *self.captured.entry(p.currency).or_default() += p.amount
                    }
                    PaymentStatus::Refunded => {
                        *self.refunded.entry(p.currency).or_default() += p.amount
                    }
                    PaymentStatus::Authorized | PaymentStatus::Declined => {}
                }
            }
            Event::Order(_) | Event::Customer(_) | Event::Product(_) => {}
        }
    }

    /// The hour as JSON, amounts as decimal text.
    pub fn to_json(&self, hour_start: Timestamp) -> Value {
        let money = |m: &BTreeMap<CurrencyCode, Money>| -> BTreeMap<String, String> {
            m.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        fn names<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> BTreeMap<String, u64> {
            m.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        }
        json!({
            "hour_start": hour_start.to_string(),
            "events": names(&self.events),
            "events_total": self.events.values().sum::<u64>(),
            "orders_placed": self.orders_placed,
            "order_value": money(&self.order_value),
            "captured": money(&self.captured),
            "refunded": money(&self.refunded),
            "payments": names(&self.payments),
            "faults": {
                "duplicates": self.faults.duplicates,
                "late": self.faults.late,
                "out_of_order": self.faults.out_of_order,
            },
        })
    }
}

/// Amounts by currency, saved as cents.
mod cents {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::model::{CurrencyCode, Money};

    pub fn serialize<S: Serializer>(
        amounts: &BTreeMap<CurrencyCode, Money>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_map(amounts.iter().map(|(code, m)| (code, m.cents())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<CurrencyCode, Money>, D::Error> {
        let cents = BTreeMap::<CurrencyCode, i64>::deserialize(deserializer)?;
        Ok(cents
            .into_iter()
            .map(|(code, c)| (code, Money::from_cents(c)))
            .collect())
    }
}

/// The ledger's part of a save: every hour seen, by its start (microseconds).
pub type LedgerState = BTreeMap<i64, HourLedger>;

/// The ledger of a run: the hours seen, and which of them changed since last written.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    hours: BTreeMap<i64, HourLedger>,
    dirty: BTreeSet<i64>,
    /// Held: one simulator per ledger directory.
    _lock: DirLock,
}

impl Ledger {
    /// A ledger writing under `dir`, which is created.
    /// A ledger writing under `dir`, which is created and locked: a second simulator with the
    /// same ledger directory would overwrite its hours.
    pub fn new(dir: &Path) -> Result<Self, LockError> {
        let lock = DirLock::acquire(dir, LOCK_FILE)?;
        Ok(Self {
            dir: dir.to_owned(),
            hours: BTreeMap::new(),
            dirty: BTreeSet::new(),
            _lock: lock,
        })
    }

    fn hour(&mut self, at: Timestamp) -> &mut HourLedger {
        let start = at.hour_floor().as_micros();
        self.dirty.insert(start);
        self.hours.entry(start).or_default()
    }

    /// Counts events handed to the sink.
    pub fn record(&mut self, events: &[Event]) {
        for event in events {
            self.hour(event.event_time()).record(event);
        }
    }

    /// Counts injected faults against the hour of the event they affected.
    pub fn record_faults(&mut self, at: Timestamp, faults: Faults) {
        self.hour(at).faults.add(faults);
    }

    /// Writes the changed hours that ended at least [`GRACE`] before `watermark`.
    pub fn advance(&mut self, watermark: Timestamp) -> Result<(), LedgerError> {
        let limit = watermark.as_micros() - GRACE.as_micros() as i64 - MICROS_PER_HOUR;
        let due: Vec<i64> = self.dirty.range(..=limit).copied().collect();
        for start in due {
            self.write(start)?;
        }
        Ok(())
    }

    /// Writes every changed hour.
    pub fn finish(&mut self) -> Result<(), LedgerError> {
        let due: Vec<i64> = self.dirty.iter().copied().collect();
        for start in due {
            self.write(start)?;
        }
        Ok(())
    }

    /// Every hour, for a save.
    pub fn state(&self) -> LedgerState {
        self.hours.clone()
    }

    /// Resumes from saved hours. Each is written again when due: its file may hold counts of
    /// events generated after the save, which the resumed run generates again.
    pub fn restore(&mut self, hours: LedgerState) {
        self.dirty.extend(hours.keys().copied());
        self.hours.extend(hours);
    }

    /// The path of an hour's file.
    pub fn path_of(&self, hour_start: Timestamp) -> PathBuf {
        let at = hour_start.to_datetime();
        self.dir
            .join(at.format("date=%Y-%m-%d").to_string())
            .join(at.format("hour=%H.json").to_string())
    }

    fn write(&mut self, start: i64) -> Result<(), LedgerError> {
        let hour_start = Timestamp::from_micros(start);
        let path = self.path_of(hour_start);
        let io = |source| LedgerError {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(&self.hours[&start].to_json(hour_start))
            .expect("a ledger is plain JSON");
        durable::write_atomically(&path, (text + "\n").as_bytes()).map_err(io)?;
        self.dirty.remove(&start);
        Ok(())
    }
}

/// The ledger of a run and the faults injected into its stream: every event bound for the sink
/// passes through [`Recorder::take`], which counts it and decides what goes on now.
#[derive(Debug)]
pub struct Recorder {
    ledger: Ledger,
    faults: Option<FaultInjector>,
}

impl Recorder {
    pub fn new(ledger: Ledger, faults: Option<FaultInjector>) -> Self {
        Self { ledger, faults }
    }

    /// Records `events` and returns what to hand to the sink now: the events themselves when
    /// no fault is injected.
    pub fn take<'a>(&mut self, events: &'a [Event]) -> std::borrow::Cow<'a, [Event]> {
        self.ledger.record(events);
        let ledger = &mut self.ledger;
        match &mut self.faults {
            Some(faults) => faults
                .apply(events, |at, f| ledger.record_faults(at, f))
                .into(),
            None => events.into(),
        }
    }

    /// Simulated time reached `watermark`: the held-back events now due (to hand to the sink),
    /// after writing the ledger's hours that are complete.
    pub fn advance(&mut self, watermark: Timestamp) -> Result<Vec<Event>, LedgerError> {
        let ledger = &mut self.ledger;
        let due = match &mut self.faults {
            Some(faults) => faults.due(watermark, |at, f| ledger.record_faults(at, f)),
            None => Vec::new(),
        };
        self.ledger.advance(watermark)?;
        Ok(due)
    }

    /// Every event still held back (counted late), for a save or the end of the run.
    pub fn release(&mut self) -> Vec<Event> {
        let ledger = &mut self.ledger;
        match &mut self.faults {
            Some(faults) => faults.drain(|at, f| ledger.record_faults(at, f)),
            None => Vec::new(),
        }
    }

    /// The ledger's part of a save.
    pub fn state(&self) -> LedgerState {
        self.ledger.state()
    }

    /// Resumes the ledger from a save.
    pub fn restore(&mut self, state: LedgerState) {
        self.ledger.restore(state);
    }

    /// Writes every hour not written yet, at the end of the run.
    pub fn finish(&mut self) -> Result<(), LedgerError> {
        self.ledger.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PaymentEvent, PaymentMethod, Timestamp};

    fn payment(at: i64, status: PaymentStatus, cents: i64) -> Event {
        Event::Payment(PaymentEvent {
            row: Default::default(),
            event_id: uuid::Uuid::nil(),
            event_type: status.event_type(),
            event_time: Timestamp::from_micros(at),
            payment_id: 1,
            order_id: 1,
            customer_id: 1,
            amount: Money::from_cents(cents),
            currency: CurrencyCode::from_ascii(b"EUR"),
            method: PaymentMethod::Paypal,
            status,
            attempt: 1,
            failure_reason: None,
        })
    }

    #[test]
    fn hours_are_written_after_their_grace_and_rewritten_when_late_events_come() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::new(dir.path()).unwrap();
        let hour = MICROS_PER_HOUR;
        ledger.record(&[
            payment(10, PaymentStatus::Captured, 1250),
            payment(20, PaymentStatus::Refunded, 250),
        ]);
        ledger
            .advance(Timestamp::from_micros(hour + 59_000_000))
            .unwrap();
        let path = ledger.path_of(Timestamp::from_micros(0));
        assert!(!path.exists(), "written before the grace");
        ledger
            .advance(Timestamp::from_micros(hour + 60_000_000))
            .unwrap();
        let read = |p: &Path| -> Value {
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
        };
        let first = read(&path);
        assert_eq!(first["captured"]["EUR"], "12.50");
        assert_eq!(first["refunded"]["EUR"], "2.50");
        assert_eq!(first["payments"]["captured"], 1);
        assert!(path.ends_with("date=1970-01-01/hour=00.json"));
        // A late event of that hour rewrites it at the end.
        ledger.record(&[payment(30, PaymentStatus::Captured, 100)]);
        ledger.finish().unwrap();
        assert_eq!(read(&path)["captured"]["EUR"], "13.50");
        assert!(matches!(Ledger::new(dir.path()), Err(LockError::Held(_))));
        assert_eq!(read(&path)["events_total"], 3);
    }
}

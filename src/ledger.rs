//! The ground truth: what really happened, per event-time hour, written beside the data.
//!
//! A [`LedgerSink`] wraps the run's sink: every event handed to the sink is first counted in
//! the ledger of its event-time hour (events by type, unique orders placed, order value,
//! captured and refunded amounts by currency, payments by status, and the faults injected
//! into the stream). When simulated time has passed an hour's end by [`GRACE`], the hour is
//! written to `<dir>/date=YYYY-MM-DD/hour=HH.json` (through a temporary file and a rename), and
//! written again if anything of that hour comes later. A downstream pipeline that is correct
//! reproduces these numbers exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::faults::FaultInjector;
use crate::model::{Event, MICROS_PER_HOUR, Money, Timestamp};
use crate::sinks::{Sink, SinkError, TopicCounts};
use crate::state::{LedgerHourState, SinkState};

/// How long after an hour ends its ledger is written (simulated time): events of an hour can
/// reach the sink a little after the hour, from shoppers that ran late within the clock's skew.
pub const GRACE: Duration = Duration::from_secs(60);

/// Faults injected into the stream: events sent more than once, late, or out of order.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
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
}

/// One event-time hour of ground truth.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HourLedger {
    pub events: BTreeMap<&'static str, u64>,
    pub orders_placed: u64,
    pub order_value: BTreeMap<&'static str, Money>,
    pub captured: BTreeMap<&'static str, Money>,
    pub refunded: BTreeMap<&'static str, Money>,
    pub payments: BTreeMap<&'static str, u64>,
    pub faults: Faults,
}

impl HourLedger {
    /// Counts one event.
    pub fn record(&mut self, event: &Event) {
        *self.events.entry(event.event_type()).or_default() += 1;
        match event {
            Event::Order(o) if o.event_type == "order_placed" => {
                self.orders_placed += 1;
                *self.order_value.entry(o.currency).or_default() += o.total;
            }
            Event::Payment(p) => {
                *self.payments.entry(p.status).or_default() += 1;
                match p.status {
                    "captured" => *self.captured.entry(p.currency).or_default() += p.amount,
                    "refunded" => *self.refunded.entry(p.currency).or_default() += p.amount,
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// The hour as JSON, amounts as decimal text.
    pub fn to_json(&self, hour_start: Timestamp) -> Value {
        let money = |m: &BTreeMap<&str, Money>| -> BTreeMap<String, String> {
            m.iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_string()))
                .collect()
        };
        json!({
            "hour_start": hour_start.to_string(),
            "events": self.events,
            "events_total": self.events.values().sum::<u64>(),
            "orders_placed": self.orders_placed,
            "order_value": money(&self.order_value),
            "captured": money(&self.captured),
            "refunded": money(&self.refunded),
            "payments": self.payments,
            "faults": {
                "duplicates": self.faults.duplicates,
                "late": self.faults.late,
                "out_of_order": self.faults.out_of_order,
            },
        })
    }
}

/// The one `&'static str` of each name restored from a saved state (event types, statuses and
/// currencies: a handful, whatever the number of hours).
fn intern(name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<BTreeSet<&'static str>> = std::sync::Mutex::new(BTreeSet::new());
    let mut names = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

impl HourLedger {
    /// The hour as saved state.
    pub fn to_state(&self, start: i64) -> LedgerHourState {
        let counts =
            |m: &BTreeMap<&str, u64>| m.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        let money = |m: &BTreeMap<&str, Money>| {
            m.iter()
                .map(|(k, v)| ((*k).to_owned(), v.cents()))
                .collect()
        };
        LedgerHourState {
            start,
            events: counts(&self.events),
            orders_placed: self.orders_placed,
            order_value: money(&self.order_value),
            captured: money(&self.captured),
            refunded: money(&self.refunded),
            payments: counts(&self.payments),
            faults: (
                self.faults.duplicates,
                self.faults.late,
                self.faults.out_of_order,
            ),
        }
    }

    /// The hour saved as `state`.
    pub fn from_state(state: &LedgerHourState) -> Self {
        let counts = |v: &[(String, u64)]| v.iter().map(|(k, n)| (intern(k), *n)).collect();
        let money = |v: &[(String, i64)]| {
            v.iter()
                .map(|(k, c)| (intern(k), Money::from_cents(*c)))
                .collect()
        };
        Self {
            events: counts(&state.events),
            orders_placed: state.orders_placed,
            order_value: money(&state.order_value),
            captured: money(&state.captured),
            refunded: money(&state.refunded),
            payments: counts(&state.payments),
            faults: Faults {
                duplicates: state.faults.0,
                late: state.faults.1,
                out_of_order: state.faults.2,
            },
        }
    }
}

/// The ledger of a run: the hours seen, and which of them changed since last written.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    hours: BTreeMap<i64, HourLedger>,
    dirty: BTreeSet<i64>,
}

impl Ledger {
    /// A ledger writing under `dir`, which is created.
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            hours: BTreeMap::new(),
            dirty: BTreeSet::new(),
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
        let hour = &mut self.hour(at).faults;
        hour.duplicates += faults.duplicates;
        hour.late += faults.late;
        hour.out_of_order += faults.out_of_order;
    }

    /// Writes the changed hours that ended at least [`GRACE`] before `watermark`.
    pub fn advance(&mut self, watermark: Timestamp) -> Result<(), SinkError> {
        let limit = watermark.as_micros() - GRACE.as_micros() as i64 - MICROS_PER_HOUR;
        let due: Vec<i64> = self.dirty.range(..=limit).copied().collect();
        for start in due {
            self.write(start)?;
        }
        Ok(())
    }

    /// Writes every changed hour.
    pub fn finish(&mut self) -> Result<(), SinkError> {
        let due: Vec<i64> = self.dirty.iter().copied().collect();
        for start in due {
            self.write(start)?;
        }
        Ok(())
    }

    /// Every hour, for a save.
    pub fn state(&self) -> Vec<LedgerHourState> {
        self.hours
            .iter()
            .map(|(start, hour)| hour.to_state(*start))
            .collect()
    }

    /// Resumes from saved hours. Each is written again when due: its file may hold counts of
    /// events generated after the save, which the resumed run generates again.
    pub fn restore(&mut self, hours: &[LedgerHourState]) {
        for state in hours {
            self.hours
                .insert(state.start, HourLedger::from_state(state));
            self.dirty.insert(state.start);
        }
    }

    /// The path of an hour's file.
    pub fn path_of(&self, hour_start: Timestamp) -> PathBuf {
        let at = hour_start.to_datetime();
        self.dir
            .join(at.format("date=%Y-%m-%d").to_string())
            .join(at.format("hour=%H.json").to_string())
    }

    fn write(&mut self, start: i64) -> Result<(), SinkError> {
        let hour_start = Timestamp::from_micros(start);
        let path = self.path_of(hour_start);
        let io = |source| SinkError::Io {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(&self.hours[&start].to_json(hour_start))
            .expect("a ledger is plain JSON");
        std::fs::create_dir_all(path.parent().expect("a dated directory")).map_err(io)?;
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, text + "\n").map_err(io)?;
        std::fs::rename(&temporary, &path).map_err(io)?;
        self.dirty.remove(&start);
        Ok(())
    }
}

/// A sink that keeps the ledger of everything it is handed, injects the configured faults,
/// then hands the result on.
pub struct LedgerSink {
    inner: Box<dyn Sink>,
    ledger: Ledger,
    faults: Option<FaultInjector>,
}

impl LedgerSink {
    pub fn new(inner: Box<dyn Sink>, ledger: Ledger) -> Self {
        Self {
            inner,
            ledger,
            faults: None,
        }
    }

    /// Resumes the ledger from saved hours.
    pub fn restore(&mut self, hours: &[LedgerHourState]) {
        self.ledger.restore(hours);
    }

    /// Injects faults into what is handed on.
    pub fn with_faults(mut self, faults: FaultInjector) -> Self {
        self.faults = Some(faults);
        self
    }

    /// Records `events` and returns what to hand on now, or `None` to hand them on as they are.
    fn take(&mut self, events: &[Event]) -> Option<Vec<Event>> {
        self.ledger.record(events);
        let ledger = &mut self.ledger;
        self.faults
            .as_mut()
            .map(|f| f.apply(events, |at, faults| ledger.record_faults(at, faults)))
    }
}

impl LedgerSink {
    /// Hands on every event the fault injector holds back (counted late).
    fn release_held(&mut self) -> Result<(), SinkError> {
        let ledger = &mut self.ledger;
        let held = self
            .faults
            .as_mut()
            .map(|f| f.drain(|at, faults| ledger.record_faults(at, faults)))
            .unwrap_or_default();
        if held.is_empty() {
            Ok(())
        } else {
            self.inner.write(&held)
        }
    }
}

impl Sink for LedgerSink {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        match self.take(events) {
            Some(out) => self.inner.write(&out),
            None => self.inner.write(events),
        }
    }

    fn write_created(
        &mut self,
        events: &[Event],
        created: tokio::time::Instant,
    ) -> Result<(), SinkError> {
        match self.take(events) {
            Some(out) => self.inner.write_created(&out, created),
            None => self.inner.write_created(events, created),
        }
    }

    fn advance(&mut self, watermark: Timestamp) -> Result<(), SinkError> {
        if let Some(faults) = &mut self.faults {
            let ledger = &mut self.ledger;
            let due = faults.due(watermark, |at, f| ledger.record_faults(at, f));
            if !due.is_empty() {
                self.inner.write(&due)?;
            }
        }
        self.inner.advance(watermark)?;
        self.ledger.advance(watermark)
    }

    fn checkpoint(&mut self) -> Result<SinkState, SinkError> {
        // A save holds no event back: what faults held is released now.
        self.release_held()?;
        let mut state = self.inner.checkpoint()?;
        state.ledger = self.ledger.state();
        Ok(state)
    }

    fn commit(&mut self) -> Result<(), SinkError> {
        self.inner.commit()
    }

    fn close(&mut self) -> Result<(), SinkError> {
        let released = self.release_held();
        let closed = self.inner.close();
        self.ledger.finish()?;
        released.and(closed)
    }

    fn delivered(&self) -> TopicCounts {
        self.inner.delivered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PaymentEvent, Timestamp};

    fn payment(at: i64, status: &'static str, cents: i64) -> Event {
        Event::Payment(PaymentEvent {
            event_id: uuid::Uuid::nil(),
            event_type: "payment_captured",
            event_time: Timestamp::from_micros(at),
            payment_id: 1,
            order_id: 1,
            customer_id: 1,
            amount: Money::from_cents(cents),
            currency: "EUR",
            method: "paypal",
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
        ledger.record(&[payment(10, "captured", 1250), payment(20, "refunded", 250)]);
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
        ledger.record(&[payment(30, "captured", 100)]);
        ledger.finish().unwrap();
        assert_eq!(read(&path)["captured"]["EUR"], "13.50");
        assert_eq!(read(&path)["events_total"], 3);
    }
}

//! Simulated instants.
//!
//! [`Timestamp`] is a point on the simulation's time line, in microseconds since the Unix epoch
//! (UTC). Shoppers schedule their next step at microsecond resolution so that high rates are not
//! quantised; events carry the time truncated to milliseconds, the resolution of the Avro
//! `timestamp-millis` logical type.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

const MICROS_PER_MILLI: i64 = 1_000;
const MICROS_PER_SECOND: i64 = 1_000_000;
/// Microseconds in one hour.
pub const MICROS_PER_HOUR: i64 = 3_600 * MICROS_PER_SECOND;

/// A simulated instant: microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `micros` microseconds after the Unix epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Milliseconds since the Unix epoch, truncated towards the past (the Avro value).
    pub const fn as_millis(self) -> i64 {
        self.0.div_euclid(MICROS_PER_MILLI)
    }

    /// The same instant truncated to whole milliseconds.
    pub const fn truncate_to_millis(self) -> Self {
        Self(self.as_millis() * MICROS_PER_MILLI)
    }

    /// The start of the UTC hour this instant falls in.
    pub const fn hour_floor(self) -> Self {
        Self(self.0.div_euclid(MICROS_PER_HOUR) * MICROS_PER_HOUR)
    }

    /// This instant as a chrono date-time.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The instant a chrono date-time names.
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Self(at.timestamp_micros())
    }

    /// Adds a duration, saturating at the end of representable time.
    pub fn saturating_add(self, duration: Duration) -> Self {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(micros))
    }

    /// Adds a number of microseconds (fractions are truncated), saturating.
    pub fn add_micros_f64(self, micros: f64) -> Self {
        // `as` saturates for floats out of range, which is what we want here.
        Self(self.0.saturating_add(micros as i64))
    }

    /// Microseconds from `earlier` to `self` (negative when `earlier` is later).
    pub const fn micros_since(self, earlier: Timestamp) -> i64 {
        self.0 - earlier.0
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Duration) -> Timestamp {
        self.saturating_add(rhs)
    }
}

impl Sub<Timestamp> for Timestamp {
    type Output = i64;
    fn sub(self, rhs: Timestamp) -> i64 {
        self.micros_since(rhs)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &self
                .to_datetime()
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        )
    }
}

/// Serialises as RFC 3339 text for human-readable formats (JSON) and as milliseconds since the
/// epoch otherwise (the Avro `timestamp-millis` long).
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_i64(self.as_millis())
        }
    }
}

/// Serde of an instant as its microseconds since the epoch, exactly (`#[serde(with)]`), for
/// the simulator's own state.
pub mod micros {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(t.as_micros())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        i64::deserialize(d).map(Timestamp::from_micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_truncate_towards_the_past() {
        assert_eq!(Timestamp::from_micros(1_999).as_millis(), 1);
        assert_eq!(Timestamp::from_micros(-1).as_millis(), -1);
        assert_eq!(
            Timestamp::from_micros(2_500)
                .truncate_to_millis()
                .as_micros(),
            2_000
        );
    }

    #[test]
    fn hour_floor_and_display() {
        let t = Timestamp::from_datetime("2026-03-01T10:59:59.999Z".parse().unwrap());
        assert_eq!(t.hour_floor().to_string(), "2026-03-01T10:00:00.000Z");
        assert_eq!(t.to_string(), "2026-03-01T10:59:59.999Z");
    }

    #[test]
    fn serialises_as_text_in_json() {
        let t = Timestamp::from_datetime("2026-03-01T10:00:00.123Z".parse().unwrap());
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-03-01T10:00:00.123Z\""
        );
    }
}

//! How busy the shop is over time: the intensity of the non-homogeneous Poisson process that
//! shopping sessions follow.
//!
//! The intensity at an instant is the long-run average (`--rate`) times a shape: a curve by
//! hour of day times a curve by day of week, both in the shop's time zone and normalised so
//! that their weekly mean is 1, times the uplift of every promotion running then. Sessions are
//! sampled exactly by thinning (Lewis and Shedler): candidates arrive at the bounding rate
//! `rate * bound()` and each is kept with probability `shape(t) / bound()`.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{Datelike, Timelike};
use chrono_tz::Tz;

use super::Timestamp;

/// Hours in a day, days in a week.
pub const HOURS: usize = 24;
pub const DAYS: usize = 7;

/// A promotion: from `start` (inclusive) to `end` (exclusive), sessions are `uplift` times as
/// frequent; with a category, its products are `uplift` times as likely to be chosen and sold
/// at `discount` off.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    pub name: String,
    pub start: Timestamp,
    pub end: Timestamp,
    pub uplift: f64,
    pub category: Option<String>,
    /// Fraction taken off the promoted category's lines (0 for none).
    pub discount: f64,
}

impl Promotion {
    pub fn is_running(&self, at: Timestamp) -> bool {
        self.start <= at && at < self.end
    }
}

/// The shape of the shop's traffic over time.
#[derive(Debug, Clone)]
pub struct TrafficProfile {
    time_zone: Tz,
    /// Hour-of-day times day-of-week factors, normalised: `weekly[d] * hourly[h]` has mean 1.
    hourly: [f64; HOURS],
    weekly: [f64; DAYS],
    promotions: Vec<Promotion>,
    bound: f64,
    flat: bool,
    /// Tells this profile's entries in the per-thread cache from another's.
    id: u64,
}

impl PartialEq for TrafficProfile {
    fn eq(&self, other: &Self) -> bool {
        (self.time_zone, self.hourly, self.weekly, &self.promotions)
            == (
                other.time_zone,
                other.hourly,
                other.weekly,
                &other.promotions,
            )
    }
}

/// Every UTC offset is a multiple of 15 minutes, so the curves' factor is constant within
/// each quarter hour of UTC.
const SLOT_MICROS: i64 = 15 * 60 * 1_000_000;

static PROFILES: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The last (profile, quarter hour, factor) computed on this thread: shoppers woken
    /// together look up the same quarter hour.
    static LAST: Cell<(u64, i64, f64)> = const { Cell::new((0, 0, 0.0)) };
}

impl TrafficProfile {
    /// A constant intensity: every instant at the average rate.
    pub fn flat() -> Self {
        Self::new(Tz::UTC, [1.0; HOURS], [1.0; DAYS], Vec::new()).expect("a flat profile is valid")
    }

    /// A profile from relative curves (any positive scale: they are normalised), by hour of day
    /// 0..23 and by day of week Monday..Sunday in `time_zone`, and promotions.
    pub fn new(
        time_zone: Tz,
        hourly: [f64; HOURS],
        weekly: [f64; DAYS],
        promotions: Vec<Promotion>,
    ) -> Result<Self, String> {
        if hourly
            .iter()
            .chain(&weekly)
            .any(|f| !f.is_finite() || *f < 0.0)
        {
            return Err("curve factors must be finite and not negative".into());
        }
        let hour_sum: f64 = hourly.iter().sum();
        let day_sum: f64 = weekly.iter().sum();
        if hour_sum <= 0.0 || day_sum <= 0.0 {
            return Err("a curve must have a factor above 0".into());
        }
        for p in &promotions {
            if !(p.uplift.is_finite() && p.uplift > 0.0) {
                return Err(format!("promotion {}: the uplift must be above 0", p.name));
            }
            if p.end <= p.start {
                return Err(format!("promotion {}: it must end after it starts", p.name));
            }
        }
        let hourly = hourly.map(|f| f * HOURS as f64 / hour_sum);
        let weekly = weekly.map(|f| f * DAYS as f64 / day_sum);
        let max = |c: &[f64]| c.iter().copied().fold(0.0, f64::max);
        // Overlapping promotions multiply; the bound allows for all of them at once.
        let uplifts: f64 = promotions.iter().map(|p| p.uplift.max(1.0)).product();
        let bound = max(&hourly) * max(&weekly) * uplifts;
        let flat = promotions.is_empty() && hourly.iter().chain(&weekly).all(|f| *f == 1.0);
        Ok(Self {
            time_zone,
            hourly,
            weekly,
            promotions,
            bound,
            flat,
            id: PROFILES.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The intensity at `at` relative to the long-run average.
    pub fn shape(&self, at: Timestamp) -> f64 {
        let slot = at.as_micros().div_euclid(SLOT_MICROS);
        let curves = LAST.with(|last| {
            let (id, cached_slot, factor) = last.get();
            if id == self.id && cached_slot == slot {
                return factor;
            }
            let factor = self.curves(at);
            last.set((self.id, slot, factor));
            factor
        });
        if self.promotions.is_empty() {
            return curves;
        }
        let promoted: f64 = self
            .promotions
            .iter()
            .filter(|p| p.is_running(at))
            .map(|p| p.uplift)
            .product();
        curves * promoted
    }

    /// The daily and weekly curves' factor at `at`, in the profile's time zone.
    fn curves(&self, at: Timestamp) -> f64 {
        let local = at.to_datetime().with_timezone(&self.time_zone);
        let day = local.weekday().num_days_from_monday() as usize;
        self.weekly[day] * self.hourly[local.hour() as usize]
    }

    /// Whether the shape is 1 at every instant.
    pub fn is_flat(&self) -> bool {
        self.flat
    }

    /// The promotions, in the order configured.
    pub fn promotions(&self) -> &[Promotion] {
        &self.promotions
    }

    /// An upper bound of `shape` at every instant.
    pub fn bound(&self) -> f64 {
        self.bound
    }

    /// The category promotion running at `at`, if any (the first, when several are).
    pub fn category_promotion(&self, at: Timestamp) -> Option<&Promotion> {
        self.promotions
            .iter()
            .find(|p| p.category.is_some() && p.is_running(at))
    }

    /// The expected number of sessions in `[from, to)` at a long-run average of
    /// `rate_per_second`: the integral of the intensity, summed hour by hour (the shape is
    /// constant within an hour, and promotions are checked at their own edges).
    pub fn expected_sessions(&self, rate_per_second: f64, from: Timestamp, to: Timestamp) -> f64 {
        let mut edges: Vec<i64> = vec![from.as_micros(), to.as_micros()];
        let mut hour = from.hour_floor().as_micros() + super::MICROS_PER_HOUR;
        while hour < to.as_micros() {
            edges.push(hour);
            hour += super::MICROS_PER_HOUR;
        }
        for p in &self.promotions {
            for edge in [p.start.as_micros(), p.end.as_micros()] {
                if from.as_micros() < edge && edge < to.as_micros() {
                    edges.push(edge);
                }
            }
        }
        edges.sort_unstable();
        edges.dedup();
        edges
            .windows(2)
            .map(|w| {
                let seconds = (w[1] - w[0]) as f64 / 1e6;
                self.shape(Timestamp::from_micros(w[0])) * rate_per_second * seconds
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::from_datetime(text.parse().unwrap())
    }

    #[test]
    fn curves_are_normalised_to_a_weekly_mean_of_one() {
        let mut hourly = [1.0; HOURS];
        hourly[20] = 5.0;
        let weekly = [1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0];
        let profile = TrafficProfile::new(Tz::UTC, hourly, weekly, Vec::new()).unwrap();
        let monday = at("2026-03-02T00:00:00Z");
        let week = monday.as_micros() + 7 * 24 * super::super::MICROS_PER_HOUR;
        let expected = profile.expected_sessions(1.0, monday, Timestamp::from_micros(week));
        assert!((expected - 7.0 * 86_400.0).abs() < 1e-6, "{expected}");
        assert!(
            profile.shape(at("2026-03-07T20:30:00Z")) > profile.shape(at("2026-03-02T20:30:00Z"))
        );
        assert!(profile.shape(at("2026-03-07T20:30:00Z")) <= profile.bound());
    }

    #[test]
    fn the_curves_follow_the_time_zone() {
        let mut hourly = [0.0; HOURS];
        hourly[9] = 1.0; // only 9:00-10:00 local time
        let profile = TrafficProfile::new(
            chrono_tz::America::New_York,
            hourly,
            [1.0; DAYS],
            Vec::new(),
        )
        .unwrap();
        // 9:30 in New York in March (after the switch to summer time) is 13:30 UTC.
        assert!(profile.shape(at("2026-03-09T13:30:00Z")) > 0.0);
        assert_eq!(profile.shape(at("2026-03-09T09:30:00Z")), 0.0);
    }

    #[test]
    fn promotions_multiply_while_they_run() {
        let promotion = Promotion {
            name: "sale".into(),
            start: at("2026-03-02T10:00:00Z"),
            end: at("2026-03-02T12:00:00Z"),
            uplift: 3.0,
            category: Some("Books".into()),
            discount: 0.2,
        };
        let profile =
            TrafficProfile::new(Tz::UTC, [1.0; HOURS], [1.0; DAYS], vec![promotion]).unwrap();
        assert_eq!(profile.shape(at("2026-03-02T09:59:59Z")), 1.0);
        assert_eq!(profile.shape(at("2026-03-02T10:00:00Z")), 3.0);
        assert_eq!(profile.shape(at("2026-03-02T12:00:00Z")), 1.0);
        assert_eq!(profile.bound(), 3.0);
        assert!(
            profile
                .category_promotion(at("2026-03-02T11:00:00Z"))
                .is_some()
        );
        let day =
            profile.expected_sessions(1.0, at("2026-03-02T00:00:00Z"), at("2026-03-03T00:00:00Z"));
        assert!((day - (86_400.0 + 2.0 * 7_200.0)).abs() < 1e-6);
    }

    #[test]
    fn bad_curves_are_refused() {
        assert!(TrafficProfile::new(Tz::UTC, [0.0; HOURS], [1.0; DAYS], Vec::new()).is_err());
        let mut hourly = [1.0; HOURS];
        hourly[3] = f64::NAN;
        assert!(TrafficProfile::new(Tz::UTC, hourly, [1.0; DAYS], Vec::new()).is_err());
    }
}

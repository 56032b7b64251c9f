//! Backfill, then live: with `--speed max` and a start in the past the simulator races through
//! history, then runs in real time (or stops, with `--stop-at-present`). These tests are about
//! the wall clock itself, so they read it and take a few real seconds.

// The subject here is the wall clock: reading it is the point.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Output;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};

fn run(start: DateTime<Utc>, extra: &[&str]) -> (Output, std::time::Duration) {
    let began = Instant::now();
    let output = common::simulator()
        .args(["--sink", "stdout", "--speed", "max", "--profile", "flat"])
        .args(["--rate", "36000/h", "--shoppers", "200", "--seed", "3"])
        .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "json"])
        .arg("--start")
        .arg(start.to_rfc3339())
        .args(extra)
        .output()
        .unwrap();
    common::assert_success(&output);
    (output, began.elapsed())
}

fn event_times(output: &Output) -> Vec<DateTime<Utc>> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            event["event_time"].as_str().unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn a_backfill_stops_at_the_present_when_asked() {
    let start = Utc::now() - Duration::hours(6);
    let (output, took) = run(start, &["--stop-at-present"]);
    let ended = Utc::now();
    let times = event_times(&output);
    // Six hours at 10 orders a second, simulated in a fraction of that.
    assert!(times.len() > 300_000, "{} events", times.len());
    assert!(took.as_secs() < 120, "the backfill took {took:?}");
    let last = *times.iter().max().unwrap();
    assert!(last <= ended, "an event from the future: {last}");
    assert!(
        ended - last < Duration::seconds(took.as_secs() as i64 + 5),
        "stopped at {last}"
    );
}

#[test]
fn a_backfill_goes_on_in_real_time_at_the_present() {
    // One minute of history, then four seconds of real time.
    let start = Utc::now() - Duration::seconds(60);
    let (output, took) = run(start, &["--duration", "64s"]);
    let ended = Utc::now();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("backfill reached the present"), "{log}");
    // The live part ran in real time: the history took a moment, the live seconds their time.
    assert!(took.as_secs_f64() > 2.5, "the run took {took:?}");
    let times = event_times(&output);
    let last = *times.iter().max().unwrap();
    assert!(
        last <= ended,
        "an event from the future: {last} after {ended}"
    );
    // Events kept coming during the live seconds.
    let live = times
        .iter()
        .filter(|t| **t > ended - Duration::seconds(3))
        .count();
    assert!(live > 5, "{live} events in the last live seconds");
}

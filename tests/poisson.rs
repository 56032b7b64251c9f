//! The arrival process: orders per hour and the gaps between orders follow the Poisson process
//! of the target rate.

mod common;

use common::{run_in_memory, settings, start};
use simulator::model::{Event, EventType, MICROS_PER_HOUR};

/// Kolmogorov–Smirnov distance between a sample and the exponential law of mean `mean`.
fn ks_exponential(mut sample: Vec<f64>, mean: f64) -> f64 {
    sample.sort_by(f64::total_cmp);
    let n = sample.len() as f64;
    sample
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let cdf = 1.0 - (-x / mean).exp();
            (cdf - i as f64 / n)
                .abs()
                .max(((i + 1) as f64 / n - cdf).abs())
        })
        .fold(0.0, f64::max)
}

#[test]
fn orders_follow_the_poisson_process_of_the_rate() {
    const HOURS: u64 = 240;
    const RATE: f64 = 500.0;
    let (events, _) = run_in_memory(&settings("500/h", 2_000), 20260302, HOURS);
    let mut order_times: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Order(o) if o.event_type == EventType::OrderPlaced => {
                Some(o.event_time.as_micros())
            }
            _ => None,
        })
        .collect();
    order_times.sort_unstable();

    // Counts per hour: Poisson(500) has mean 500 and variance 500.
    let mut per_hour = vec![0f64; HOURS as usize];
    for t in &order_times {
        per_hour[((t - start().as_micros()) / MICROS_PER_HOUR) as usize] += 1.0;
    }
    let n = per_hour.len() as f64;
    let mean = per_hour.iter().sum::<f64>() / n;
    let variance = per_hour.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (n - 1.0);
    // The mean of 240 hours has a standard error of sqrt(500 / 240) = 1.44: allow 4 of them.
    assert!(
        (mean - RATE).abs() < 4.0 * (RATE / n).sqrt(),
        "mean orders per hour {mean}"
    );
    // The dispersion index var/mean is 1 for Poisson, with standard error sqrt(2 / (n - 1)) = 0.09.
    let dispersion = variance / mean;
    assert!(
        (dispersion - 1.0).abs() < 4.0 * (2.0 / (n - 1.0)).sqrt(),
        "dispersion index {dispersion}"
    );

    // Gaps between consecutive orders: exponential with mean 3600 / 500 = 7.2 s. The KS distance
    // of 120,000 gaps stays below 1.95 / sqrt(n) (the 0.1% critical value) for a true fit.
    let gaps: Vec<f64> = order_times
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e6)
        .collect();
    let d = ks_exponential(gaps.clone(), 3_600.0 / RATE);
    let critical = 1.95 / (gaps.len() as f64).sqrt();
    assert!(d < critical, "KS distance {d} >= {critical}");
    // And the test has teeth: the same gaps against a rate 5% off are rejected.
    assert!(ks_exponential(gaps, 3_600.0 / RATE * 1.05) > critical);
}

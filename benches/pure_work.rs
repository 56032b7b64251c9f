//! The pure work alone: stepping the shoppers in the order of their wake-ups and encoding
//! every event they make to Avro, on one thread, with no runtime, no clock, no channel and no
//! sink. It is the anchor of the whole-process figures: how close the actors, the clock and
//! the pipeline come to the cost of making the events themselves.
//!
//! `cargo bench --bench pure_work`; the run is the performance issue's whole-process command
//! (`--profile flat --rate 360000/h --shoppers 10000 --seed 7 --start 2026-01-05T00:00:00Z
//! --duration 1h`), and the realistic profile over the same window. The count is the shoppers'
//! events (the catalogue and its price reviews, published beside them, are left out).

mod support;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use simulator::config::Settings;
use simulator::encoding::Encoder;
use simulator::model::{MICROS_PER_HOUR, Timestamp};
use simulator::shoppers::Shopper;
use simulator::simulation::{shop_context, shopper_ids};

/// The binary's allocator, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: u64 = 7;

fn start() -> Timestamp {
    Timestamp::from_datetime("2026-01-05T00:00:00Z".parse().expect("an instant"))
}

fn settings(profile: &str) -> Settings {
    support::settings(
        "360000/h",
        10_000,
        &[("traffic.profile", profile.to_owned())],
        std::iter::empty(),
    )
}

/// Steps every shopper up to an hour after the start, each at its own wake-up, earliest first,
/// and encodes every event; returns the events made and their encoded bytes.
fn pure_work(settings: &Settings) -> (u64, u64) {
    let ctx = shop_context(settings, SEED, start()).expect("valid settings");
    let start = start();
    let end = start.as_micros() + MICROS_PER_HOUR;
    let mut shoppers: Vec<Shopper> = shopper_ids(settings)
        .map(|id| Shopper::new(SEED, id, start, &ctx))
        .collect();
    let mut wakes: BinaryHeap<Reverse<(i64, usize)>> = shoppers
        .iter()
        .enumerate()
        .map(|(i, s)| Reverse((s.next_wake().as_micros(), i)))
        .collect();
    let encoder = Encoder::new().expect("the shipped schemas");
    let (mut events, mut buffer) = (Vec::new(), Vec::with_capacity(1024));
    let (mut count, mut bytes) = (0u64, 0u64);
    while let Some(Reverse((at, index))) = wakes.pop() {
        if at >= end {
            break;
        }
        let shopper = &mut shoppers[index];
        shopper.step(Timestamp::from_micros(at), &ctx, &mut events);
        for event in events.drain(..) {
            buffer.clear();
            encoder.encode_into(&event, &mut buffer);
            bytes += buffer.len() as u64;
            count += 1;
        }
        wakes.push(Reverse((shopper.next_wake().as_micros(), index)));
    }
    (count, bytes)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("pure_work_1h_at_360000_per_h");
    group.sample_size(10);
    for profile in ["flat", "realistic"] {
        let settings = settings(profile);
        let (events, bytes) = pure_work(&settings);
        println!("{profile}: {events} events, {bytes} bytes of Avro per iteration");
        group.throughput(Throughput::Elements(events));
        group.bench_function(profile, |b| b.iter(|| pure_work(&settings)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

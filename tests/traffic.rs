//! The shape of traffic: daily and weekly curves in the shop's time zone, promotions, and
//! unequal shoppers, checked statistically on simulated weeks. Expected counts are computed
//! here from the configured curves, independently of the simulator's own profile code.

mod common;

use std::collections::HashMap;

use chrono::{Datelike, Timelike};
use common::{run_in_memory, settings_from};
use simulator::model::{CurrencyCode, Event, EventType};

const HOURLY: [f64; 24] = [
    1.0, 0.5, 0.3, 0.2, 0.2, 0.3, 0.6, 1.0, 1.4, 1.6, 1.7, 1.8, 1.9, 1.8, 1.7, 1.7, 1.8, 2.0, 2.4,
    2.8, 3.0, 2.6, 1.9, 1.3,
];
const WEEKLY: [f64; 7] = [0.8, 0.8, 0.9, 1.0, 1.1, 1.4, 1.3];

fn curve(factors: &[f64]) -> String {
    factors
        .iter()
        .map(f64::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The orders placed (one per session), without their later status changes.
fn orders(events: &[Event]) -> impl Iterator<Item = &simulator::model::OrderEvent> {
    events.iter().filter_map(|e| match e {
        Event::Order(o) if o.event_type == EventType::OrderPlaced => Some(o),
        _ => None,
    })
}

/// Pearson's chi-square statistic of observed against expected counts.
fn chi_square(observed: &[f64], expected: &[f64]) -> f64 {
    observed
        .iter()
        .zip(expected)
        .map(|(o, e)| (o - e) * (o - e) / e)
        .sum()
}

#[test]
fn orders_follow_the_daily_and_weekly_curves_in_the_shops_time_zone() {
    let weeks = 4;
    let rate = 400.0; // orders per hour, long-run average
    let settings = settings_from(&format!(
        "[simulation]\nrate = \"{rate}/h\"\nshoppers = 3000\n\
         [traffic]\nprofile = \"realistic\"\ntime_zone = \"Asia/Tokyo\"\n\
         hourly = \"{}\"\nweekly = \"{}\"\nactivity_shape = 0.6\n\
         customer_lifetime = \"forever\"\n",
        curve(&HOURLY),
        curve(&WEEKLY)
    ));
    let (events, _) = run_in_memory(&settings, 7, weeks * 7 * 24);

    // Counts by hour of the week in Tokyo (UTC+9, no summer time).
    let tokyo = chrono::FixedOffset::east_opt(9 * 3600).unwrap();
    let mut observed = [0.0; 168];
    for order in orders(&events) {
        let local = order.event_time.to_datetime().with_timezone(&tokyo);
        observed[local.weekday().num_days_from_monday() as usize * 24 + local.hour() as usize] +=
            1.0;
    }
    // Every hour of the week occurs `weeks` times; the factors' product has weekly mean 1.
    let mean: f64 = HOURLY.iter().sum::<f64>() / 24.0 * WEEKLY.iter().sum::<f64>() / 7.0;
    let expected: Vec<f64> = (0..168)
        .map(|i| rate * weeks as f64 * WEEKLY[i / 24] * HOURLY[i % 24] / mean)
        .collect();
    let total: f64 = observed.iter().sum();
    let expected_total: f64 = expected.iter().sum();
    assert!(
        (total - expected_total).abs() < 4.0 * expected_total.sqrt(),
        "{total} orders, expected {expected_total}: --rate is not the long-run average"
    );
    // 167 degrees of freedom: the 0.1% critical value is 225.
    let fit = chi_square(&observed, &expected);
    assert!(fit < 225.0, "chi-square {fit} against the curves");
    // The test has teeth: a flat expectation, or the curves read in UTC, are rejected.
    let flat = vec![expected_total / 168.0; 168];
    assert!(chi_square(&observed, &flat) > 1_000.0);
    let in_utc: Vec<f64> = (0..168).map(|i| expected[(i + 168 - 9) % 168]).collect();
    assert!(chi_square(&observed, &in_utc) > 1_000.0);
}

#[test]
fn a_promotion_multiplies_sessions_and_favours_its_category_at_a_discount() {
    let settings = settings_from(
        "[simulation]\nrate = \"600/h\"\nshoppers = 2000\n\
         [traffic]\nprofile = \"realistic\"\ntime_zone = \"UTC\"\nactivity_shape = \"equal\"\n\
         hourly = \"1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1\"\nweekly = \"1 1 1 1 1 1 1\"\n\
         [[traffic.promotions]]\nname = \"book-week\"\nstart = \"2026-03-02T12:00:00Z\"\n\
         end = \"2026-03-02T18:00:00Z\"\nuplift = \"3\"\ncategory = \"Books\"\ndiscount = \"0.25\"\n\
         [shop]\ndiscount_probability = 0\n",
    );
    let (events, _) = run_in_memory(&settings, 11, 48);
    let promo = |o: &&simulator::model::OrderEvent| {
        let hour = o.event_time.to_datetime().hour();
        o.event_time.to_datetime().day() == 2 && (12..18).contains(&hour)
    };
    let start = simulator::model::Timestamp::from_micros(0);
    let catalogue =
        simulator::model::Catalogue::generate(11, settings.catalogue.products, 1.1, start).unwrap();
    let books = |o: &simulator::model::OrderEvent| -> (usize, usize) {
        let n = o
            .items
            .iter()
            .filter(|l| catalogue.category_of(l.product_id) == Some("Books"))
            .count();
        (n, o.items.len())
    };
    let (inside, outside): (Vec<_>, Vec<_>) = orders(&events).partition(promo);
    // 6 hours at 3 x 600/h, and 42 hours at 600/h.
    let (n_in, n_out) = (inside.len() as f64, outside.len() as f64);
    assert!(
        (n_in - 10_800.0).abs() < 4.0 * 10_800f64.sqrt(),
        "{n_in} orders during the promotion"
    );
    assert!(
        (n_out - 25_200.0).abs() < 4.0 * 25_200f64.sqrt(),
        "{n_out} orders outside it"
    );

    let share = |orders: &[&simulator::model::OrderEvent]| {
        let (b, all) = orders
            .iter()
            .map(|o| books(o))
            .fold((0, 0), |(b, a), (x, y)| (b + x, a + y));
        b as f64 / all as f64
    };
    let (share_in, share_out) = (share(&inside), share(&outside));
    assert!(
        share_in > 2.0 * share_out,
        "books are {share_in:.3} of lines in the promotion and {share_out:.3} outside"
    );
    // Orders with books are marked down during the promotion (no coupons in this run), and
    // never outside it.
    for order in &inside {
        let book_total: i64 = order
            .items
            .iter()
            .filter(|l| catalogue.category_of(l.product_id) == Some("Books"))
            .map(|l| l.line_total.cents())
            .sum();
        let expected = (book_total as f64 * 0.25).round() as i64;
        assert!(
            (order.discount.cents() - expected).abs() <= order.items.len() as i64,
            "order {} discount {} for {} of books",
            order.order_id,
            order.discount,
            book_total
        );
    }
    assert!(outside.iter().all(|o| o.discount.cents() == 0));
}

#[test]
fn a_few_shoppers_shop_often_and_most_rarely() {
    let run = |activity: &str| {
        let settings = settings_from(&format!(
            "[simulation]\nrate = \"500/h\"\nshoppers = 2000\n[traffic]\nprofile = \"flat\"\nactivity_shape = {activity}\ncustomer_lifetime = \"forever\"\n"
        ));
        let (events, _) = run_in_memory(&settings, 5, 24 * 14);
        let mut per_customer: HashMap<i64, f64> = HashMap::new();
        for order in orders(&events) {
            *per_customer.entry(order.customer_id).or_default() += 1.0;
        }
        let counts: Vec<f64> = (1..=2000)
            .map(|id| per_customer.get(&id).copied().unwrap_or(0.0))
            .collect();
        let mean = counts.iter().sum::<f64>() / counts.len() as f64;
        let variance = counts.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / counts.len() as f64;
        let mut sorted = counts.clone();
        sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let top_decile: f64 = sorted[..200].iter().sum::<f64>() / counts.iter().sum::<f64>();
        (mean, variance / mean, top_decile)
    };
    // 500/h for two weeks over 2000 shoppers: 84 orders each on average.
    let (mean, dispersion, top) = run("0.6");
    assert!((mean - 84.0).abs() < 2.0, "mean {mean}");
    // Gamma(0.6) activities: variance / mean = 1 + mean / 0.6, about 141.
    assert!(dispersion > 60.0, "dispersion {dispersion}");
    assert!(
        top > 0.3,
        "the most active tenth placed {top:.2} of the orders"
    );
    let (_, dispersion, top) = run("\"equal\"");
    assert!(
        (dispersion - 1.0).abs() < 0.2,
        "dispersion {dispersion} of equal shoppers"
    );
    assert!(top < 0.15);
}

#[test]
fn customers_leave_after_their_lifetime_and_new_ones_take_their_place() {
    // 200 equal shoppers at 500/h: a session every 24 minutes each; customers stay 5 days on
    // average. Over 40 days each slot sees about 8 customers, and the rate does not change.
    let settings = settings_from(
        "[simulation]\nrate = \"500/h\"\nshoppers = 200\n[traffic]\nprofile = \"flat\"\nactivity_shape = \"equal\"\ncustomer_lifetime = \"5d\"\n",
    );
    let (events, _) = run_in_memory(&settings, 21, 24 * 40);
    let placed = orders(&events).count() as f64;
    let expected_orders = 500.0 * 24.0 * 40.0;
    assert!(
        (placed - expected_orders).abs() < 4.0 * expected_orders.sqrt(),
        "{placed} orders, expected {expected_orders}"
    );
    let start = common::start();
    let end = start + std::time::Duration::from_secs(40 * 86_400);
    let mut signups: HashMap<i64, Vec<(simulator::model::Timestamp, i64)>> = HashMap::new();
    let mut signed_up_at = HashMap::new();
    for event in &events {
        if let Event::Customer(c) = event
            && c.event_type == EventType::CustomerSignedUp
        {
            // A slot's customers are 200 ids apart.
            signups
                .entry((c.customer_id - 1) % 200)
                .or_default()
                .push((c.event_time, c.customer_id));
            signed_up_at.insert(c.customer_id, c.event_time);
        }
    }
    assert_eq!(signups.len(), 200, "every slot had a customer");
    // Censored exponential estimate of the time between two sign-ups in a slot: a lifetime (the
    // waits for a first session, 24 minutes, cancel out).
    let (mut exposure, mut successions) = (0.0f64, 0u32);
    let mut left_at: HashMap<i64, simulator::model::Timestamp> = HashMap::new();
    for customers in signups.values_mut() {
        customers.sort();
        for pair in customers.windows(2) {
            // The next id of the slot, or a later one if a prospect left before signing up.
            assert!(
                pair[1].1 > pair[0].1,
                "a slot's next customer has a later id"
            );
            exposure += pair[1].0.micros_since(pair[0].0) as f64;
            successions += 1;
            left_at.insert(pair[0].1, pair[1].0);
        }
        let (last, _) = customers.last().unwrap();
        exposure += end.micros_since(*last) as f64;
    }
    let mean_days = exposure / f64::from(successions) / 86_400e6;
    let expected = 5.0;
    let se = expected / f64::from(successions).sqrt();
    assert!(
        (mean_days - expected).abs() < 4.0 * se,
        "customers stayed {mean_days:.2} days on average over {successions} successions"
    );
    // A customer who left places no more orders, but the orders placed before play out.
    let mut followed_up = 0;
    for event in &events {
        match event {
            Event::Order(o) if o.event_type == EventType::OrderPlaced => {
                assert!(signed_up_at[&o.customer_id] <= o.event_time);
                if let Some(left) = left_at.get(&o.customer_id) {
                    assert!(
                        o.event_time < *left,
                        "order {} after its customer left",
                        o.order_id
                    );
                }
            }
            Event::Payment(p)
                if left_at
                    .get(&p.customer_id)
                    .is_some_and(|left| p.event_time > *left) =>
            {
                followed_up += 1;
            }
            _ => {}
        }
    }
    assert!(
        followed_up > 100,
        "{followed_up} payments after their customer left"
    );
}

#[test]
fn customers_pay_in_the_configured_currencies_at_converted_prices() {
    let settings = settings_from(
        "[simulation]\nrate = \"2000/h\"\nshoppers = 3000\n[traffic]\nprofile = \"flat\"\n\
         [shop]\ncurrency = \"USD\"\nshipping_fee = \"5.99\"\nfree_shipping_threshold = \"50.00\"\n\
         [[shop.currencies]]\ncode = \"EUR\"\nrate = 0.92\nshare = 0.3\n\
         [[shop.currencies]]\ncode = \"GBP\"\nrate = 0.79\nshare = 0.1\n",
    );
    let (events, _) = run_in_memory(&settings, 13, 24 * 3);
    let code = |text: &str| CurrencyCode::new(text).unwrap();
    let rates: HashMap<CurrencyCode, f64> =
        [(code("USD"), 1.0), (code("EUR"), 0.92), (code("GBP"), 0.79)].into();
    let convert = |m: simulator::model::Money, rate: f64| {
        simulator::model::Money::from_cents((m.cents() as f64 * rate).round() as i64)
    };
    // The catalogue's prices over time, in the shop's currency.
    let mut prices: HashMap<i64, Vec<(simulator::model::Timestamp, simulator::model::Money)>> =
        HashMap::new();
    for event in &events {
        if let Event::Product(p) = event {
            assert_eq!(p.currency, "USD");
            prices
                .entry(p.product_id)
                .or_default()
                .push((p.event_time, p.unit_price));
        }
    }
    for history in prices.values_mut() {
        history.sort();
    }
    let mut customers: HashMap<i64, CurrencyCode> = HashMap::new();
    let mut placed: HashMap<i64, (CurrencyCode, simulator::model::Money)> = HashMap::new();
    let mut free_shipping = HashMap::<CurrencyCode, u32>::new();
    for order in orders(&events) {
        let rate = rates[&order.currency];
        // A customer pays in one currency.
        assert_eq!(
            *customers.entry(order.customer_id).or_insert(order.currency),
            order.currency
        );
        for line in &order.items {
            let (_, base) = prices[&line.product_id]
                .iter()
                .rev()
                .find(|(t, _)| *t <= order.event_time)
                .unwrap();
            assert_eq!(
                line.unit_price,
                convert(*base, rate),
                "{} line",
                order.currency
            );
        }
        // Shipping rules in the order's currency.
        let threshold = convert(simulator::model::Money::from_cents(5_000), rate);
        let expected_shipping = if order.subtotal - order.discount >= threshold {
            *free_shipping.entry(order.currency).or_default() += 1;
            simulator::model::Money::ZERO
        } else {
            convert(simulator::model::Money::from_cents(599), rate)
        };
        assert_eq!(order.shipping, expected_shipping);
        placed.insert(order.order_id, (order.currency, order.total));
    }
    for event in &events {
        match event {
            Event::Payment(p) => assert_eq!(placed[&p.order_id], (p.currency, p.amount)),
            Event::Order(o) => assert_eq!(placed[&o.order_id].0, o.currency),
            _ => {}
        }
    }
    assert!(free_shipping.len() == 3, "{free_shipping:?}");
    // Shares of customers by currency, within 4 standard errors.
    let n = customers.len() as f64;
    for (code, share) in [("USD", 0.6), ("EUR", 0.3), ("GBP", 0.1)] {
        let observed = customers.values().filter(|c| **c == code).count() as f64;
        let se = (n * share * (1.0 - share)).sqrt();
        assert!(
            (observed - n * share).abs() < 4.0 * se,
            "{observed} of {n} customers pay in {code}"
        );
    }
}

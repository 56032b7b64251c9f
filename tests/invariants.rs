//! Over a long simulated run: money adds up, every key refers to an earlier event, payment flows
//! are valid, customers change and are erased as the model says, discontinued products are
//! sold no more, and the same seed gives the same events.

mod common;

use std::collections::{HashMap, HashSet};

use common::{count_types, run_in_memory, settings};
use simulator::config::{Cli, Settings};
use simulator::model::{CustomerEvent, Event, EventType, Money, OrderId, PaymentId, Timestamp};
use simulator::shoppers::MAX_PAYMENT_ATTEMPTS;

/// A shop of 3,000 customers at 2,000 orders an hour whose customers and products change
/// often, so that a week holds hundreds of each change.
fn changing_shop() -> Settings {
    let cli = Cli::default()
        .with("simulation.rate", "2000/h")
        .with("simulation.shoppers", "3000")
        .with("traffic.profile", "flat")
        .with("customers.move_rate", "4")
        .with("customers.contact_change_rate", "4")
        .with("customers.consent_change_rate", "4")
        .with("customers.erasure_rate", "2")
        .with("catalogue.discontinue_rate", "4");
    Settings::load(&cli, std::iter::empty()).unwrap()
}

/// A customer's personal fields, by name, as text (`None` when erased).
fn personal(c: &CustomerEvent) -> [(&'static str, Option<String>); 10] {
    [
        ("first_name", c.first_name.clone()),
        ("last_name", c.last_name.clone()),
        ("email", c.email.clone()),
        ("phone", c.phone.clone()),
        ("street_address", c.street_address.clone()),
        ("city", c.city.clone()),
        ("region", c.region.clone()),
        ("postal_code", c.postal_code.clone()),
        ("country", c.country.map(str::to_owned)),
        (
            "marketing_consent",
            c.marketing_consent.map(|b| b.to_string()),
        ),
    ]
}

#[test]
fn invariants_and_referential_integrity_hold_over_a_week() {
    let (events, summary) = run_in_memory(&changing_shop(), 7, 24 * 7);
    assert_eq!(summary.generated, summary.delivered);
    let types = count_types(&events);

    assert!(types["order_placed"] > 300_000, "{types:?}");
    assert!(types["order_shipped"] > 250_000, "{types:?}");
    assert!(types["payment_refunded"] > 5_000, "{types:?}");
    // Unequal shoppers: the least active have not come yet (about 4% of them).
    assert!(types["customer_signed_up"] > 2_700, "{types:?}");
    assert!(types["payment_declined"] > 1_000, "{types:?}");
    // At 12 changes and 2 erasures per customer and year, about 3,000 customers make some 690
    // changes and 115 erasures in a week; at 4 a year, some 37 of 500 products go.
    let near = |name: &str, expected: f64| {
        let n = types.get(name).copied().unwrap_or(0) as f64;
        assert!(
            (n - expected).abs() < 5.0 * expected.sqrt() + 0.1 * expected,
            "{n} {name}, expected about {expected}: {types:?}"
        );
    };
    near("customer_updated", 690.0);
    near("customer_deleted", 115.0);
    near("product_discontinued", 37.0);
    assert_eq!(
        types["product_published"],
        500 + types["product_discontinued"],
        "each discontinued product is replaced"
    );

    // Every product's prices over time: published once, then repriced now and then; and when
    // it was discontinued.
    let mut prices: HashMap<i64, Vec<(Timestamp, Money)>> = HashMap::new();
    let mut discontinued_at: HashMap<i64, Timestamp> = HashMap::new();
    for event in &events {
        match event {
            Event::Product(p) if p.event_type == EventType::ProductDiscontinued => {
                discontinued_at.insert(p.product_id, p.event_time);
            }
            Event::Product(p) => prices
                .entry(p.product_id)
                .or_default()
                .push((p.event_time, p.unit_price)),
            _ => {}
        }
    }
    for history in prices.values_mut() {
        history.sort();
        assert!(
            history
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 != w[1].1)
        );
    }
    // About one review per product in the week (a review that discontinues a product, with
    // probability 1 - e^(-4/52), reprices nothing); a review changes the price with
    // probability 2 p (1 - p) + p^2 5/6 at p = 0.15.
    let repriced = types["product_repriced"] as f64;
    let kept = (-4.0f64 / 52.18).exp();
    let (expected, se) = (
        500.0 * kept * 0.27375,
        (500.0f64 * kept * 0.27375 * 0.72625).sqrt(),
    );
    assert!(
        (repriced - expected).abs() < 4.0 * se,
        "{repriced} price changes"
    );
    let price_at = |product: i64, at: Timestamp| -> Option<(Timestamp, Money)> {
        let history = prices.get(&product)?;
        history.iter().rev().find(|(t, _)| *t <= at).copied()
    };

    let mut event_ids = HashSet::new();
    let mut products: HashSet<i64> = HashSet::new();
    let mut customers: HashMap<i64, Timestamp> = HashMap::new();
    // Each customer's latest event, and when they were erased.
    let mut latest: HashMap<i64, CustomerEvent> = HashMap::new();
    let mut erased: HashMap<i64, Timestamp> = HashMap::new();
    let mut replacements: HashMap<i64, Timestamp> = HashMap::new();
    let mut orders: HashMap<OrderId, (i64, Money, Timestamp)> = HashMap::new();
    let mut authorized: HashMap<PaymentId, (OrderId, Money, &str)> = HashMap::new();
    let mut captured: HashSet<OrderId> = HashSet::new();
    let mut attempts: HashMap<OrderId, i32> = HashMap::new();
    let mut status: HashMap<OrderId, &str> = HashMap::new();
    let mut captured_at: HashMap<OrderId, Timestamp> = HashMap::new();
    let mut captured_payment: HashMap<OrderId, PaymentId> = HashMap::new();
    let mut refunded: HashSet<PaymentId> = HashSet::new();
    let mut lifecycle: HashMap<&str, usize> = HashMap::new();

    for event in &events {
        assert!(
            event_ids.insert(event.event_id()),
            "duplicate event id {}",
            event.event_id()
        );
        assert_eq!(event.event_time(), event.event_time().truncate_to_millis());
        match event {
            Event::Product(p) => {
                assert!(p.unit_price > Money::ZERO);
                let first = products.insert(p.product_id);
                assert_eq!(first, p.event_type == EventType::ProductPublished, "{p:?}");
                if p.event_type == EventType::ProductDiscontinued {
                    let next = p.replaced_by.expect("a replacement");
                    assert!(replacements.insert(next, p.event_time).is_none());
                } else {
                    assert_eq!(p.replaced_by, None);
                }
            }
            Event::Customer(c) if c.event_type == EventType::CustomerSignedUp => {
                assert_eq!(c.signup_time, c.event_time);
                assert!(c.email.as_deref().is_some_and(|e| e.contains('@')));
                assert!(personal(c).iter().all(|(_, v)| v.is_some()), "{c:?}");
                assert!(c.changed_fields.is_empty());
                assert!(
                    customers.insert(c.customer_id, c.event_time).is_none(),
                    "customer signed up twice"
                );
                latest.insert(c.customer_id, c.clone());
            }
            Event::Customer(c) => {
                let before = latest
                    .get(&c.customer_id)
                    .expect("a change before the sign-up");
                assert!(
                    !erased.contains_key(&c.customer_id),
                    "a change after erasure"
                );
                assert!(before.event_time <= c.event_time);
                assert_eq!(
                    (c.signup_time, c.signup_channel),
                    (before.signup_time, before.signup_channel)
                );
                if c.event_type == EventType::CustomerDeleted {
                    assert!(personal(c).iter().all(|(_, v)| v.is_none()), "{c:?}");
                    assert!(c.changed_fields.is_empty());
                    erased.insert(c.customer_id, c.event_time);
                } else {
                    assert_eq!(c.event_type, EventType::CustomerUpdated);
                    assert!(!c.changed_fields.is_empty());
                    // The fields named changed, and only those.
                    for ((name, was), (_, now)) in personal(before).iter().zip(personal(c)) {
                        assert!(now.is_some(), "{name} of {c:?}");
                        assert_eq!(
                            c.changed_fields.contains(name),
                            *was != now,
                            "{name}: {was:?} -> {now:?} ({:?})",
                            c.changed_fields
                        );
                    }
                }
                latest.insert(c.customer_id, c.clone());
            }
            Event::Order(o) if o.event_type.as_str() != "order_placed" => {
                let (customer, total, placed) = *orders
                    .get(&o.order_id)
                    .expect("status change before its order");
                assert_eq!((o.customer_id, o.total), (customer, total));
                assert!(o.items.is_empty(), "a status change carries no lines");
                assert!(placed <= o.event_time);
                let before = status
                    .insert(o.order_id, o.status.as_str())
                    .unwrap_or("placed");
                let valid = matches!(
                    (before, o.status.as_str()),
                    ("placed", "cancelled")
                        | ("placed", "shipped")
                        | ("shipped", "delivered")
                        | ("delivered", "returned")
                );
                assert!(
                    valid,
                    "order {}: {before} -> {}",
                    o.order_id,
                    o.status.as_str()
                );
                assert_eq!(
                    o.event_type.as_str(),
                    format!("order_{}", o.status.as_str())
                );
                if o.status.as_str() == "shipped" {
                    let paid = captured_at.get(&o.order_id).expect("shipped unpaid");
                    assert!(*paid <= o.event_time);
                    // Timely: shipped within two weeks of the capture.
                    assert!(o.event_time.micros_since(*paid) < 14 * 86_400_000_000);
                }
                *lifecycle.entry(o.status.as_str()).or_default() += 1;
            }
            Event::Order(o) => {
                let signed_up = customers
                    .get(&o.customer_id)
                    .expect("order before its customer");
                assert!(*signed_up <= o.event_time);
                assert!(
                    !erased.contains_key(&o.customer_id),
                    "an order by an erased customer"
                );
                assert!(!o.items.is_empty());
                for (i, line) in o.items.iter().enumerate() {
                    assert!(
                        discontinued_at
                            .get(&line.product_id)
                            .is_none_or(|gone| o.event_time < *gone),
                        "an order of a discontinued product"
                    );
                    if let Some(published) = replacements.get(&line.product_id) {
                        assert!(*published < o.event_time);
                    }
                    let (_, price) = price_at(line.product_id, o.event_time)
                        .expect("line names an unpublished product");
                    assert_eq!(line.line_number as usize, i + 1);
                    assert!(line.quantity >= 1);
                    assert_eq!(line.unit_price, price, "the price in force at the order");
                    assert_eq!(line.line_total, line.unit_price * i64::from(line.quantity));
                }
                let subtotal: Money = o.items.iter().map(|l| l.line_total).sum();
                assert_eq!(o.subtotal, subtotal);
                assert_eq!(o.total, o.subtotal - o.discount + o.tax + o.shipping);
                assert!(o.discount >= Money::ZERO && o.discount <= o.subtotal);
                assert!(["web", "mobile_app", "call_center"].contains(&o.channel.as_str()));
                assert_eq!(o.status.as_str(), "placed");
                assert_eq!(o.event_type.as_str(), "order_placed");
                assert!(
                    orders
                        .insert(o.order_id, (o.customer_id, o.total, o.event_time))
                        .is_none()
                );
            }
            Event::Payment(p) => {
                let (customer, total, placed) =
                    *orders.get(&p.order_id).expect("payment before its order");
                assert_eq!(p.customer_id, customer);
                assert!(placed <= p.event_time);
                assert_eq!(p.amount, total, "a payment asks for its order's total");
                assert_eq!(p.failure_reason.is_some(), p.status.as_str() == "declined");
                match p.status.as_str() {
                    "authorized" | "declined" => {
                        let last = attempts.insert(p.order_id, p.attempt).unwrap_or(0);
                        assert_eq!(p.attempt, last + 1, "attempts are numbered in order");
                        assert!(p.attempt <= MAX_PAYMENT_ATTEMPTS);
                        assert!(!captured.contains(&p.order_id));
                        if p.status.as_str() == "authorized" {
                            authorized
                                .insert(p.payment_id, (p.order_id, p.amount, p.method.as_str()));
                        }
                    }
                    "captured" => {
                        let (order, amount, method) = authorized
                            .remove(&p.payment_id)
                            .expect("capture without authorisation");
                        assert_eq!(
                            (order, amount, method),
                            (p.order_id, p.amount, p.method.as_str())
                        );
                        assert!(captured.insert(p.order_id), "order captured twice");
                        captured_at.insert(p.order_id, p.event_time);
                        captured_payment.insert(p.order_id, p.payment_id);
                    }
                    "refunded" => {
                        assert_eq!(captured_payment.get(&p.order_id), Some(&p.payment_id));
                        assert!(refunded.insert(p.payment_id), "refunded twice");
                        assert!(
                            matches!(status.get(&p.order_id), Some(&"cancelled" | &"returned")),
                            "refund of an order {:?}",
                            status.get(&p.order_id)
                        );
                    }
                    other => panic!("unexpected status {other}"),
                }
            }
        }
    }
    // Most orders end up paid.
    let paid = captured.len() as f64 / orders.len() as f64;
    assert!((0.9..1.0).contains(&paid), "paid share {paid}");
    // Within the week most paid orders ship (18 h median), about half are delivered (2.5
    // days later), a few are cancelled, and the first returns (up to 30 days after delivery)
    // come in.
    let share = |s: &str| lifecycle.get(s).copied().unwrap_or(0) as f64 / captured.len() as f64;
    assert!(share("shipped") > 0.8, "{lifecycle:?}");
    assert!((0.35..0.7).contains(&share("delivered")), "{lifecycle:?}");
    assert!((0.01..0.08).contains(&share("cancelled")), "{lifecycle:?}");
    assert!((0.0005..0.01).contains(&share("returned")), "{lifecycle:?}");
    assert_eq!(
        refunded.len(),
        lifecycle.get("returned").copied().unwrap_or(0)
            + status
                .iter()
                .filter(|(o, s)| **s == "cancelled" && captured.contains(o))
                .count()
    );
}

fn fingerprint(events: &[Event]) -> Vec<String> {
    let mut lines: Vec<String> = events.iter().map(|e| format!("{e:?}")).collect();
    lines.sort_unstable();
    lines
}

#[test]
fn same_seed_same_events_different_seed_different_events() {
    let s = settings("3000/h", 500);
    let (a, _) = run_in_memory(&s, 11, 12);
    let (b, _) = run_in_memory(&s, 11, 12);
    let (c, _) = run_in_memory(&s, 12, 12);
    assert!(a.len() > 80_000);
    // Task scheduling differs between runs; the set of events does not.
    assert_eq!(fingerprint(&a), fingerprint(&b));
    let ids_a: HashSet<_> = a.iter().map(Event::event_id).collect();
    let ids_c: HashSet<_> = c.iter().map(Event::event_id).collect();
    assert!(ids_a.is_disjoint(&ids_c), "different seeds share event ids");
    assert_ne!(fingerprint(&a), fingerprint(&c));
}

#[test]
fn at_the_default_rates_a_shop_of_a_few_thousand_customers_sees_each_change_within_a_quarter() {
    let (events, _) = run_in_memory(&settings("40/h", 3_000), 3, 24 * 91);
    let types = count_types(&events);
    // Expected in a quarter: some 290 updates (0.37 a customer a year), 14 erasures (0.02),
    // 12 products discontinued (0.1 of 500).
    for (name, least) in [
        ("customer_updated", 200),
        ("customer_deleted", 4),
        ("product_discontinued", 4),
    ] {
        let n = types.get(name).copied().unwrap_or(0);
        assert!(n >= least, "{n} {name} in a quarter: {types:?}");
    }
}

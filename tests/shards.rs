//! Sharding over replicas: N replicas with the same seed simulate disjoint parts of the
//! population, with disjoint ids, and together produce the configured rate.

mod common;

use std::collections::HashSet;

use common::{count_types, run_in_memory};
use simulator::config::{Cli, Settings};
use simulator::model::Event;

fn shard(index: u32) -> Settings {
    let cli = Cli::default()
        .with("simulation.rate", "1200/h")
        .with("simulation.shoppers", "800")
        .with("simulation.seed", "77")
        .with("traffic.profile", "flat")
        .with("simulation.shard", format!("{index}/2"));
    Settings::load(&cli, std::iter::empty()).unwrap()
}

#[test]
fn two_shards_have_disjoint_ids_and_together_make_the_rate() {
    let (a, _) = run_in_memory(&shard(0), 77, 24);
    let (b, _) = run_in_memory(&shard(1), 77, 24);
    let (ta, tb) = (count_types(&a), count_types(&b));
    // Only replica 0 publishes the catalogue.
    assert_eq!(ta["product_published"], 500);
    assert!(!tb.contains_key("product_published"));
    // 1200/h over a day, shared by the two.
    let orders = (ta["order_placed"] + tb["order_placed"]) as f64;
    assert!(
        (orders - 28_800.0).abs() < 4.0 * 28_800f64.sqrt(),
        "{orders} orders"
    );
    let share = ta["order_placed"] as f64 / orders;
    assert!(
        (share - 0.5).abs() < 0.03,
        "replica 0 made {share} of the orders"
    );

    let ids = |events: &[Event]| -> (HashSet<String>, HashSet<i64>, HashSet<i64>) {
        let mut event_ids = HashSet::new();
        let (mut customers, mut orders) = (HashSet::new(), HashSet::new());
        for e in events {
            event_ids.insert(e.event_id().to_string());
            match e {
                Event::Customer(c) => {
                    customers.insert(c.customer_id);
                }
                Event::Order(o) => {
                    orders.insert(o.order_id);
                }
                Event::Payment(p) => {
                    orders.insert(p.order_id);
                }
                Event::Product(_) => {}
            }
        }
        (event_ids, customers, orders)
    };
    let (ea, ca, oa) = ids(&a);
    let (eb, cb, ob) = ids(&b);
    assert!(ea.is_disjoint(&eb), "event ids collide");
    assert!(
        ca.is_disjoint(&cb) && oa.is_disjoint(&ob),
        "entity ids collide"
    );
    assert!(ca.iter().all(|c| c % 2 == 1) && cb.iter().all(|c| c % 2 == 0));
    // Every product a replica sells is in the catalogue replica 0 published.
    let catalogue: HashSet<i64> = a
        .iter()
        .filter_map(|e| match e {
            Event::Product(p) => Some(p.product_id),
            _ => None,
        })
        .collect();
    for e in &b {
        if let Event::Order(o) = e {
            assert!(o.items.iter().all(|l| catalogue.contains(&l.product_id)));
        }
    }
}

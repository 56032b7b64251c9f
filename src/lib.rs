//! A never-ending event-streaming simulator of a retail OLTP system.
//!
//! Simulated shoppers run as tokio tasks whose shopping sessions arrive as Poisson processes.
//! They sign up as customers, buy from a product catalogue, place orders and pay; every
//! business event is encoded as Avro and handed to a sink.
//!
//! The crate is laid out like the system it simulates:
//! - [`model`]: the retail entities, money and time, and the pricing rules. Pure data.
//! - [`shoppers`]: a shopper's behaviour as a pure step function, and the actor that runs it.
//! - [`clock`]: the one source of time, real, scaled or as fast as possible.
//! - [`encoding`]: the Avro schemas of `avro/` and the encoder.
//! - [`sinks`]: where events go: Avro files, JSON lines, nowhere, or memory.
//! - [`pipeline`]: the bounded channel from shoppers to a sink, with its accounting.
//! - [`metrics`], [`endpoints`]: Prometheus metrics, health, and the HTTP endpoints serving them.
//! - [`config`]: command line and layered configuration, validated up front.
//! - [`simulation`]: wires one run together.
//! - [`ledger`], [`faults`]: the ground truth written beside the data, and injected faults.
//! - [`state`]: saving a run and resuming it after a restart or a crash.
//!
//! Determinism: every random choice comes from a generator seeded from the run's seed (one per
//! shopper, from the seed and the shopper's id), and shoppers stamp events with their own
//! scheduled instants, so the same seed, start and end give the same events whatever order the
//! tasks run in.

pub mod clock;
pub mod config;
pub mod encoding;
pub mod endpoints;
pub mod faults;
pub mod ledger;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod shoppers;
pub mod simulation;
pub mod sinks;
pub mod state;

//! A never-ending event-streaming simulator of a retail OLTP system.
//!
//! Simulated shoppers run as tokio tasks whose shopping sessions arrive as Poisson processes.
//! They sign up as customers, buy from a product catalogue, place orders and pay; every
//! business event is encoded as Avro and handed to a sink.
//!
//! The crate is laid out like the system it simulates:
//! - [`model`]: the retail entities and their closed sets (topics, event types, statuses),
//!   money and time, and the pricing rules. Pure data.
//! - [`shoppers`]: a shopper's behaviour as a pure step function, the actor that runs it, and
//!   the settings of the traffic, the catalogue and the shop.
//! - [`clock`]: the one source of time, real, scaled or as fast as possible.
//! - [`encoding`]: the Avro schemas of `avro/` and the encoder.
//! - [`sinks`]: where events go: Avro files, Kafka, JSON lines, nowhere, or memory.
//! - [`pipeline`]: the bounded channel from shoppers to a sink, with its accounting.
//! - [`metrics`], [`endpoints`]: Prometheus metrics, health, and the HTTP endpoints serving them.
//! - [`api`]: the pull API, serving each complete hour of the file sink's output over HTTP.
//! - [`settings`], [`config`]: how a component declares its settings once, and the command
//!   line and layered configuration built from those declarations.
//! - [`ledger`], [`faults`]: the ground truth written beside the data, and injected faults.
//! - [`cdc`]: the change stream, the same simulation as the shop's tables' changes in
//!   Debezium's envelope.
//! - [`state`], [`durable`]: the saved state of a run, and the one way files are replaced and
//!   directories locked.
//! - [`control`]: the control plane, a thread of its own for the endpoints, the signals and
//!   the progress log, which the simulation cannot keep busy.
//! - [`simulation`]: the composition root, which builds a run from its settings and runs it.
//!
//! Layers: a module uses only modules of lower layers (a test reads this table and the
//! sources, and fails on an edge that goes sideways or up, so no import cycle can form).
//!
//! | layer | modules |
//! |---|---|
//! | 7 | `simulation` |
//! | 6 | `config` |
//! | 5 | `shoppers` |
//! | 4 | `pipeline` |
//! | 3 | `sinks`, `endpoints`, `ledger` |
//! | 2 | `metrics`, `state`, `faults`, `api`, `cdc` |
//! | 1 | `clock`, `control`, `durable`, `encoding`, `settings` |
//! | 0 | `model` |
//!
//! Determinism: every random choice comes from a generator seeded from the run's seed (one per
//! shopper, from the seed and the shopper's id), and shoppers stamp events with their own
//! scheduled instants, so the same seed, start and end give the same events whatever order the
//! tasks run in.

pub mod api;
pub mod cdc;
pub mod clock;
pub mod config;
pub mod control;
pub mod durable;
pub mod encoding;
pub mod endpoints;
pub mod faults;
pub mod ledger;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod settings;
pub mod shoppers;
pub mod simulation;
pub mod sinks;
pub mod state;

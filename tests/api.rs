//! The pull API as a client uses it: a seeded backfill served by `simulator serve` (and a live
//! run serving its own files), fetched in NDJSON, JSON and Avro with small pages and compared
//! with the files read independently; cursors across a restart of the server, concurrent
//! clients, gzip and entity tags, every error case, the bearer token, the metrics, a large
//! hour streamed in bounded memory, and the OpenAPI document validated and exercised by
//! schemathesis; then the Databricks job's API path in local Spark, loading every hour once.
//! The suite is `tests/python/api/`.

mod common;

#[test]
fn the_pull_api_serves_every_complete_hour_exactly_once() {
    common::pytest("tests/python/api", &[]);
}

//! The local pipeline as a user runs it: the simulator's files (two replicas, two currencies)
//! through `deploy/local/pipeline` into DuckDB, dbt and the dashboards; the Python suite of
//! `tests/python/local/` checks the marts against the ledger, the page in Chromium, the
//! Tableau workbooks against Tableau's schema, publishing against a loopback stand-in,
//! quarantine, bad input and `--watch`.

mod common;

#[test]
fn the_local_pipeline_turns_the_simulators_files_into_marts_and_dashboards() {
    common::pytest("tests/python/local", &[]);
}

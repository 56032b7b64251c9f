//! The downstream pipeline on the simulator's real output: a simulated day published to the
//! local broker, then the Python suite of `tests/python/pipeline/` — the Databricks loader's
//! batch function in local Spark into DuckDB (standing in for Synapse), the deployment files,
//! and the dbt project built on what the loader wrote.

mod common;

use common::{broker, create_topics, topic_env};

#[test]
fn the_loader_and_models_reproduce_a_simulated_day() {
    let broker = broker();
    let prefix = format!("pipeline{}.", std::process::id());
    create_topics(&broker.bootstrap, &prefix);
    let workdir = tempfile::tempdir().unwrap();
    let ledger = workdir.path().join("ledger");
    let output = common::simulated_day(11, "1000/h", 500)
        .env("SIMULATOR__LEDGER__DIR", &ledger)
        .args(["--sink", "kafka", "--bootstrap-servers", &broker.bootstrap])
        .envs(topic_env(&prefix))
        .output()
        .unwrap();
    common::assert_success(&output);

    common::pytest(
        "tests/python/pipeline",
        &[
            ("PIPELINE_BOOTSTRAP", broker.bootstrap.as_ref()),
            ("PIPELINE_TOPIC_PREFIX", prefix.as_ref()),
            ("PIPELINE_WORKDIR", workdir.path().as_os_str()),
            ("PIPELINE_LEDGER", ledger.as_os_str()),
        ],
    );
}

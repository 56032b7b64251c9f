//! The change stream (`--envelope debezium`), checked by an independent reader: fastavro reads
//! every record, from the files or from Kafka (tansu), replays them by key in log order and
//! compares the tables it ends with to the ones the business events of the same run imply
//! (`tests/python/check_change_stream.py`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_success, broker, create_named_topics, python, registry_double, stderr};

/// Customers and products that change often, so that a day holds every kind of change.
const CHANGES: &[(&str, &str)] = &[
    ("SIMULATOR__CUSTOMERS__MOVE_RATE", "20"),
    ("SIMULATOR__CUSTOMERS__CONTACT_CHANGE_RATE", "20"),
    ("SIMULATOR__CUSTOMERS__CONSENT_CHANGE_RATE", "20"),
    ("SIMULATOR__CUSTOMERS__ERASURE_RATE", "10"),
    ("SIMULATOR__CATALOGUE__DISCONTINUE_RATE", "20"),
];

/// The simulator for `duration` of a busy shop of seed 9, changing often, in `envelope`.
fn run_for(duration: &str, envelope: &str) -> Command {
    let mut command = common::simulator();
    command
        .args(["--seed", "9", "--rate", "2000/h", "--shoppers", "1500"])
        .args([
            "--start",
            common::START,
            "--duration",
            duration,
            "--speed",
            "max",
        ])
        .args(["--envelope", envelope])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .envs(CHANGES.iter().copied());
    command
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails the test with a checker's output, both streams, unless it exited 0.
#[track_caller]
fn succeeded(output: &Output) {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(output)
    );
}

/// Runs the independent check of the change stream (from `source`) against the events.
fn check(events: &Path, source: &[&str]) -> serde_json::Value {
    let output = Command::new(python())
        .arg(root().join("tests/python/check_change_stream.py"))
        .arg("--schemas")
        .arg(root().join("avro/cdc"))
        .arg("--events")
        .arg(events)
        .args(source)
        .output()
        .unwrap();
    succeeded(&output);
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The ledger files of a directory, without the run's record (which names the envelope).
fn ledger(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.join("_ledger")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") && !path.ends_with("_run.json")
            {
                files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|(path, bytes)| (path.split("_ledger").nth(1).unwrap().to_owned(), bytes))
        .collect()
}

fn summary(output: &Output) -> String {
    stderr(output)
        .lines()
        .rev()
        .find(|l| l.contains("simulator stopped"))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn replaying_the_change_stream_gives_the_tables_the_events_imply() {
    let dir = tempfile::tempdir().unwrap();
    let (events, changes) = (dir.path().join("events"), dir.path().join("changes"));
    let run = |envelope: &str, out: &Path| {
        let output = run_for("24h", envelope)
            .args(["--output-dir", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert_success(&output);
        output
    };
    let business = run("events", &events);
    let stream = run("debezium", &changes);
    // The same simulation: the same events, the same ledger.
    let counts = |o: &Output| summary(o).split("generated=").nth(1).map(str::to_owned);
    assert_eq!(counts(&business), counts(&stream));
    assert_eq!(ledger(&events), ledger(&changes));
    for table in ["customers", "products", "orders", "order_lines", "payments"] {
        assert!(
            changes.join(format!("shop.public.{table}")).is_dir(),
            "{table}"
        );
    }
    let checked = check(&events, &["--files", changes.to_str().unwrap()]);
    let ops = &checked["ops"];
    for op in ["r", "c", "u", "d"] {
        assert!(ops[op].as_u64().unwrap_or(0) > 0, "no {op}: {checked}");
    }
    assert_eq!(ops["r"].as_u64(), Some(500), "the catalogue's snapshot");
    assert!(
        checked["transactions"].as_u64().unwrap() > 50_000,
        "{checked}"
    );
    // The pull API serves business events: it refuses a change stream's directory.
    let served = common::simulator()
        .args(["serve", "--output-dir", changes.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(served.status.code(), Some(2), "{}", stderr(&served));
    assert!(
        stderr(&served).contains("change stream"),
        "{}",
        stderr(&served)
    );
}

/// Creates the change stream's topics under `prefix`.
fn change_topics(bootstrap: &str, prefix: &str) {
    let topics: Vec<String> = ["products", "customers", "orders", "order_lines", "payments"]
        .iter()
        .map(|t| format!("{prefix}.public.{t}"))
        .chain(std::iter::once(format!("{prefix}.transaction")))
        .collect();
    create_named_topics(bootstrap, &topics);
}

#[test]
fn into_kafka_with_confluent_framing_keys_and_values_name_their_registered_schemas() {
    let broker = broker();
    let registry = registry_double();
    let prefix = format!("cdccf{}", std::process::id());
    change_topics(&broker.bootstrap, &prefix);
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    assert_success(
        &run_for("2h", "events")
            .args(["--output-dir", events.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    let published = run_for("2h", "debezium")
        .args(["--sink", "kafka", "--bootstrap-servers", &broker.bootstrap])
        .args(["--output-dir", dir.path().join("unused").to_str().unwrap()])
        .env("SIMULATOR__DEBEZIUM__TOPIC_PREFIX", &prefix)
        .env("SIMULATOR__KAFKA__FRAMING", "confluent")
        .env("SIMULATOR__SCHEMA_REGISTRY__URL", &registry.url)
        .output()
        .unwrap();
    assert_success(&published);
    let mut subjects = registry.subjects.lock().unwrap().clone();
    subjects.sort();
    let mut expected: Vec<String> = Vec::new();
    for stream in [
        "public.products",
        "public.customers",
        "public.orders",
        "public.order_lines",
        "public.payments",
        "transaction",
    ] {
        for part in ["key", "value"] {
            expected.push(format!("{prefix}.{stream}-{part}"));
        }
    }
    expected.sort();
    assert_eq!(subjects, expected);
    let checked = check(
        &events,
        &[
            "--bootstrap",
            &broker.bootstrap,
            "--prefix",
            &prefix,
            "--registry",
            &registry.url,
        ],
    );
    // Each topic's keys carry one schema id, and its values another.
    for (topic, ids) in checked["schema_ids"].as_object().unwrap() {
        let (key, value) = (&ids["key"], &ids["value"]);
        assert_eq!(key.as_array().map(Vec::len), Some(1), "{topic}: {checked}");
        assert_eq!(
            value.as_array().map(Vec::len),
            Some(1),
            "{topic}: {checked}"
        );
        assert_ne!(key, value, "{topic}");
    }
}

#[test]
fn into_kafka_the_change_stream_has_keys_tombstones_and_transactions() {
    let broker = broker();
    let prefix = format!("cdc{}", std::process::id());
    change_topics(&broker.bootstrap, &prefix);
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    let business = run_for("6h", "events")
        .args(["--output-dir", events.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&business);
    let published = run_for("6h", "debezium")
        .args(["--sink", "kafka", "--bootstrap-servers", &broker.bootstrap])
        .args(["--output-dir", dir.path().join("unused").to_str().unwrap()])
        .env("SIMULATOR__DEBEZIUM__TOPIC_PREFIX", &prefix)
        .output()
        .unwrap();
    assert_success(&published);
    assert!(summary(&published).contains("every event was delivered"));
    let checked = check(
        &events,
        &["--bootstrap", &broker.bootstrap, "--prefix", &prefix],
    );
    assert!(checked["ops"]["d"].as_u64().unwrap_or(0) > 0, "{checked}");
}

#[test]
fn faults_and_the_change_stream_are_refused_together() {
    let output = common::simulator()
        .args(["--envelope", "debezium", "--print-config"])
        .env("SIMULATOR__FAULTS__DUPLICATE_FRACTION", "0.1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--envelope debezium"),
        "{}",
        stderr(&output)
    );
    let output = common::simulator()
        .args(["--envelope", "delta"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("`delta` is not an envelope: expected one of events, debezium"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_change_stream_resumed_from_its_saved_state_numbers_on() {
    let dir = tempfile::tempdir().unwrap();
    let (events, changes, state) = (
        dir.path().join("events"),
        dir.path().join("changes"),
        dir.path().join("state"),
    );
    assert_success(
        &run_for("24h", "events")
            .args(["--output-dir", events.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    // Half the day, saved; then the run extended to the whole day, from its saved state.
    for duration in ["12h", "24h"] {
        let output = run_for(duration, "debezium")
            .args(["--output-dir", changes.to_str().unwrap()])
            .args(["--state-dir", state.to_str().unwrap()])
            .output()
            .unwrap();
        assert_success(&output);
    }
    let checked = check(&events, &["--files", changes.to_str().unwrap()]);
    assert_eq!(
        checked["ops"]["r"].as_u64(),
        Some(500),
        "one snapshot: {checked}"
    );
}

/// The Python with Apache Flink (PyFlink): `PIPELINE_FLINK_PYTHON`, or `.venv-flink`, which
/// `.ci/run` makes.
fn flink_python() -> PathBuf {
    let path = std::env::var_os("PIPELINE_FLINK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv-flink/bin/python"));
    assert!(
        path.exists(),
        "{} is missing: .ci/run makes .venv-flink with apache-flink (PyFlink)",
        path.display()
    );
    path
}

#[test]
fn flink_a_real_debezium_consumer_materialises_the_tables_the_events_imply() {
    let python = flink_python();
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    // An hour, with erasures often enough to delete rows in it: Flink reads a few thousand
    // changes, one at a time through its Python client.
    let erasures = ("SIMULATOR__CUSTOMERS__ERASURE_RATE", "52");
    assert_success(
        &run_for("1h", "events")
            .env(erasures.0, erasures.1)
            .args(["--output-dir", events.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    let stream = dir.path().join("stream.jsonl");
    let published = run_for("1h", "debezium")
        .env(erasures.0, erasures.1)
        .args(["--sink", "stdout"])
        .stdout(std::fs::File::create(&stream).unwrap())
        .output()
        .unwrap();
    assert_success(&published);
    let output = Command::new(python)
        .arg(root().join("tests/python/flink_consumer.py"))
        .arg("--stream")
        .arg(&stream)
        .arg("--events")
        .arg(&events)
        .arg("--work")
        .arg(dir.path().join("flink"))
        .output()
        .unwrap();
    succeeded(&output);
    let summary: serde_json::Value = serde_json::from_slice(
        output
            .stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .unwrap(),
    )
    .unwrap();
    for kind in ["INSERT", "UPDATE_AFTER", "DELETE"] {
        assert!(
            summary["changelog"][kind].as_u64().unwrap_or(0) > 0,
            "no {kind}: {summary}"
        );
    }
}

//! The Kafka sink against a real Kafka-compatible broker (tansu, in its own process), checked
//! by an independent client: kafka-python consumes every topic and fastavro decodes every value.
//!
//! The broker is the one `.ci/run` starts (`SIMULATOR_TEST_KAFKA_BOOTSTRAP`); without it, the
//! test starts its own `tansu` from PATH on a free port.

mod common;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{broker, create_topics, registry_double, topic_env};

/// Runs the binary for a simulated day into the broker.
fn simulate_day(bootstrap: &str, prefix: &str, extra_env: &[(String, String)]) -> Output {
    let output = common::simulated_day(9, "500/h", 300)
        .args(["--sink", "kafka", "--bootstrap-servers", bootstrap])
        .args(["--log-format", "json"])
        .envs(topic_env(prefix))
        .envs(extra_env.iter().cloned())
        .output()
        .unwrap();
    common::assert_success(&output);
    output
}

/// The per-topic counts of the simulator's closing log line.
fn delivered_by_topic(output: &Output) -> HashMap<String, u64> {
    let text = String::from_utf8_lossy(&output.stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("every event was delivered"))
        .expect("a summary line");
    let value: serde_json::Value = serde_json::from_str(line).unwrap();
    value["events"]
        .as_str()
        .unwrap()
        .split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

/// Every topic of a reader's summary holds the records the simulator reported delivered.
#[track_caller]
fn assert_records(summary: &serde_json::Value, delivered: &HashMap<String, u64>) {
    for topic in ["products", "customers", "orders", "payments"] {
        assert_eq!(
            summary["records"][topic].as_u64(),
            Some(delivered[topic]),
            "{topic}: {summary}"
        );
    }
}

/// Consumes and checks the topics with the independent Python client.
fn consume(bootstrap: &str, prefix: &str, extra: &[&str]) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(common::python())
        .arg(root.join("tests/python/consume_kafka.py"))
        .args([
            "--bootstrap",
            bootstrap,
            "--topic-prefix",
            prefix,
            "--idle-ms",
            "3000",
        ])
        .arg("--avro-dir")
        .arg(root.join("avro"))
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the Kafka check failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn a_simulated_day_arrives_complete_and_correct() {
    let broker = broker();
    let prefix = format!("raw{}-", std::process::id());
    create_topics(&broker.bootstrap, &prefix);
    let output = simulate_day(&broker.bootstrap, &prefix, &[]);
    let delivered = delivered_by_topic(&output);
    let summary = consume(&broker.bootstrap, &prefix, &[]);
    assert_records(&summary, &delivered);
    assert!(delivered["orders"] > 11_000, "{delivered:?}");
}

#[test]
fn kafka_and_files_at_once_each_get_every_event_and_the_ledger_is_written_once() {
    let broker = broker();
    let prefix = format!("both{}-", std::process::id());
    create_topics(&broker.bootstrap, &prefix);
    let data = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("both-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let output = common::simulated_day(9, "500/h", 300)
        .args([
            "--sink",
            "kafka,file",
            "--bootstrap-servers",
            &broker.bootstrap,
        ])
        .arg("--output-dir")
        .arg(&data)
        .args(["--log-format", "json"])
        .envs(topic_env(&prefix))
        .output()
        .unwrap();
    common::assert_success(&output);
    let delivered = delivered_by_topic(&output);
    let stderr = common::stderr(&output);
    let per_sink: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.contains("delivered by this sink"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sinks: Vec<&str> = per_sink
        .iter()
        .map(|v| v["sink"].as_str().unwrap())
        .collect();
    assert_eq!(sinks, ["kafka", "file"], "{stderr}");
    assert!(per_sink.iter().all(|v| v["undelivered"] == 0), "{stderr}");
    // The broker has every event; so have the files; the ledger counts each once.
    let summary = consume(&broker.bootstrap, &prefix, &[]);
    // The files, checked against the schemas and against the one ledger, hour by hour.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = Command::new(common::python())
        .arg(root.join("tests/python/check_avro_files.py"))
        .arg(&data)
        .arg(root.join("avro"))
        .arg(data.join("_ledger"))
        .output()
        .unwrap();
    assert!(
        files.status.success(),
        "{}",
        String::from_utf8_lossy(&files.stderr)
    );
    let files: serde_json::Value = serde_json::from_slice(&files.stdout).unwrap();
    assert_records(&summary, &delivered);
    assert_records(&files, &delivered);
    assert!(delivered.values().sum::<u64>() > 11_000, "{delivered:?}");
}

#[test]
fn confluent_framing_registers_schemas_and_prefixes_their_ids() {
    let broker = broker();
    let registry = registry_double();
    let prefix = format!("cf{}-", std::process::id());
    create_topics(&broker.bootstrap, &prefix);
    let env = vec![
        (
            "SIMULATOR__KAFKA__FRAMING".to_owned(),
            "confluent".to_owned(),
        ),
        (
            "SIMULATOR__SCHEMA_REGISTRY__URL".to_owned(),
            registry.url.clone(),
        ),
    ];
    let output = simulate_day(&broker.bootstrap, &prefix, &env);
    let mut subjects = registry.subjects.lock().unwrap().clone();
    subjects.sort();
    let mut expected: Vec<String> = ["customers", "orders", "payments", "products"]
        .iter()
        .map(|t| format!("{prefix}{t}-value"))
        .collect();
    expected.sort();
    assert_eq!(subjects, expected);

    let delivered = delivered_by_topic(&output);
    let summary = consume(
        &broker.bootstrap,
        &prefix,
        &["--framing", "confluent", "--registry", &registry.url],
    );
    assert_records(&summary, &delivered);
    for topic in ["products", "customers", "orders", "payments"] {
        // Each topic's values carry one schema id, the one the registry gave for its subject.
        assert_eq!(
            summary["schema_ids"][topic].as_array().map(Vec::len),
            Some(1),
            "{summary}"
        );
    }
}

#[test]
fn an_unreachable_broker_ends_the_run_with_the_undelivered_count_and_exit_1() {
    // Nothing listens on port 1 of loopback.
    let output = common::simulator()
        .args([
            "--sink",
            "kafka",
            "--bootstrap-servers",
            "127.0.0.1:1",
            "--rate",
            "100/m",
            "--shoppers",
            "20",
        ])
        .args([
            "--seed",
            "1",
            "--start",
            common::START,
            "--duration",
            "10m",
            "--speed",
            "max",
            "--log-format",
            "json",
        ])
        .env("SIMULATOR__KAFKA__DELIVERY_TIMEOUT", "2s")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("cannot reach the Kafka cluster yet"),
        "{text}"
    );
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["delivered"], 0, "{last}");
    assert!(last["undelivered"].as_u64().unwrap() > 1_000, "{last}");
    assert_eq!(last["undelivered"], last["generated"], "{last}");
}

#[test]
fn sigterm_flushes_and_exits_0_with_everything_delivered() {
    let broker = broker();
    let prefix = format!("term{}-", std::process::id());
    create_topics(&broker.bootstrap, &prefix);
    let child = common::simulator()
        .args([
            "--sink",
            "kafka",
            "--bootstrap-servers",
            &broker.bootstrap,
            "--rate",
            "50/s",
            "--shoppers",
            "300",
        ])
        .args(["--seed", "4", "--speed", "60", "--log-format", "json"])
        .envs(topic_env(&prefix))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it publish for a while (bounded), then stop it mid-run.
    std::thread::sleep(Duration::from_secs(3));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let delivered = delivered_by_topic(&output);
    assert!(
        delivered["orders"] > 0 && delivered["payments"] > 0,
        "{delivered:?}"
    );
    let summary = consume(&broker.bootstrap, &prefix, &[]);
    assert_records(&summary, &delivered);
}

/// A broker restarted on volatile storage forgets the producer's state: librdkafka's
/// idempotent producer then fails for good (`UnknownProducerId`). The sink builds a new
/// producer, sends again what was not acknowledged, and the run ends with every event
/// delivered.
#[test]
fn a_broker_that_loses_its_state_mid_run_costs_no_event() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let first = common::private_broker(port);
    let bootstrap = first.bootstrap.clone();
    let prefix = "lost-state-";
    create_topics(&bootstrap, prefix);
    // Twenty simulated minutes at 60x: twenty seconds of publishing.
    let child = common::simulator()
        .args(["--sink", "kafka", "--bootstrap-servers", &bootstrap])
        .args(["--rate", "50/s", "--shoppers", "300", "--seed", "4"])
        .args([
            "--start",
            common::START,
            "--duration",
            "20m",
            "--speed",
            "60",
        ])
        .args(["--log-format", "json"])
        .envs(topic_env(prefix))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    drop(first);
    std::thread::sleep(Duration::from_secs(1));
    let second = common::private_broker(port);
    create_topics(&second.bootstrap, prefix);
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(
        log.contains("a new producer sends again every message not acknowledged"),
        "no producer restart: {log}"
    );
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["delivered"], last["generated"], "{last}");
    // What the new broker holds: each event once or in identical copies, among them the
    // ones sent again.
    let (published, messages) = common::consume(&second.bootstrap, prefix);
    assert!(!published.is_empty() && messages >= published.len());
    assert!(
        (published.len() as u64) < last["generated"].as_u64().unwrap(),
        "the new broker has every event: the restart came too late to test anything"
    );
}

/// A topic the cluster lacks is named at start, in `/readyz` and in the final error.
#[test]
fn a_missing_topic_is_named_in_the_log_readiness_and_final_error() {
    let broker = broker();
    let prefix = format!("missing{}-", std::process::id());
    create_topics(&broker.bootstrap, &prefix);
    let metrics = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut env = topic_env(&prefix);
    env.retain(|(name, _)| !name.ends_with("ORDERS"));
    env.push((
        "SIMULATOR__KAFKA__TOPICS__ORDERS".into(),
        format!("{prefix}nowhere"),
    ));
    let child = common::simulator()
        .args(["--sink", "kafka", "--bootstrap-servers", &broker.bootstrap])
        .args([
            "--rate",
            "50/s",
            "--shoppers",
            "100",
            "--seed",
            "4",
            "--speed",
            "60",
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .args(["--log-format", "json"])
        .envs(env)
        .env("SIMULATOR__KAFKA__FLUSH_TIMEOUT", "2s")
        .env("SIMULATOR__KAFKA__DELIVERY_TIMEOUT", "2s")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let missing = format!("`{prefix}nowhere`");
    let mut readiness = String::new();
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(mut response) = ureq::get(&format!("http://127.0.0.1:{metrics}/readyz"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
        {
            readiness = response.body_mut().read_to_string().unwrap();
            if readiness.contains(&missing) {
                break;
            }
        }
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        readiness.contains("not ready") && readiness.contains(&missing),
        "{readiness}"
    );
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("has no such topic") && l.contains(&format!("{prefix}nowhere"))),
        "{log}"
    );
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert!(last["error"].as_str().unwrap().contains(&missing), "{last}");
    assert!(last["undelivered"].as_u64().unwrap() > 0, "{last}");
}

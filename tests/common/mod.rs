//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, TopicPartitionList};

use simulator::clock::Clock;
use simulator::config::{Cli, Settings};
use simulator::model::{Event, Timestamp};
use simulator::simulation::{self, Summary};
use simulator::sinks::MemorySink;

pub const START: &str = "2026-03-02T00:00:00Z";

/// The `simulator` binary, with none of the developer's `SIMULATOR__*` settings and its
/// endpoints on any free port (tests run side by side).
///
/// Each command runs in a working directory of its own under the target directory, so that
/// what a run writes to its defaults (`./data`, the ledger of a Kafka or stdout run) never
/// lands in the repository, nor in another test's directories.
pub fn simulator() -> Command {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cwd = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("run-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&cwd).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_simulator"));
    command.current_dir(cwd);
    for (name, _) in std::env::vars() {
        if name.starts_with("SIMULATOR__") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.env("SIMULATOR__METRICS__ADDR", "127.0.0.1:0");
    command
}

/// The binary set to simulate a seeded day from [`START`] as fast as possible, at `rate` with
/// `shoppers` shoppers: the run most tests start from, to add their own flags to.
pub fn simulated_day(seed: u64, rate: &str, shoppers: u32) -> Command {
    let mut command = simulator();
    command
        .args(["--seed", &seed.to_string(), "--rate", rate])
        .args(["--shoppers", &shoppers.to_string(), "--start", START])
        .args(["--duration", "24h", "--speed", "max"]);
    command
}

/// Standard error of a finished command, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Fails the test, showing the command's standard error, unless it exited 0.
#[track_caller]
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}, stderr:\n{}",
        output.status.code(),
        stderr(output)
    );
}

pub fn start() -> Timestamp {
    Timestamp::from_datetime(START.parse().unwrap())
}

/// Settings from flags over the shipped defaults (no environment), with the flat traffic
/// profile: the same intensity at every instant.
pub fn settings(rate: &str, shoppers: u32) -> Settings {
    let cli = Cli::default()
        .with("simulation.rate", rate)
        .with("simulation.shoppers", shoppers.to_string())
        .with("traffic.profile", "flat");
    Settings::load(&cli, std::iter::empty()).unwrap()
}

/// Settings from a configuration file's text layered over the shipped defaults.
pub fn settings_from(toml: &str) -> Settings {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), toml).unwrap();
    let cli = Cli {
        config: Some(file.path().to_owned()),
        ..Cli::default()
    };
    Settings::load(&cli, std::iter::empty()).unwrap()
}

/// Runs a simulation as fast as possible from [`START`] for `hours` simulated hours and returns
/// every event in the order the sink received it.
pub fn run_in_memory(settings: &Settings, seed: u64, hours: u64) -> (Vec<Event>, Summary) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sink = MemorySink::new();
        let span = std::time::Duration::from_secs(hours * 3600);
        let summary = simulation::simulate(
            settings,
            seed,
            span,
            Clock::virtual_at(start()),
            Box::new(sink.clone()),
        )
        .await
        .unwrap();
        assert!(summary.is_complete(), "{summary:?}");
        (sink.events(), summary)
    })
}

/// Counts events by `event_type`.
pub fn count_types(events: &[Event]) -> HashMap<&'static str, usize> {
    let mut counts = HashMap::new();
    for e in events {
        *counts.entry(e.event_type().as_str()).or_default() += 1;
    }
    counts
}

/// The Python interpreter of the test virtual environment that `.ci/run` creates.
/// pytest on one suite of `tests/python/`, from the repository's root, with the simulator's
/// binary in `PIPELINE_SIMULATOR` and `envs` besides; panics, pointing at pytest's report
/// above, if any test failed.
pub fn pytest(suite: &str, envs: &[(&str, &std::ffi::OsStr)]) {
    let status = Command::new(python())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", suite])
        .env("PIPELINE_SIMULATOR", env!("CARGO_BIN_EXE_simulator"))
        .envs(envs.iter().copied())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the suite {suite} failed (its report is above)"
    );
}

pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("SIMULATOR_TEST_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "the test virtual environment is missing: run `.ci/run` once (it creates .venv with fastavro), \
         or point SIMULATOR_TEST_PYTHON at a Python that has it"
    );
    venv
}

/// Settings for the kafka sink: flags over the shipped defaults, plus `SIMULATOR__…` pairs.
pub fn kafka_settings(
    rate: &str,
    shoppers: u32,
    bootstrap: &str,
    env: &[(&str, &str)],
) -> Settings {
    let cli = Cli::default()
        .with("simulation.rate", rate)
        .with("simulation.shoppers", shoppers.to_string())
        .with("sink.kinds", "kafka")
        .with("kafka.bootstrap_servers", bootstrap);
    Settings::load(
        &cli,
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap()
}

/// A broker for the test: the shared one, or a private tansu stopped on drop.
pub struct Broker {
    pub bootstrap: String,
    child: Option<Child>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn broker() -> Broker {
    if let Ok(bootstrap) = std::env::var("SIMULATOR_TEST_KAFKA_BOOTSTRAP") {
        return Broker {
            bootstrap,
            child: None,
        };
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    private_broker(port)
}

/// A tansu of the test's own on `port` (in-memory storage), stopped on drop.
pub fn private_broker(port: u16) -> Broker {
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new("tansu")
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("no Kafka broker: set SIMULATOR_TEST_KAFKA_BOOTSTRAP or put tansu on PATH (.ci/run installs it)");
    let bootstrap = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if TcpStream::connect(&bootstrap).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Broker {
        bootstrap,
        child: Some(child),
    }
}

/// Creates the four topics under `prefix`.
pub fn create_topics(bootstrap: &str, prefix: &str) {
    let names: Vec<String> = ["products", "customers", "orders", "payments"]
        .iter()
        .map(|t| format!("{prefix}{t}"))
        .collect();
    create_named_topics(bootstrap, &names);
}

/// Creates the topics `names`, 4 partitions each.
pub fn create_named_topics(bootstrap: &str, names: &[String]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, 4, TopicReplication::Fixed(1)))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime
        .block_on(admin.create_topics(
            &topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .unwrap();
    for result in results {
        result.unwrap();
    }
}

pub fn topic_env(prefix: &str) -> Vec<(String, String)> {
    ["products", "customers", "orders", "payments"]
        .iter()
        .map(|t| {
            (
                format!("SIMULATOR__KAFKA__TOPICS__{}", t.to_uppercase()),
                format!("{prefix}{t}"),
            )
        })
        .collect()
}

/// Every message of the four topics under `prefix` (4 partitions each): its value by event id,
/// checking that every copy of an event is the same; and how many messages there were.
pub fn consume(bootstrap: &str, prefix: &str) -> (BTreeMap<String, Vec<u8>>, usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "restart-check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for topic in ["products", "customers", "orders", "payments"] {
        for partition in 0..4 {
            assignment
                .add_partition_offset(
                    &format!("{prefix}{topic}"),
                    partition,
                    rdkafka::Offset::Beginning,
                )
                .unwrap();
        }
    }
    consumer.assign(&assignment).unwrap();
    let (mut values, mut count, mut idle) = (BTreeMap::new(), 0, 0);
    while idle < 3 {
        match consumer.poll(Duration::from_secs(1)) {
            Some(Ok(message)) => {
                idle = 0;
                count += 1;
                let value = message.payload().unwrap().to_vec();
                // Every value starts with its event id: an Avro string (length 36, zig-zag 72).
                assert_eq!(value[0], 72);
                let id = String::from_utf8(value[1..37].to_vec()).unwrap();
                if let Some(earlier) = values.insert(id.clone(), value.clone()) {
                    assert_eq!(earlier, value, "event {id} published with two contents");
                }
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => idle += 1,
        }
    }
    (values, count)
}

/// A minimal Confluent-compatible schema registry: `POST /subjects/{subject}/versions` and
/// `GET /schemas/ids/{id}`.
pub struct RegistryDouble {
    pub url: String,
    pub subjects: Arc<Mutex<Vec<String>>>,
}

pub fn registry_double() -> RegistryDouble {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let subjects = Arc::new(Mutex::new(Vec::new()));
    let registered = Arc::clone(&subjects);
    std::thread::spawn(move || {
        let mut schemas: Vec<String> = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let parts: Vec<&str> = request_line.split_whitespace().collect();
            let (status, answer) = match (
                parts[0],
                parts[1].split('/').collect::<Vec<_>>().as_slice(),
            ) {
                ("POST", ["", "subjects", subject, "versions"]) => {
                    let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let schema = request["schema"].as_str().unwrap().to_owned();
                    let id = match schemas.iter().position(|s| *s == schema) {
                        Some(i) => i + 1,
                        None => {
                            schemas.push(schema);
                            schemas.len()
                        }
                    };
                    registered.lock().unwrap().push(subject.to_string());
                    ("200 OK", serde_json::json!({ "id": id }))
                }
                ("GET", ["", "schemas", "ids", id]) => {
                    match id.parse::<usize>().ok().and_then(|i| schemas.get(i - 1)) {
                        Some(schema) => ("200 OK", serde_json::json!({ "schema": schema })),
                        None => (
                            "404 Not Found",
                            serde_json::json!({ "error_code": 40403, "message": "Schema not found" }),
                        ),
                    }
                }
                _ => (
                    "404 Not Found",
                    serde_json::json!({ "error_code": 404, "message": "not found" }),
                ),
            };
            let body = answer.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    RegistryDouble { url, subjects }
}

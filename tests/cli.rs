//! The `simulator` binary as a user runs it: bad input, files read back by an independent
//! reader, reproducible output, and a clean stop on SIGTERM.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{simulator, stderr};
use std::time::Duration;

use apache_avro::types::Value;

fn run(args: &[&str]) -> Output {
    simulator().args(args).output().unwrap()
}

/// Every file of the data under `dir` (the ledger's directory aside).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("_ledger") {
                    stack.push(path);
                }
            } else if !path.ends_with(".simulator.lock")
                && !path.file_name().unwrap().to_string_lossy().starts_with('_')
            {
                // The output directory's lock and its run record are not data.
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The `delivered` count of the final JSON log line.
fn delivered(output: &Output) -> u64 {
    let text = stderr(output);
    let last = text
        .lines()
        .rev()
        .find(|l| l.contains("\"delivered\""))
        .unwrap_or_else(|| panic!("no summary in:\n{text}"));
    let value: serde_json::Value = serde_json::from_str(last).unwrap();
    value["delivered"].as_u64().unwrap()
}

#[test]
fn bad_input_is_refused_with_exit_code_2_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "[simulation]\nrate = 5/h\n").unwrap();
    let out_dir = format!("{}/data", blocker.display());
    let traffic = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let bad_zone = traffic("zone.toml", "[traffic]\ntime_zone = \"Mars/Olympus\"\n");
    let short_curve = traffic("curve.toml", "[traffic]\nweekly = \"1 1 1\"\n");
    let bad_promotion = traffic(
        "promotion.toml",
        "[[traffic.promotions]]\nname = \"x\"\nstart = \"2026-01-02T00:00:00Z\"\nend = \"2026-01-01T00:00:00Z\"\nuplift = \"2\"\ncategory = \"Yachts\"\n",
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--shard", "2/2", "--seed", "1"],
            "simulation.shard (--shard): `2/2` is not a shard",
        ),
        (
            vec!["--shard", "1/2"],
            "simulation.shard (--shard): replicas must share a seed (--seed)",
        ),
        (
            vec!["--profile", "spiky"],
            "traffic.profile (--profile): `spiky` is not a traffic profile",
        ),
        (
            vec!["--config", &bad_zone],
            "traffic.time_zone: `Mars/Olympus` is not an IANA time zone",
        ),
        (
            vec!["--config", &short_curve],
            "traffic.weekly: expected 7 factors, one per day of week Monday to Sunday, and got 3",
        ),
        (
            vec!["--config", &bad_promotion],
            "traffic.promotions[0].category: `Yachts` is not a category",
        ),
        (
            vec!["--rate", "500/x"],
            "simulation.rate (--rate): `x` is not a unit of time",
        ),
        (
            vec!["--rate", "0/h"],
            "simulation.rate (--rate): the number of orders in `0/h` must be greater than 0",
        ),
        (vec!["--rate", "-3/h"], "must be greater than 0"),
        (vec!["--rate", "lots/h"], "`lots` is not a number"),
        (
            vec!["--duration", "forever"],
            "simulation.duration (--duration): `forever` is not a duration",
        ),
        (vec!["--duration", "0s"], "the duration must be positive"),
        (
            vec!["--start", "2026-13-01"],
            "simulation.start (--start): `2026-13-01` is not an RFC 3339 instant",
        ),
        (
            vec!["--speed", "fast"],
            "simulation.speed (--speed): `fast` is not a speed",
        ),
        (vec!["--shoppers", "-1"], "simulation.shoppers (--shoppers)"),
        (
            vec!["--seed", "x"],
            "simulation.seed (--seed): `x` is not a seed",
        ),
        (
            vec!["--sink", "s3"],
            "sink.kinds (--sink): `s3` is not a sink",
        ),
        (
            vec!["--config", "/nonexistent/sim.toml"],
            "cannot read the configuration file",
        ),
        (vec!["--config", bad_toml.to_str().unwrap()], "bad.toml"),
        (vec!["--nonsense"], "unexpected argument '--nonsense'"),
        (
            vec!["--sink", "kafka", "--bootstrap-servers", "127.0.0.1:99999"],
            "kafka.bootstrap_servers (--bootstrap-servers): `127.0.0.1:99999` has no valid port",
        ),
        (
            vec!["--sink", "kafka", "--bootstrap-servers", ":9092"],
            "`:9092` has no host",
        ),
        (
            vec!["--start", "0000-01-01T00:00:00Z"],
            "simulation.start (--start): `0000-01-01T00:00:00Z` is outside the instants",
        ),
        (vec!["--rate", "inf/s"], "`inf` is not a finite number"),
        (
            vec!["--output-dir", &out_dir, "--duration", "1s"],
            "file.output_dir (--output-dir): cannot write there",
        ),
    ];
    for (args, needle) in cases {
        let output = run(&args);
        let text = stderr(&output);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?} exited {:?}: {text}",
            output.status
        );
        assert!(
            text.contains(needle),
            "{args:?}: {needle:?} not in:\n{text}"
        );
        assert!(
            !text.contains("panicked") && !text.contains("backtrace"),
            "{args:?}: {text}"
        );
    }

    // Environment variables are checked the same way, including unknown keys.
    let output = simulator()
        .env("SIMULATOR__SIMULATION__RATE", "9/fortnight")
        .env("SIMULATOR__SIMULATION__SHOPERS", "3")
        .output()
        .unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("invalid configuration (2 problems)"),
        "{text}"
    );
    assert!(
        text.contains("simulation.shopers: unknown setting"),
        "{text}"
    );
}

#[test]
fn print_config_shows_the_effective_layers() {
    let output = simulator()
        .env("SIMULATOR__SHOP__CURRENCY", "EUR")
        .args(["--rate", "20/s", "--print-config"])
        .output()
        .unwrap();
    common::assert_success(&output);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("rate = \"20/s\""), "{text}");
    assert!(text.contains("currency = \"EUR\""), "{text}");
    assert!(text.contains("# seed is unset"), "{text}");
}

/// Runs a simulated day as fast as possible into `dir`, at a constant rate.
fn simulate_day(dir: &Path, seed: &str) -> Output {
    let output = run(&[
        "--profile",
        "flat",
        "--rate",
        "2000/h",
        "--shoppers",
        "800",
        "--seed",
        seed,
        "--start",
        common::START,
        "--duration",
        "24h",
        "--speed",
        "max",
        "--output-dir",
        dir.to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    common::assert_success(&output);
    output
}

#[test]
fn files_are_read_back_by_an_independent_reader() {
    let dir = tempfile::tempdir().unwrap();
    let output = simulate_day(dir.path(), "42");
    let avsc = Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
    let check = Command::new(common::python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/check_avro_files.py"))
        .args([dir.path(), &avsc, &dir.path().join("_ledger")])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "fastavro check failed:\n{}",
        stderr(&check)
    );
    let summary: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    // The ground truth was written, one file per hour with events, and reconciled.
    assert!(summary["ledger_hours"].as_u64().unwrap() >= 24, "{summary}");
    let records: u64 = summary["records"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(records, delivered(&output), "fastavro read {summary}");
    // The catalogue, and a day of weekly price reviews: a seventh of the 500 products, each
    // changing its price with probability 2 p (1 - p) + p^2 5/6 = 0.274 at p = 0.15.
    let repriced = summary["records"]["products"].as_u64().unwrap() - 500;
    assert!((5..40).contains(&repriced), "{summary}");
    // An hourly file of orders and of payments for each of the 24 hours, plus the catalogue's
    // and the sign-ups' (which all happen in the first hours).
    assert!(
        summary["files"].as_u64().unwrap() >= 2 * 24 + 2,
        "{summary}"
    );
    let orders = summary["event_types"]["order_placed"].as_u64().unwrap();
    assert!(
        (44_000..52_000).contains(&orders),
        "{orders} orders in a day at 2000/h"
    );
    // The orders' lives: most are shipped within the day, some cancelled.
    for event_type in ["order_shipped", "order_cancelled", "payment_refunded"] {
        assert!(
            summary["event_types"][event_type].as_u64().unwrap_or(0) > 100,
            "{event_type}: {summary}"
        );
    }
}

/// Every record under `dir`, as text, sorted.
fn all_records(dir: &Path) -> Vec<String> {
    let mut records: Vec<String> = files(dir)
        .iter()
        .flat_map(|path| {
            let reader = apache_avro::Reader::new(File::open(path).unwrap()).unwrap();
            reader
                .map(|v| format!("{:?}", v.unwrap()))
                .collect::<Vec<_>>()
        })
        .collect();
    records.sort_unstable();
    records
}

#[test]
fn same_seed_writes_the_same_events() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    simulate_day(a.path(), "7");
    simulate_day(b.path(), "7");
    simulate_day(c.path(), "8");
    let (ra, rb, rc) = (
        all_records(a.path()),
        all_records(b.path()),
        all_records(c.path()),
    );
    assert!(ra.len() > 100_000);
    assert_eq!(ra, rb, "same seed, different events");
    assert_ne!(ra, rc, "different seeds, same events");
    // Same names too: the file layout is a function of the events.
    let names = |d: &Path| {
        files(d)
            .iter()
            .map(|p| p.strip_prefix(d).unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(a.path()), names(b.path()));
}

/// SIGTERM, SIGHUP and SIGQUIT each end a run cleanly: every event generated is in a
/// complete, readable file, the summary is logged and the exit code is 0.
#[test]
fn sigterm_sighup_and_sigquit_leave_only_complete_readable_files() {
    for signal in ["TERM", "HUP", "QUIT"] {
        stop_mid_run_with(signal);
    }
}

fn stop_mid_run_with(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    // Ten simulated minutes per second: files of the current hour stay open until the signal.
    let child = simulator()
        .args([
            "--rate",
            "40/s",
            "--shoppers",
            "500",
            "--seed",
            "5",
            "--speed",
            "600",
        ])
        .args([
            "--output-dir",
            dir.path().to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) until files are being written, then stop it mid-run.
    let mut writing = false;
    for _ in 0..300 {
        if dir.path().exists()
            && files(dir.path())
                .iter()
                .filter(|p| p.to_string_lossy().ends_with(".inprogress"))
                .count()
                >= 3
        {
            writing = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(writing, "no file was started within 15 s");
    std::thread::sleep(Duration::from_millis(500));
    let killed = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "SIG{signal}: {}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains(&format!("SIG{signal} received; finishing")),
        "{}",
        stderr(&output)
    );

    let written = files(dir.path());
    assert!(
        written
            .iter()
            .all(|p| p.extension().is_some_and(|e| e == "avro")),
        "{written:?}"
    );
    let mut per_topic = BTreeMap::new();
    for path in &written {
        let reader = apache_avro::Reader::new(File::open(path).unwrap()).unwrap();
        let topic = path
            .strip_prefix(dir.path())
            .unwrap()
            .iter()
            .next()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for value in reader {
            assert!(matches!(value.unwrap(), Value::Record(_)));
            *per_topic.entry(topic.clone()).or_insert(0u64) += 1;
        }
    }
    let records: u64 = per_topic.values().sum();
    assert!(
        per_topic.get("orders").copied().unwrap_or(0) > 0,
        "{per_topic:?}"
    );
    assert_eq!(records, delivered(&output), "{per_topic:?}");
}

/// A second simulator is refused a ledger directory in use, and an output directory that is a
/// file, with exit code 2 and the setting named.
#[test]
fn a_ledger_in_use_and_an_output_dir_that_is_a_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let first = simulator()
        .args(["--rate", "10/s", "--speed", "60"])
        .args(["--output-dir", dir.path().join("a").to_str().unwrap()])
        .args(["--ledger-dir", ledger.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut second = None;
    for _ in 0..100 {
        if ledger.join(".simulator.lock").exists() {
            second = Some(
                simulator()
                    .args(["--output-dir", dir.path().join("b").to_str().unwrap()])
                    .args(["--ledger-dir", ledger.to_str().unwrap()])
                    .output()
                    .unwrap(),
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    let first = first.wait_with_output().unwrap();
    common::assert_success(&first);
    let second = second.expect("the first simulator locked its ledger within 5 s");
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("ledger.dir (--ledger-dir): cannot write there")
            && stderr(&second).contains("is in use by another simulator"),
        "{}",
        stderr(&second)
    );

    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let refused = simulator()
        .args(["--output-dir", file.to_str().unwrap(), "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("is a file, not a directory"),
        "{}",
        stderr(&refused)
    );
}

/// An output directory belongs to one run: another run's files would mix with its own and
/// its ledger would overwrite the first one's hours. Another seed is refused (exit 2, naming
/// the setting); the same run again, and the replicas of one run, are welcome, each replica
/// with its own ledger.
#[test]
fn an_output_dir_holds_one_run_and_its_replicas() {
    let dir = tempfile::tempdir().unwrap();
    // A simulated hour of replica `shard` of the run of `seed`, into `output`.
    let hour = |seed: &str, shard: &str, output: &Path| {
        simulator()
            .args(["--seed", seed, "--shard", shard, "--rate", "3600/h"])
            .args(["--start", common::START, "--duration", "1h"])
            .args(["--speed", "max", "--output-dir", output.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let data = dir.path().join("data");
    common::assert_success(&hour("7", "0/1", &data));
    let events = files(&data).len();
    assert!(data.join("_run.json").exists() && data.join("_ledger/_run.json").exists());

    let other = hour("8", "0/1", &data);
    assert_eq!(other.status.code(), Some(2), "{}", stderr(&other));
    assert!(
        stderr(&other).contains("holds the output of another run")
            && stderr(&other).contains("simulation.seed is 7, this run's is 8"),
        "{}",
        stderr(&other)
    );
    assert_eq!(files(&data).len(), events, "the refused run wrote files");
    // The same run again is the same run (it writes the same events again).
    common::assert_success(&hour("7", "0/1", &data));

    // Two replicas of one run share a directory; each keeps its own ledger.
    let shared = dir.path().join("shared");
    for shard in ["0/2", "1/2"] {
        common::assert_success(&hour("7", shard, &shared));
    }
    for index in 0..2 {
        let ledger = shared.join(format!("_ledger/shard={index}"));
        assert!(
            std::fs::read_dir(&ledger).is_ok_and(|mut d| d.next().is_some()),
            "no ledger in {}",
            ledger.display()
        );
    }
    // A third replica of a run of three is another run.
    let third = hour("7", "2/3", &shared);
    assert_eq!(third.status.code(), Some(2), "{}", stderr(&third));
    assert!(
        stderr(&third).contains("simulation.shard"),
        "{}",
        stderr(&third)
    );
}

/// Logs written to a pipe or a file carry no terminal colour codes.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let output = simulator()
        .args(["--sink", "null", "--speed", "max", "--duration", "10s"])
        .args(["--start", common::START, "--seed", "1"])
        .output()
        .unwrap();
    common::assert_success(&output);
    let text = stderr(&output);
    assert!(text.contains("simulator starting"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in: {text:?}");
}

/// The start line says how many worker threads the shoppers run on: those set, or what
/// `--workers auto` chose.
#[test]
fn the_start_line_names_the_shoppers_workers() {
    let starting = |args: &[&str]| {
        let output = simulator()
            .args([
                "--sink",
                "null",
                "--duration",
                "1s",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(["--start", common::START, "--seed", "1"])
            .args(args)
            .output()
            .unwrap();
        common::assert_success(&output);
        let text = stderr(&output);
        let line = text.lines().find(|l| l.contains("simulator starting"));
        line.unwrap_or_else(|| panic!("no start line in: {text}"))
            .to_owned()
    };
    let set = starting(&["--speed", "max", "--workers", "3"]);
    assert!(set.contains(" workers=3 "), "{set}");
    // 500 orders an hour in real time: one worker whatever the cores.
    let paced = starting(&["--speed", "1"]);
    assert!(paced.contains(" workers=1 "), "{paced}");
}

#[test]
fn the_connection_string_never_appears_in_output() {
    const KEY: &str = "c2VjcmV0LWtleS1zaG91bGQtbmV2ZXItbGVhaw==";
    let cs = format!(
        "Endpoint=sb://simulator-test.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={KEY}"
    );
    let printed = simulator()
        .env("SIMULATOR__KAFKA__CONNECTION_STRING", &cs)
        .args(["--sink", "kafka", "--print-config"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&printed.stdout);
    common::assert_success(&printed);
    assert!(
        text.contains("redacted") && text.contains("simulator-test.servicebus.windows.net"),
        "{text}"
    );
    assert!(!text.contains(KEY));

    let bad = simulator()
        .env(
            "SIMULATOR__KAFKA__CONNECTION_STRING",
            format!("Endpoint=sb://;SharedAccessKey={KEY}"),
        )
        .args(["--sink", "kafka"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("kafka.connection_string: the connection string"),
        "{}",
        stderr(&bad)
    );
    assert!(!stderr(&bad).contains(KEY));

    // A run against a namespace that cannot be reached (no network here), logging everything.
    let run = simulator()
        .env("SIMULATOR__KAFKA__CONNECTION_STRING", &cs)
        .env("SIMULATOR__KAFKA__DELIVERY_TIMEOUT", "1s")
        .env("RUST_LOG", "trace")
        .args([
            "--sink",
            "kafka",
            "--rate",
            "10/s",
            "--shoppers",
            "5",
            "--duration",
            "30s",
            "--speed",
            "max",
        ])
        .output()
        .unwrap();
    let logs = stderr(&run);
    assert_eq!(run.status.code(), Some(1), "{logs}");
    assert!(
        logs.contains("simulator-test.servicebus.windows.net:9093"),
        "{logs}"
    );
    assert!(
        !logs.contains(KEY),
        "the connection string leaked into the logs"
    );
    assert!(!String::from_utf8_lossy(&run.stdout).contains(KEY));
}

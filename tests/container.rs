//! The container image, built from `deploy/container/Dockerfile` and run with podman as the
//! Kubernetes manifests run it: as the non-root user 10001, with a read-only root file system
//! and a writable volume at its working directory, publishing to a real broker (tansu, on the
//! host network). It answers `/healthz` and `/metrics`, and SIGTERM stops it cleanly within the
//! manifests' grace period with every event delivered.
//!
//! No image can be pulled here: the base image is made from Debian's packages with mmdebstrap,
//! and the binary the suite built is handed to the Dockerfile's runtime stage as an image of its
//! own (`--build-arg BINARY=...`), so the image is the Dockerfile's, minus the compile. Needs
//! podman, runc and mmdebstrap (`.ci/run` installs them) and root.

// The subject is a real container: its stop is timed on the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{broker, create_topics, topic_env};

const IMAGE: &str = "localhost/retail-simulator:test";
const BINARY_IMAGE: &str = "localhost/retail-simulator-binary:test";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test's scratch directory, kept between runs (the base image's root file system is
/// cached there).
fn work() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("container");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `podman` as this machine runs it: runc with cgroupfs, and no default rlimits.
fn podman() -> Command {
    let conf = work().join("containers.conf");
    std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
    let mut command = Command::new("podman");
    command.env("CONTAINERS_CONF", conf).args([
        "--runtime",
        "runc",
        "--cgroup-manager",
        "cgroupfs",
    ]);
    command
}

#[track_caller]
fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Makes the Dockerfile's base image from Debian's packages, once.
fn base_image() {
    let rootfs = work().join("bookworm-minbase.tar");
    if !rootfs.exists() {
        let partial = work().join("bookworm-minbase.tar.partial");
        ok(Command::new("mmdebstrap")
            .args([
                "--variant=minbase",
                "--format=tar",
                "--include=ca-certificates",
            ])
            .arg("bookworm")
            .arg(&partial)
            .output()
            .expect("mmdebstrap (.ci/run installs it)"));
        std::fs::rename(&partial, &rootfs).unwrap();
    }
    ok(podman()
        .arg("import")
        .arg(&rootfs)
        .arg("localhost/debian:bookworm-slim")
        .output()
        .expect("podman (.ci/run installs it)"));
    ok(podman()
        .args(["tag", "localhost/debian:bookworm-slim"])
        .arg("docker.io/library/debian:bookworm-slim")
        .output()
        .unwrap());
}

/// An image holding the binary the suite built where the Dockerfile's build stage leaves it.
fn binary_image() {
    let tree = work().join("binary");
    let release = tree.join("src/target/release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_simulator"), release.join("simulator")).unwrap();
    let tar = work().join("binary.tar");
    ok(Command::new("tar")
        .arg("-C")
        .arg(&tree)
        .arg("-cf")
        .arg(&tar)
        .arg("src")
        .output()
        .unwrap());
    ok(podman()
        .arg("import")
        .arg(&tar)
        .arg(BINARY_IMAGE)
        .output()
        .unwrap());
}

/// The grace period of the Deployment, in seconds.
fn grace_period() -> u64 {
    let manifest =
        std::fs::read_to_string(root().join("deploy/kubernetes/deployment.yaml")).unwrap();
    manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .expect("the Deployment sets a grace period")
        .trim()
        .parse()
        .unwrap()
}

/// A container removed when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", &self.0]).output();
    }
}

fn get(url: &str) -> Option<(u16, String)> {
    match ureq::get(url).call() {
        Ok(mut response) => Some((
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap(),
        )),
        Err(_) => None,
    }
}

#[test]
fn the_image_runs_read_only_as_non_root_and_stops_cleanly_on_sigterm() {
    base_image();
    binary_image();
    ok(podman()
        .args(["build", "--isolation", "chroot"])
        .arg("-f")
        .arg(root().join("deploy/container/Dockerfile"))
        .args([
            "--build-arg",
            &format!("BINARY={BINARY_IMAGE}"),
            "-t",
            IMAGE,
        ])
        .arg(root())
        .output()
        .unwrap());

    let broker = broker();
    let prefix = format!("ctr{}-", std::process::id());
    create_topics(&broker.bootstrap, &prefix);
    let volume = tempfile::tempdir().unwrap();
    ok(Command::new("chown")
        .arg("10001:10001")
        .arg(volume.path())
        .output()
        .unwrap());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let name = format!("retail-simulator-test-{}", std::process::id());
    let mut run = podman();
    run.args([
        "run",
        "-d",
        "--name",
        &name,
        "--ulimit",
        "host",
        "--network",
        "host",
    ])
    .args(["--read-only", "-v"])
    .arg(format!("{}:/var/lib/simulator", volume.path().display()));
    for (key, value) in topic_env(&prefix) {
        run.args(["-e", &format!("{key}={value}")]);
    }
    run.arg(IMAGE)
        .args(["--sink", "kafka", "--bootstrap-servers", &broker.bootstrap])
        .args(["--rate", "50/s", "--speed", "60", "--seed", "3"])
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ]);
    ok(run.output().unwrap());
    let container = Container(name);

    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while get(&format!("{base}/readyz")).is_none_or(|(status, _)| status != 200) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not ready within 30 s: {:?}",
            get(&format!("{base}/readyz"))
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(&format!("{base}/healthz")).unwrap().0, 200);
    let (status, metrics) = get(&format!("{base}/metrics")).unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("simulator_build_info"), "{metrics}");
    // The user, and a root file system nothing can write to.
    let user = ok(podman()
        .args(["exec", &container.0, "id", "-u"])
        .output()
        .unwrap());
    assert_eq!(user.trim(), "10001");
    let write = podman()
        .args(["exec", &container.0, "touch", "/usr/local/bin/x"])
        .output()
        .unwrap();
    assert!(!write.status.success(), "the root file system is writable");
    std::thread::sleep(Duration::from_secs(2));

    // `podman stop` sends SIGTERM, and SIGKILL after the grace period.
    let grace = grace_period();
    let stopping = Instant::now();
    ok(podman()
        .args(["stop", "-t", &grace.to_string(), &container.0])
        .output()
        .unwrap());
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(grace),
        "took {took:?}, beyond the {grace} s grace period"
    );
    let code = ok(podman()
        .args(["inspect", &container.0, "--format", "{{.State.ExitCode}}"])
        .output()
        .unwrap());
    let logs = podman().args(["logs", &container.0]).output().unwrap();
    // The simulator logs to standard error; podman keeps the streams apart.
    let log =
        String::from_utf8_lossy(&logs.stderr).into_owned() + &String::from_utf8_lossy(&logs.stdout);
    assert_eq!(code.trim(), "0", "{log}");
    let last = log
        .lines()
        .find(|l| l.contains("simulator stopped"))
        .unwrap_or_else(|| panic!("no summary: {log}"));
    let last: serde_json::Value = serde_json::from_str(last).unwrap();
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("every event was delivered"),
        "{last}"
    );
    let delivered = last["delivered"].as_u64().unwrap();
    assert!(delivered > 1_000, "{last}");
    let (published, messages) = common::consume(&broker.bootstrap, &prefix);
    assert_eq!(messages as u64, delivered);
    assert_eq!(published.len(), messages, "duplicates in the topics");
    // The ledger went to the volume, owned by the container's user.
    assert!(
        volume.path().join("data/_ledger/_run.json").exists(),
        "no ledger on the volume"
    );
}

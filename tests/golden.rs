//! The output of a fixed seed does not change unnoticed: a seeded day with every feature that
//! shapes events (realistic traffic, a promotion, a second currency, churn and repricing) is
//! written by the file sink, and its files and ledger are compared with the manifest committed
//! in `tests/golden/day.manifest`: one line per file, its path, its records and a CRC-32.
//!
//! What a seed fixes is each file's set of records and the ledger, byte for byte; not the order
//! of records within an hour's file, which interleaves the shoppers' batches as the runtime
//! schedules them (each shopper's own events stay in order), nor the container's random sync
//! marker. So a ledger file's checksum covers its bytes, and an Avro file's covers its records'
//! binary encodings, sorted. Injected faults are left out: the injector draws as events reach
//! the sink, so which events it affects depends on that interleaving too.
//!
//! A change that alters the output on purpose regenerates the manifest with
//! `SIMULATOR_BLESS=1 cargo test --release --test golden` and says why in its commit.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_success, simulator};

const MANIFEST: &str = "tests/golden/day.manifest";

const CONFIG: &str = r#"
[traffic]
customer_lifetime = "20d"

[[traffic.promotions]]
name = "winter-sale"
start = "2026-01-05T09:00:00-05:00"
end = "2026-01-05T15:00:00-05:00"
uplift = "2"
category = "Electronics"
discount = "0.15"

[catalogue]
products = 300
reprice_probability = 0.5

[[shop.currencies]]
code = "EUR"
rate = 0.92
share = 0.3
"#;

/// Every file under `root`, as sorted `path records crc32` lines (`-` records for a ledger file).
fn manifest(root: &Path) -> String {
    let mut files = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let mut lines: Vec<String> = files
        .iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|path| {
            let bytes = std::fs::read(path).unwrap();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            if path.extension().is_some_and(|e| e == "avro") {
                let (records, crc) = sorted_records(&bytes);
                format!("{relative} {records} {crc:08x}")
            } else {
                format!("{relative} - {:08x}", crc32fast::hash(&bytes))
            }
        })
        .collect();
    lines.sort();
    lines.join("\n") + "\n"
}

/// The number of records of an Avro container file, and a CRC-32 of their binary encodings
/// in sorted order, each preceded by its length.
fn sorted_records(bytes: &[u8]) -> (usize, u32) {
    let reader = apache_avro::Reader::new(bytes).unwrap();
    let schema = reader.writer_schema().clone();
    let mut records: Vec<Vec<u8>> = reader
        .map(|value| apache_avro::to_avro_datum(&schema, value.unwrap()).unwrap())
        .collect();
    records.sort();
    let mut hasher = crc32fast::Hasher::new();
    for record in &records {
        hasher.update(&(record.len() as u64).to_le_bytes());
        hasher.update(record);
    }
    (records.len(), hasher.finalize())
}

#[test]
fn a_seeded_day_gives_the_same_files_and_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("golden.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let data = dir.path().join("data");
    let output = simulator()
        .args(["--config", config.to_str().unwrap()])
        .args(["--seed", "20260105", "--start", "2026-01-05T00:00:00Z"])
        .args(["--duration", "24h", "--speed", "max"])
        .args(["--rate", "1500/h", "--shoppers", "4000"])
        .args(["--output-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&output);
    let actual = manifest(&data);
    let expected_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(MANIFEST);
    if std::env::var_os("SIMULATOR_BLESS").is_some() {
        std::fs::create_dir_all(expected_path.parent().unwrap()).unwrap();
        std::fs::write(&expected_path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    if actual != expected {
        let differing: Vec<&str> = actual
            .lines()
            .filter(|line| !expected.lines().any(|e| e == *line))
            .take(10)
            .collect();
        panic!(
            "the output of a fixed seed changed ({} files now, {} in {MANIFEST}); first lines \
             that differ:\n{}",
            actual.lines().count(),
            expected.lines().count(),
            differing.join("\n")
        );
    }
}

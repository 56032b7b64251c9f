//! Which hours of an output directory are complete, and the files that hold them.
//!
//! The file sink writes `<root>/<topic>/date=YYYY-MM-DD/hour=HH/<topic>-YYYYMMDDTHH-NNNNN.avro`
//! (see `sinks::file`), unfinished files under a hidden `.inprogress` name; the ledger writes
//! `<ledger>/[shard=I/]date=YYYY-MM-DD/hour=HH.json` once an hour has ended, with the events
//! the run generated for it. An hour is **complete** when
//! - no topic's directory of the hour holds an unfinished file,
//! - every replica of the run (the `N` of `_run.json`'s `simulation.shard`, else 1) has written
//!   its ledger for that hour or a later one, so none has more to add, and
//! - the complete files hold exactly the events the ledgers count for it (`events_total` plus
//!   the injected duplicates): nothing is still held back as a late event, nothing is pending a
//!   save of the run's state.
//!
//! A complete hour never changes again: its files are immutable, so positions in it are
//! stable, across restarts of whoever serves them.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use sha2::{Digest, Sha256};

use super::avro::Container;
use crate::model::{MICROS_PER_HOUR, Timestamp, Topic};

/// The record of the run a directory holds (written by `state::claim`).
const RUN_RECORD: &str = "_run.json";

/// One complete file of an hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourFile {
    pub topic: Topic,
    pub part: u32,
    pub path: PathBuf,
    pub len: u64,
    pub events: u64,
}

/// What is known of one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hour {
    /// Its start.
    pub start: Timestamp,
    /// Its complete files, by topic (in [`Topic::ALL`] order), then part.
    pub files: Vec<HourFile>,
    /// Why it is not complete; `None`: complete.
    pub incomplete: Option<String>,
}

impl Hour {
    /// Events in its complete files, by topic.
    pub fn events(&self) -> BTreeMap<Topic, u64> {
        let mut events = BTreeMap::new();
        for file in &self.files {
            *events.entry(file.topic).or_default() += file.events;
        }
        events
    }

    /// Its files of `topic` (all topics: `None`), in order.
    pub fn selection(&self, topic: Option<Topic>) -> Vec<HourFile> {
        self.files
            .iter()
            .filter(|f| topic.is_none_or(|t| f.topic == t))
            .cloned()
            .collect()
    }

    /// A digest of its files (names and sizes): what cursors and entity tags are bound to.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut digest = Sha256::new();
        digest.update(self.start.as_micros().to_be_bytes());
        for file in &self.files {
            digest.update(file.path.as_os_str().as_encoded_bytes());
            digest.update(file.len.to_be_bytes());
            digest.update(file.events.to_be_bytes());
        }
        digest.finalize().into()
    }
}

/// The hours of a directory at one instant. Hours are shared between scans: a complete one is
/// carried from each scan to the next as it is.
#[derive(Debug, Clone, Default)]
pub struct Hours {
    pub hours: BTreeMap<i64, Arc<Hour>>,
}

impl Hours {
    /// The latest hour such that it and every hour before it with data are complete.
    pub fn watermark(&self) -> Option<Timestamp> {
        let mut watermark = None;
        for hour in self.hours.values() {
            if hour.incomplete.is_some() {
                break;
            }
            watermark = Some(hour.start);
        }
        watermark
    }

    /// The complete hours, in order.
    pub fn complete(&self) -> impl Iterator<Item = &Hour> {
        self.hours
            .values()
            .map(|h| h.as_ref())
            .filter(|h| h.incomplete.is_none())
    }

    /// The hour starting at `start`, if it has data.
    pub fn get(&self, start: Timestamp) -> Option<&Arc<Hour>> {
        self.hours.get(&start.as_micros())
    }
}

/// Where the data and the ledger are.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub ledger: PathBuf,
}

/// A file's identity for the cache of record counts.
type Stamp = (u64, Option<SystemTime>);

/// Scans a directory's hours. A complete hour never changes, so once seen complete it is
/// neither listed nor read again (nor is a day all of whose hours are): a scan of a year of
/// output reads only the directories of the hours still open.
#[derive(Debug)]
pub struct Scanner {
    layout: Layout,
    /// Record counts of files not yet part of a complete hour, by path.
    counts: HashMap<PathBuf, (Stamp, u64)>,
    /// The last scan.
    previous: Hours,
    /// Each replica's ledger as last read.
    ledgers: Vec<ReplicaLedger>,
}
/// A scan that failed: the path and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot read `{path}`: {source}")]
pub struct ScanError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn scan_error(path: &Path) -> impl FnOnce(io::Error) -> ScanError + '_ {
    move |source| ScanError {
        path: path.to_owned(),
        source,
    }
}

/// The entries of `dir`, by name; none when it does not exist.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, ScanError> {
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(scan_error(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in listing {
        let entry = entry.map_err(scan_error(dir))?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    out.sort();
    Ok(out)
}

/// The start of the hour `date=YYYY-MM-DD` / `hour=HH` name.
fn hour_of(date: &str, hour: &str) -> Option<Timestamp> {
    let date = NaiveDate::parse_from_str(date.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
    let hour: u32 = hour.strip_prefix("hour=")?.parse().ok()?;
    let time = NaiveTime::from_hms_opt(hour, 0, 0)?;
    Some(Timestamp::from_datetime(
        NaiveDateTime::new(date, time).and_utc(),
    ))
}

/// How many replicas wrote the run whose `_run.json` is in one of `dirs`.
fn replicas(dirs: &[&Path]) -> u32 {
    for dir in dirs {
        let Ok(bytes) = fs::read(dir.join(RUN_RECORD)) else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let shard = record["settings"].as_array().and_then(|settings| {
            settings.iter().find_map(|pair| {
                (pair[0].as_str() == Some("simulation.shard")).then(|| pair[1].as_str())?
            })
        });
        if let Some(count) = shard
            .and_then(|s| s.split_once('/'))
            .and_then(|(_, n)| n.parse::<u32>().ok())
        {
            return count.max(1);
        }
    }
    1
}

/// One replica's ledger: events expected per hour, and the latest hour written.
#[derive(Debug, Default, Clone)]
struct ReplicaLedger {
    expected: BTreeMap<i64, u64>,
    latest: Option<i64>,
}

/// Reads a replica's ledger under `dir`, keeping from `previous` the hours of the days that
/// `final_day` says are complete, without reading them again.
fn read_ledger(
    dir: &Path,
    previous: &ReplicaLedger,
    final_day: &dyn Fn(i64) -> bool,
    final_hour: &dyn Fn(i64) -> bool,
) -> Result<ReplicaLedger, ScanError> {
    let mut ledger = ReplicaLedger::default();
    for (date, date_path) in entries(dir)? {
        let Some(day) = hour_of(&date, "hour=00") else {
            continue;
        };
        let day = day.as_micros();
        if final_day(day) {
            let end = day + 24 * MICROS_PER_HOUR;
            ledger
                .expected
                .extend(previous.expected.range(day..end).map(|(k, v)| (*k, *v)));
            continue;
        }
        for (name, path) in entries(&date_path)? {
            let Some(hour) = name
                .strip_suffix(".json")
                .and_then(|hour| hour_of(&date, hour))
            else {
                continue;
            };
            let start = hour.as_micros();
            if final_hour(start)
                && let Some(known) = previous.expected.get(&start)
            {
                ledger.expected.insert(start, *known);
                continue;
            }
            let text = fs::read(&path).map_err(scan_error(&path))?;
            let json: serde_json::Value = serde_json::from_slice(&text).map_err(|e| ScanError {
                path: path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            })?;
            let expected = json["events_total"].as_u64().unwrap_or(0)
                + json["faults"]["duplicates"].as_u64().unwrap_or(0);
            ledger.expected.insert(start, expected);
        }
    }
    ledger.latest = ledger.expected.keys().next_back().copied();
    Ok(ledger)
}

impl Scanner {
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            counts: HashMap::new(),
            previous: Hours::default(),
            ledgers: Vec::new(),
        }
    }

    fn count(&mut self, path: &Path, stamp: Stamp) -> Result<u64, ScanError> {
        if let Some((known, events)) = self.counts.get(path)
            && *known == stamp
        {
            return Ok(*events);
        }
        let events = Container::open(path)
            .and_then(Container::count)
            .map_err(scan_error(path))?;
        self.counts.insert(path.to_owned(), (stamp, events));
        Ok(events)
    }

    /// Scans the directory now.
    pub fn scan(&mut self) -> Result<Hours, ScanError> {
        let root = self.layout.root.clone();
        let previous = std::mem::take(&mut self.previous);
        let final_hour = |start: i64| {
            previous
                .hours
                .get(&start)
                .is_some_and(|h| h.incomplete.is_none())
        };
        let final_day = |day: i64| (0..24).all(|h| final_hour(day + h * MICROS_PER_HOUR));
        let mut files: BTreeMap<i64, Vec<HourFile>> = BTreeMap::new();
        let mut unfinished: BTreeMap<i64, usize> = BTreeMap::new();
        for topic in Topic::ALL {
            for (date, date_path) in entries(&root.join(topic.as_str()))? {
                let Some(day) = hour_of(&date, "hour=00") else {
                    continue;
                };
                if final_day(day.as_micros()) {
                    continue;
                }
                for (hour_name, hour_path) in entries(&date_path)? {
                    let Some(hour) = hour_of(&date, &hour_name) else {
                        continue;
                    };
                    let start = hour.as_micros();
                    if final_hour(start) {
                        continue;
                    }
                    files.entry(start).or_default();
                    let prefix = format!("{topic}-{}-", hour.to_datetime().format("%Y%m%dT%H"));
                    for (name, path) in entries(&hour_path)? {
                        if name.starts_with('.') && name.ends_with(".inprogress") {
                            *unfinished.entry(start).or_default() += 1;
                            continue;
                        }
                        let Some(part) = name
                            .strip_prefix(&prefix)
                            .and_then(|rest| rest.strip_suffix(".avro"))
                            .and_then(|n| n.parse::<u32>().ok())
                        else {
                            continue;
                        };
                        let meta = fs::metadata(&path).map_err(scan_error(&path))?;
                        let stamp = (meta.len(), meta.modified().ok());
                        let events = self.count(&path, stamp)?;
                        files.entry(start).or_default().push(HourFile {
                            topic,
                            part,
                            path,
                            len: meta.len(),
                            events,
                        });
                    }
                }
            }
        }
        let replica_count = replicas(&[&root, &self.layout.ledger]);
        let dirs: Vec<PathBuf> = if replica_count > 1 {
            (0..replica_count)
                .map(|i| self.layout.ledger.join(format!("shard={i}")))
                .collect()
        } else {
            vec![self.layout.ledger.clone()]
        };
        let empty = ReplicaLedger::default();
        let ledgers: Vec<ReplicaLedger> = dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                read_ledger(
                    dir,
                    self.ledgers.get(i).unwrap_or(&empty),
                    &final_day,
                    &final_hour,
                )
            })
            .collect::<Result<_, _>>()?;
        for ledger in &ledgers {
            for start in ledger.expected.keys() {
                if !final_hour(*start) {
                    files.entry(*start).or_default();
                }
            }
        }
        let mut hours: BTreeMap<i64, Arc<Hour>> = previous
            .hours
            .into_iter()
            .filter(|(_, h)| h.incomplete.is_none())
            .collect();
        for (start, mut hour_files) in files {
            hour_files.sort_by_key(|f| (f.topic.index(), f.part));
            let held: u64 = hour_files.iter().map(|f| f.events).sum();
            let expected: Option<u64> = ledgers
                .iter()
                .filter_map(|l| l.expected.get(&start))
                .copied()
                .reduce(|a, b| a + b);
            let behind = ledgers
                .iter()
                .filter(|l| l.latest.is_none_or(|latest| latest < start))
                .count();
            let incomplete = if let Some(n) = unfinished.get(&start) {
                Some(format!("{n} of its files are still being written"))
            } else if behind > 0 {
                Some(format!(
                    "{behind} of {replica_count} replicas have not written its ledger yet"
                ))
            } else {
                match expected {
                    Some(expected) if expected == held => None,
                    Some(expected) => Some(format!(
                        "its files hold {held} of the {expected} events its ledger counts"
                    )),
                    None => Some("its ledger has not been written".to_owned()),
                }
            };
            if incomplete.is_none() {
                // Final: its files' counts live in the hour from now on.
                for file in &hour_files {
                    self.counts.remove(&file.path);
                }
            }
            hours.insert(
                start,
                Arc::new(Hour {
                    start: Timestamp::from_micros(start),
                    files: hour_files,
                    incomplete,
                }),
            );
        }
        let hours = Hours { hours };
        self.previous = hours.clone();
        self.ledgers = ledgers;
        Ok(hours)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value;
    use apache_avro::{Schema, Writer};

    const HOUR: &str = "2026-03-02T13:00:00Z";

    fn start() -> Timestamp {
        Timestamp::from_datetime(HOUR.parse().unwrap())
    }

    fn hour_dir(root: &Path, topic: &str) -> PathBuf {
        root.join(topic).join("date=2026-03-02").join("hour=13")
    }

    /// A file of `events` records (of a one-field schema: the scanner only counts).
    fn write(root: &Path, topic: &str, part: u32, events: i64) -> PathBuf {
        let dir = hour_dir(root, topic);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{topic}-20260302T13-{part:05}.avro"));
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"E","fields":[{"name":"n","type":"long"}]}"#,
        )
        .unwrap();
        let mut writer = Writer::new(&schema, fs::File::create(&path).unwrap());
        for n in 0..events {
            writer
                .append(Value::Record(vec![("n".into(), Value::Long(n))]))
                .unwrap();
        }
        writer.into_inner().unwrap();
        path
    }

    fn ledger(dir: &Path, hour: &str, events: u64, duplicates: u64) {
        let dir = dir.join("date=2026-03-02");
        fs::create_dir_all(&dir).unwrap();
        let json =
            serde_json::json!({"events_total": events, "faults": {"duplicates": duplicates}});
        fs::write(dir.join(format!("hour={hour}.json")), json.to_string()).unwrap();
    }

    fn scanner(root: &Path) -> Scanner {
        Scanner::new(Layout {
            root: root.to_owned(),
            ledger: root.join("_ledger"),
        })
    }

    fn state(hours: &Hours) -> Option<String> {
        hours.get(start()).unwrap().incomplete.clone()
    }

    #[test]
    fn an_hour_is_complete_once_its_files_hold_what_its_ledger_counts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut scanner = scanner(root);
        write(root, "orders", 0, 5);
        let unfinished =
            hour_dir(root, "payments").join(".payments-20260302T13-00000.avro.inprogress");
        fs::create_dir_all(unfinished.parent().unwrap()).unwrap();
        fs::write(&unfinished, b"").unwrap();
        let hours = scanner.scan().unwrap();
        assert!(state(&hours).unwrap().contains("still being written"));
        assert_eq!(hours.watermark(), None);

        fs::remove_file(&unfinished).unwrap();
        write(root, "payments", 0, 3);
        assert!(state(&scanner.scan().unwrap()).unwrap().contains("ledger"));
        // 8 events and 1 duplicate: the files must hold 9.
        ledger(&root.join("_ledger"), "13", 8, 1);
        assert!(
            state(&scanner.scan().unwrap())
                .unwrap()
                .contains("hold 8 of the 9")
        );
        write(root, "orders", 1, 1);
        let hours = scanner.scan().unwrap();
        assert_eq!(state(&hours), None);
        assert_eq!(hours.watermark(), Some(start()));
        let hour = hours.get(start()).unwrap();
        assert_eq!(
            hour.files
                .iter()
                .map(|f| (f.topic, f.part, f.events))
                .collect::<Vec<_>>(),
            [
                (Topic::Orders, 0, 5),
                (Topic::Orders, 1, 1),
                (Topic::Payments, 0, 3)
            ]
        );
        assert_eq!(hour.events()[&Topic::Orders], 6);

        // Final: not read again, even if its files go.
        let fingerprint = hour.fingerprint();
        fs::remove_dir_all(root.join("orders")).unwrap();
        let again = scanner.scan().unwrap();
        assert_eq!(again.get(start()).unwrap().fingerprint(), fingerprint);
    }

    #[test]
    fn every_replica_must_have_passed_the_hour() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let record = serde_json::json!({"settings": [["simulation.seed", "1"], ["simulation.shard", "*/2"]]});
        fs::write(root.join(RUN_RECORD), record.to_string()).unwrap();
        write(root, "orders", 0, 4);
        ledger(&root.join("_ledger/shard=0"), "13", 4, 0);
        let mut scanner = scanner(root);
        assert!(
            state(&scanner.scan().unwrap())
                .unwrap()
                .contains("1 of 2 replicas")
        );
        // Replica 1 had nothing in 13:00 but has written a later hour: it has passed it.
        ledger(&root.join("_ledger/shard=1"), "14", 2, 0);
        let hours = scanner.scan().unwrap();
        assert_eq!(state(&hours), None);
        // Its 14:00 has a ledger and no files yet: not complete, and the watermark stays.
        let later = Timestamp::from_micros(start().as_micros() + MICROS_PER_HOUR);
        assert!(hours.get(later).unwrap().incomplete.is_some());
        assert_eq!(hours.watermark(), Some(start()));
        assert_eq!(hours.complete().count(), 1);
    }
}

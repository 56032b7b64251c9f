//! The run's saved state, for restarts: `--state-dir`.
//!
//! A save is a consistent cut of the whole run. The simulation pauses its shoppers between two
//! steps, copies their states (customers, id counters, random generators, pending follow-ups)
//! and sends the copy down the pipeline behind every event produced before it; the sink thread,
//! on receiving it, makes what it has written durable (files flushed and synced, Kafka
//! deliveries acknowledged), adds the ledger's hours and the list of files being written, and
//! writes the state file. Only then are files completed since the previous save renamed into
//! place. After a crash the run resumes from the last save: every shopper continues from its
//! saved state, so it generates again exactly the events it generated after the save, with the
//! same ids and contents; the file sink cuts the files of the save back to their saved length
//! and removes files started after it, so each event is in the files once. (Kafka has no
//! such cut: events published after the last save are published again, identical, and
//! consumers that deduplicate on `event_id` see each once.)
//!
//! The file: `<dir>/state.bin`, written through a temporary file, synced and renamed. It starts
//! with a magic number, a format version, the length and a CRC-32 of the payload, so a
//! truncated, corrupt or foreign file is refused rather than misread. The payload also holds
//! the settings that define the run ([`Identity`]): resuming with different ones is refused,
//! naming the setting. A lock on `<dir>/lock` keeps a second simulator out of the directory.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::model::Timestamp;
use crate::shoppers::Shopper;

/// The format of the state file; another version is refused.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"RETAILST";
const HEADER_LEN: usize = 8 + 4 + 8 + 4;
/// The state file's name within the state directory.
pub const STATE_FILE: &str = "state.bin";
const LOCK_FILE: &str = "lock";

/// Why a state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state.dir (--state-dir) `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state.dir (--state-dir) `{0}` is in use by another simulator (its lock is held); one \
         directory per running simulator"
    )]
    Locked(PathBuf),
    #[error(
        "the state file `{path}` is corrupt ({reason}); it was left as it is: move it away to \
         start a new run there, or restore a good copy"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "the state file `{path}` has format version {found}, this simulator reads version \
         {FORMAT_VERSION}; resume with the version that wrote it, or use another --state-dir"
    )]
    Version { path: PathBuf, found: u32 },
    #[error(
        "the state in `{path}` belongs to another run: {setting} was {saved} and is now \
         {current}; resume with the same settings, or use another --state-dir"
    )]
    Incompatible {
        path: PathBuf,
        setting: &'static str,
        saved: String,
        current: String,
    },
}

/// The settings that make a run what it is: a state is resumed only under the same ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub seed: u64,
    /// The run's first instant (microseconds).
    pub start: i64,
    pub shoppers: u32,
    pub shard: (u32, u32),
    pub rate_per_second: f64,
    pub products: u64,
    pub popularity_exponent: f64,
    pub reprice_probability: f64,
    pub activity_shape: Option<f64>,
    pub customer_lifetime_secs: Option<u64>,
    pub currency: String,
    /// Other currencies: code, rate, share.
    pub currencies: Vec<(String, f64, f64)>,
}

impl Identity {
    /// The identity of a run of `settings` from `seed` and `start`.
    pub fn of(settings: &Settings, seed: u64, start: Timestamp) -> Self {
        Self {
            seed,
            start: start.as_micros(),
            shoppers: settings.shoppers,
            shard: settings.shard,
            rate_per_second: settings.rate.per_second(),
            products: settings.products as u64,
            popularity_exponent: settings.popularity_exponent,
            reprice_probability: settings.reprice_probability,
            activity_shape: settings.traffic.activity_shape,
            customer_lifetime_secs: settings.traffic.customer_lifetime.map(|d| d.as_secs()),
            currency: settings.shop.currency.clone(),
            currencies: settings
                .shop
                .currencies
                .iter()
                .map(|c| (c.code.clone(), c.rate, c.share))
                .collect(),
        }
    }

    /// The first setting that differs from `other`, as (setting, this, other).
    pub fn difference(&self, other: &Self) -> Option<(&'static str, String, String)> {
        let start = |micros: i64| Timestamp::from_micros(micros).to_string();
        let fields: [(&'static str, String, String); 12] = [
            (
                "simulation.seed",
                self.seed.to_string(),
                other.seed.to_string(),
            ),
            ("simulation.start", start(self.start), start(other.start)),
            (
                "simulation.shoppers",
                self.shoppers.to_string(),
                other.shoppers.to_string(),
            ),
            (
                "simulation.shard",
                format!("{}/{}", self.shard.0, self.shard.1),
                format!("{}/{}", other.shard.0, other.shard.1),
            ),
            (
                "simulation.rate",
                format!("{}/s", self.rate_per_second),
                format!("{}/s", other.rate_per_second),
            ),
            (
                "catalogue.products",
                self.products.to_string(),
                other.products.to_string(),
            ),
            (
                "catalogue.popularity_exponent",
                self.popularity_exponent.to_string(),
                other.popularity_exponent.to_string(),
            ),
            (
                "catalogue.reprice_probability",
                self.reprice_probability.to_string(),
                other.reprice_probability.to_string(),
            ),
            (
                "traffic.activity_shape",
                format!("{:?}", self.activity_shape),
                format!("{:?}", other.activity_shape),
            ),
            (
                "traffic.customer_lifetime",
                format!("{:?}", self.customer_lifetime_secs),
                format!("{:?}", other.customer_lifetime_secs),
            ),
            (
                "shop.currency",
                self.currency.clone(),
                other.currency.clone(),
            ),
            (
                "shop.currencies",
                format!("{:?}", self.currencies),
                format!("{:?}", other.currencies),
            ),
        ];
        fields.into_iter().find(|(_, a, b)| a != b)
    }
}

/// A file the file sink was writing at a save, or had completed since the previous one
/// without renaming it yet: what recovery needs to restore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The temporary name, relative to the output directory.
    pub temp: PathBuf,
    /// The final name, relative to the output directory.
    pub path: PathBuf,
    /// Bytes written and synced at the save: a header and whole blocks.
    pub length: u64,
    /// Events in those bytes.
    pub events: u64,
}

/// One hour of the ledger, with its keys as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerHourState {
    pub start: i64,
    pub events: Vec<(String, u64)>,
    pub orders_placed: u64,
    pub order_value: Vec<(String, i64)>,
    pub captured: Vec<(String, i64)>,
    pub refunded: Vec<(String, i64)>,
    pub payments: Vec<(String, u64)>,
    pub faults: (u64, u64, u64),
}

/// What the sink side contributes to a save.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkState {
    pub files: Vec<FileRecord>,
    pub ledger: Vec<LedgerHourState>,
}

/// A saved run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub identity: Identity,
    /// Where the run resumes: no shopper has anything to do before it (microseconds).
    pub position: i64,
    /// Price reviews up to this instant are published (microseconds).
    pub repriced_through: i64,
    /// The run reached its planned end.
    pub finished: bool,
    /// Saves so far, this one included.
    pub saves: u64,
    /// Every shopper of this replica, in order.
    pub shoppers: Vec<Shopper>,
    pub sink: SinkState,
}

impl Snapshot {
    /// The resume instant.
    pub fn position(&self) -> Timestamp {
        Timestamp::from_micros(self.position)
    }
}

/// The state directory of a run, locked for the life of the process.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    /// Held open: the lock lasts as long as the file.
    _lock: File,
}

impl StateStore {
    /// Opens (creating it) and locks `dir`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let io = |source| StateError::Io {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StateError::Locked(dir.to_owned())),
            Err(fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        Ok(Self {
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    /// The state file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The saved state, if there is one. A file that is not a valid state is an error, never
    /// ignored.
    pub fn load(&self) -> Result<Option<Snapshot>, StateError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        decode(&bytes).map(Some).map_err(|e| match e {
            Decode::Version(found) => StateError::Version {
                path: path.clone(),
                found,
            },
            Decode::Corrupt(reason) => StateError::Corrupt {
                path: path.clone(),
                reason,
            },
        })
    }

    /// Writes `snapshot` durably: a temporary file, synced, renamed over the state file, and
    /// the directory synced.
    pub fn save(&self, snapshot: &Snapshot) -> Result<(), StateError> {
        let path = self.path();
        let temp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io { path, source }
        };
        let bytes = encode(snapshot);
        let mut file = File::create(&temp).map_err(io(&temp))?;
        file.write_all(&bytes).map_err(io(&temp))?;
        file.sync_all().map_err(io(&temp))?;
        drop(file);
        fs::rename(&temp, &path).map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }
}

/// The bytes of a state file.
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let payload = postcard::to_stdvec(snapshot).expect("a snapshot is plain data");
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    bytes
}

/// Why bytes are not a state.
#[derive(Debug, PartialEq)]
pub enum Decode {
    Version(u32),
    Corrupt(String),
}

/// The state in `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, Decode> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(Decode::Corrupt("not a simulator state file".into()));
    }
    let word = |range: std::ops::Range<usize>| -> [u8; 8] {
        let mut out = [0; 8];
        out[..range.len()].copy_from_slice(&bytes[range]);
        out
    };
    let version = u64::from_le_bytes(word(8..12)) as u32;
    if version != FORMAT_VERSION {
        return Err(Decode::Version(version));
    }
    let length = u64::from_le_bytes(word(12..20));
    let crc = u64::from_le_bytes(word(20..24)) as u32;
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != length {
        return Err(Decode::Corrupt(format!(
            "{} bytes of payload where the header announces {length}: truncated or extended",
            payload.len()
        )));
    }
    if crc32fast::hash(payload) != crc {
        return Err(Decode::Corrupt("checksum mismatch".into()));
    }
    postcard::from_bytes(payload).map_err(|e| Decode::Corrupt(format!("undecodable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            identity: Identity {
                seed: 7,
                start: 1_750_000_000_000_000,
                shoppers: 3,
                shard: (0, 1),
                rate_per_second: 1.5,
                products: 10,
                popularity_exponent: 1.1,
                reprice_probability: 0.1,
                activity_shape: Some(0.6),
                customer_lifetime_secs: None,
                currency: "USD".into(),
                currencies: vec![("EUR".into(), 0.92, 0.3)],
            },
            position: 1_750_000_100_000_000,
            repriced_through: 1_750_000_000_000_000,
            finished: false,
            saves: 2,
            shoppers: Vec::new(),
            sink: SinkState {
                files: vec![FileRecord {
                    temp: "a/.b.inprogress".into(),
                    path: "a/b".into(),
                    length: 123,
                    events: 4,
                }],
                ledger: Vec::new(),
            },
        }
    }

    #[test]
    fn a_state_round_trips_and_any_damage_is_detected() {
        let bytes = encode(&snapshot());
        assert_eq!(decode(&bytes).unwrap(), snapshot());
        for cut in [0, 5, HEADER_LEN, bytes.len() - 1] {
            assert!(
                matches!(decode(&bytes[..cut]), Err(Decode::Corrupt(_))),
                "cut at {cut}"
            );
        }
        for index in [0, 30, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x40;
            assert!(
                matches!(decode(&damaged), Err(Decode::Corrupt(_))),
                "byte {index}"
            );
        }
        let mut future = bytes.clone();
        future[8] = 9;
        assert_eq!(decode(&future), Err(Decode::Version(9)));
    }

    #[test]
    fn identities_name_the_setting_that_differs() {
        let a = snapshot().identity;
        let mut b = a.clone();
        assert_eq!(a.difference(&b), None);
        b.shoppers = 4;
        let (setting, saved, current) = a.difference(&b).unwrap();
        assert_eq!(
            (setting, saved.as_str(), current.as_str()),
            ("simulation.shoppers", "3", "4")
        );
    }

    #[test]
    fn a_directory_is_locked_by_one_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        assert!(matches!(
            StateStore::open(dir.path()),
            Err(StateError::Locked(_))
        ));
        assert!(store.load().unwrap().is_none());
        store.save(&snapshot()).unwrap();
        assert_eq!(store.load().unwrap(), Some(snapshot()));
        drop(store);
        let again = StateStore::open(dir.path()).unwrap();
        fs::write(again.path(), b"RETAILST garbage").unwrap();
        assert!(matches!(again.load(), Err(StateError::Corrupt { .. })));
    }
}

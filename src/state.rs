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
//! This module is the store: the file `<dir>/state.bin`, replaced atomically
//! ([`crate::durable`]). It starts with a magic number, a format version, the length and a
//! CRC-32 of the payload, so a truncated, corrupt or foreign file is refused rather than
//! misread. What the payload holds is the simulation's (its `Snapshot`, which each component
//! contributes its own saved state to); it includes the settings that define the run
//! ([`Identity`]), and resuming with different ones is refused, naming the setting. A lock on
//! `<dir>/lock` keeps a second simulator out of the directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::durable::{self, DirLock, LockError};
use crate::settings::{duration, optional, path};

/// The format of the state file; another version is refused.
pub const FORMAT_VERSION: u32 = 3;
const MAGIC: &[u8; 8] = b"RETAILST";
const HEADER_LEN: usize = 8 + 4 + 8 + 4;
/// The state file's name within the state directory.
pub const STATE_FILE: &str = "state.bin";
const LOCK_FILE: &str = "lock";

crate::section! {
    /// Saving the run, to resume it after a restart or a crash.
    pub struct StateSettings in "state" {
        /// Save the run's state here periodically and at shutdown, and resume from it at
        /// start.
        pub dir: Option<PathBuf> = optional(path()), flag = "--state-dir";
        /// Real time between two saves.
        pub interval: Duration = duration(Duration::from_secs(1));
    }
}

/// Why a state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state.dir (--state-dir) `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state.dir (--state-dir): {0}")]
    Locked(LockError),
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
        setting: String,
        saved: String,
        current: String,
    },
    #[error(
        "{role} `{dir}` holds the output of another run: its {setting} is {recorded}, this \
         run's is {current}. Two runs in one directory would mix their events and overwrite \
         each other's ledger; write this run elsewhere, remove the directory, or resume that \
         run with its own settings (or its --state-dir)"
    )]
    OtherRun {
        role: &'static str,
        dir: PathBuf,
        setting: String,
        recorded: String,
        current: String,
    },
    #[error("{role} `{path}`: {reason}")]
    RunRecord {
        role: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// The settings that make a run what it is, each as its key and printed value: a state is
/// resumed only under the same ones. The configuration says which settings they are.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Identity {
    pub settings: Vec<(String, String)>,
}

impl Identity {
    /// The first setting that differs from `other`, as (setting, this, other).
    pub fn difference(&self, other: &Self) -> Option<(String, String, String)> {
        let value = |identity: &Self, key: &str| {
            identity
                .settings
                .iter()
                .find(|(k, _)| k == key)
                .map_or_else(|| "unset".to_owned(), |(_, v)| v.clone())
        };
        self.settings
            .iter()
            .chain(&other.settings)
            .map(|(key, _)| key)
            .find(|key| value(self, key) != value(other, key))
            .map(|key| (key.clone(), value(self, key), value(other, key)))
    }

    /// The identity shared by the replicas of a run: the replica's index (`I` of `--shard
    /// I/N`) left out, their number kept.
    pub fn of_replicas(&self) -> Self {
        let settings = self
            .settings
            .iter()
            .map(
                |(key, value)| match (key.as_str(), value.rsplit_once('/')) {
                    (SHARD_KEY, Some((_, count))) => (key.clone(), format!("*/{count}")),
                    _ => (key.clone(), value.clone()),
                },
            )
            .collect();
        Self { settings }
    }

    /// The value of `key`, if it is part of the identity.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The identity key of the replica setting, `I/N`.
const SHARD_KEY: &str = "simulation.shard";
/// The record of the run whose output a directory holds.
pub const RUN_RECORD: &str = "_run.json";

/// Claims `dir` for the run of `identity` (and its other replicas), for output of the kind
/// `role` names (the setting, like `file.output_dir (--output-dir)`): a directory that holds
/// another run's output is refused, naming the first setting that differs; one that holds
/// none records this run in `<dir>/_run.json`. Readers of the data skip the file, like every
/// name that starts with `_`.
pub fn claim(dir: &Path, role: &'static str, identity: &Identity) -> Result<(), StateError> {
    let path = dir.join(RUN_RECORD);
    let ours = identity.of_replicas();
    let record_error = |reason: String| StateError::RunRecord {
        role,
        path: path.clone(),
        reason,
    };
    match fs::read(&path) {
        Ok(bytes) => {
            let recorded: Identity = serde_json::from_slice(&bytes).map_err(|e| {
                record_error(format!(
                    "not a record of the run that wrote the directory ({e}); restore it or \
                     remove the directory"
                ))
            })?;
            match recorded.difference(&ours) {
                None => Ok(()),
                Some((setting, recorded, current)) => Err(StateError::OtherRun {
                    role,
                    dir: dir.to_owned(),
                    setting,
                    recorded,
                    current,
                }),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = serde_json::to_vec_pretty(&ours).unwrap_or_default();
            match durable::write_atomically(&path, &bytes) {
                Ok(()) => Ok(()),
                // Another replica of the run, claiming at the same instant, won the rename.
                Err(_) if fs::read(&path).is_ok_and(|theirs| theirs == bytes) => Ok(()),
                Err(e) => Err(record_error(format!("cannot record the run: {e}"))),
            }
        }
        Err(e) => Err(record_error(format!("cannot read: {e}"))),
    }
}

/// The state directory of a run, locked for the life of the process.
#[derive(Debug)]
pub struct StateStore {
    lock: DirLock,
}

impl StateStore {
    /// Opens (creating it) and locks `dir`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let lock = DirLock::acquire(dir, LOCK_FILE).map_err(|e| match e {
            LockError::Io { source, .. } => StateError::Io {
                path: dir.to_owned(),
                source,
            },
            held => StateError::Locked(held),
        })?;
        Ok(Self { lock })
    }

    /// The state file's path.
    pub fn path(&self) -> PathBuf {
        self.lock.dir().join(STATE_FILE)
    }

    /// The saved state, if there is one. A file that is not a valid state is an error, never
    /// ignored.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, StateError> {
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

    /// Writes `state` durably, replacing the previous one.
    pub fn save<T: Serialize>(&self, state: &T) -> Result<(), StateError> {
        let path = self.path();
        durable::write_atomically(&path, &encode(state))
            .map_err(|source| StateError::Io { path, source })
    }
}

/// The bytes of a state file.
pub fn encode<T: Serialize>(state: &T) -> Vec<u8> {
    // Plain data (numbers, text, sequences and maps) always serialises.
    let payload = postcard::to_stdvec(state).unwrap_or_default();
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
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Decode> {
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

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Saved {
        identity: Identity,
        position: i64,
        names: Vec<String>,
    }

    fn identity(shoppers: &str) -> Identity {
        Identity {
            settings: vec![
                ("simulation.seed".into(), "7".into()),
                ("simulation.shoppers".into(), shoppers.into()),
            ],
        }
    }

    fn saved() -> Saved {
        Saved {
            identity: identity("3"),
            position: 1_750_000_100_000_000,
            names: vec!["a/.b.inprogress".into()],
        }
    }

    #[test]
    fn a_state_round_trips_and_any_damage_is_detected() {
        let bytes = encode(&saved());
        assert_eq!(decode::<Saved>(&bytes).unwrap(), saved());
        for cut in [0, 5, HEADER_LEN, bytes.len() - 1] {
            assert!(
                matches!(decode::<Saved>(&bytes[..cut]), Err(Decode::Corrupt(_))),
                "cut at {cut}"
            );
        }
        for index in [0, 30, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x40;
            assert!(
                matches!(decode::<Saved>(&damaged), Err(Decode::Corrupt(_))),
                "byte {index}"
            );
        }
        let mut future = bytes.clone();
        future[8] = 9;
        assert_eq!(decode::<Saved>(&future), Err(Decode::Version(9)));
    }

    #[test]
    fn identities_name_the_setting_that_differs() {
        let a = identity("3");
        assert_eq!(a.difference(&identity("3")), None);
        let (setting, saved, current) = a.difference(&identity("4")).unwrap();
        assert_eq!(
            (setting.as_str(), saved.as_str(), current.as_str()),
            ("simulation.shoppers", "3", "4")
        );
        let fewer = Identity {
            settings: vec![("simulation.seed".into(), "7".into())],
        };
        assert_eq!(
            a.difference(&fewer),
            Some(("simulation.shoppers".into(), "3".into(), "unset".into()))
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
        assert!(store.load::<Saved>().unwrap().is_none());
        store.save(&saved()).unwrap();
        assert_eq!(store.load::<Saved>().unwrap(), Some(saved()));
        drop(store);
        let again = StateStore::open(dir.path()).unwrap();
        fs::write(again.path(), b"RETAILST garbage").unwrap();
        assert!(matches!(
            again.load::<Saved>(),
            Err(StateError::Corrupt { .. })
        ));
    }

    fn replica(seed: &str, shard: &str) -> Identity {
        Identity {
            settings: vec![
                ("simulation.seed".into(), seed.into()),
                (SHARD_KEY.into(), shard.into()),
            ],
        }
    }

    #[test]
    fn a_directory_is_claimed_by_one_run_and_shared_by_its_replicas() {
        let dir = tempfile::tempdir().unwrap();
        let role = "file.output_dir (--output-dir)";
        claim(dir.path(), role, &replica("7", "0/2")).unwrap();
        // The same run again, and its other replica, are welcome.
        claim(dir.path(), role, &replica("7", "0/2")).unwrap();
        claim(dir.path(), role, &replica("7", "1/2")).unwrap();
        let recorded: Identity =
            serde_json::from_slice(&std::fs::read(dir.path().join(RUN_RECORD)).unwrap()).unwrap();
        assert_eq!(recorded.get(SHARD_KEY), Some("*/2"));
        // Another seed, or another number of replicas, is another run.
        let other = claim(dir.path(), role, &replica("8", "0/2")).unwrap_err();
        let message = other.to_string();
        assert!(
            message.contains("holds the output of another run")
                && message.contains("simulation.seed is 7, this run's is 8"),
            "{message}"
        );
        assert!(matches!(
            claim(dir.path(), role, &replica("7", "0/3")),
            Err(StateError::OtherRun { setting, .. }) if setting == SHARD_KEY
        ));
        // A record that is not one is never taken for a claim.
        std::fs::write(dir.path().join(RUN_RECORD), b"{not json").unwrap();
        assert!(matches!(
            claim(dir.path(), role, &replica("7", "0/2")),
            Err(StateError::RunRecord { .. })
        ));
    }
}

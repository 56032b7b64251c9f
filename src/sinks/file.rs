//! Avro object container files, one per topic per event-time hour (UTC):
//! `<output-dir>/<topic>/date=YYYY-MM-DD/hour=HH/<topic>-YYYYMMDDTHH-NNNNN.avro`.
//!
//! A file is written under a hidden temporary name (`.<name>.inprogress`, which Spark, Hive and
//! most readers skip) and renamed into place only once complete and synced, so a reader never
//! sees a partial file. An hour's file is completed once simulated time is [`CLOSE_GRACE`] past
//! the end of the hour, and every file is completed at shutdown. An event that arrives for an
//! hour whose file is already complete starts another part (`NNNNN` + 1): nothing is dropped
//! and no complete file is rewritten.
//!
//! When the run's state is saved (`--state-dir`), a completed file keeps its temporary name
//! until the next save covers it ([`Sink::commit`]), and each save records the synced length
//! of every file being written. [`recover`] puts the output directory back in line with a
//! saved state at start: files of the save are cut back to their saved length (a header and
//! whole blocks) and renamed into place; files started after it are removed, since the resumed
//! run writes their events again. Without a saved state, unfinished files left by a process
//! that died keep their complete blocks, under their final names.
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Sink, SinkCheckpoint, SinkError};
use crate::cdc::{ChangeStream, Stream};
use crate::durable::{self, DirLock};
use crate::encoding::container::{self, Blocks};
use crate::encoding::{Encoder, schemas, varint};
use crate::metrics::DeliveryMetrics;
use crate::model::{Event, EventType, MICROS_PER_HOUR, Timestamp, Topic, TopicCounts};
use crate::settings::{one_of, path};

/// How long after an hour ends its files are completed, in simulated time.
pub const CLOSE_GRACE: Duration = Duration::from_secs(60);
/// Suffix of files being written.
const IN_PROGRESS: &str = ".inprogress";
/// The output directory's lock (hidden, like unfinished files).
const LOCK_FILE: &str = ".simulator.lock";

/// Compression of the Avro blocks.
pub use container::Codec as FileCodec;

crate::section! {
    /// The Avro files.
    pub struct FileSettings in "file" {
        /// Root directory of the file sink: <output_dir>/<topic>/date=YYYY-MM-DD/hour=HH/.
        pub output_dir: PathBuf = path(), flag = "--output-dir";
        /// Avro block compression: null, deflate or snappy.
        pub codec: FileCodec = one_of("CODEC", "a codec", FileCodec::names());
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

struct OpenFile {
    file: File,
    /// The block in progress.
    blocks: Blocks,
    /// Bytes in the file: its header and whole blocks.
    length: u64,
    temp: PathBuf,
    path: PathBuf,
    /// Records written.
    records: u64,
    /// Events they stand for (the change stream's other records stand for none), by type.
    by_type: [u64; EventType::COUNT],
}

impl OpenFile {
    /// Writes the block in progress, if any, to the file.
    fn write_block(&mut self) -> Result<(), SinkError> {
        let written = self
            .blocks
            .write_block(&mut self.file)
            .map_err(io_error(&self.temp))?;
        self.length += written as u64;
        Ok(())
    }
}

/// A complete file waiting for the next save to be renamed into place.
struct Pending {
    /// The topic of the events its records stand for.
    topic: Option<Topic>,
    temp: PathBuf,
    path: PathBuf,
    length: u64,
    records: u64,
    by_type: [u64; EventType::COUNT],
}

/// What one directory of the output holds: a topic's events, or a table's changes.
struct StreamFiles {
    /// The directory and the files' prefix.
    name: String,
    /// The schema in the files' headers.
    schema: String,
    /// The topic of the events its records stand for.
    topic: Option<Topic>,
}

/// The `file` sink.
pub struct FileSink {
    root: PathBuf,
    codec: FileCodec,
    /// The directories, by stream: the topics, or the change stream's tables.
    streams: Vec<StreamFiles>,
    encoder: Encoder,
    /// The change stream, when the envelope is Debezium's.
    changes: Option<ChangeStream>,
    /// Files being written, by (stream, start of hour in microseconds).
    open: HashMap<(usize, i64), OpenFile>,
    /// The next part number of each (stream, hour) this sink has written.
    next_part: HashMap<(usize, i64), u32>,
    /// The latest event time seen.
    latest: Timestamp,
    delivered: TopicCounts,
    metrics: DeliveryMetrics,
    /// Whether completed files wait for a save ([`FileSink::with_saves`]).
    saves: bool,
    pending: Vec<Pending>,
    /// Events were written since the last save.
    since_save: bool,
    /// Held: one simulator per output directory, so that recovery at start never takes
    /// another one's unfinished files for abandoned.
    _lock: DirLock,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("root", &self.root)
            .field("codec", &self.codec)
            .field("open_files", &self.open.len())
            .finish()
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        path: path.to_owned(),
        source,
    }
}

impl FileSink {
    /// A sink writing under `root`, which is created if missing.
    pub fn new(root: impl Into<PathBuf>, codec: FileCodec) -> Result<Self, SinkError> {
        let root = root.into();
        let lock = DirLock::acquire(&root, LOCK_FILE)?;
        let schemas = schemas()?;
        let streams = Topic::ALL
            .iter()
            .map(|topic| StreamFiles {
                name: topic.as_str().to_owned(),
                schema: schemas.header_json(*topic),
                topic: Some(*topic),
            })
            .collect();
        Ok(Self {
            root,
            codec,
            streams,
            encoder: Encoder::new()?,
            changes: None,
            open: HashMap::new(),
            next_part: HashMap::new(),
            latest: Timestamp::default(),
            delivered: TopicCounts::default(),
            metrics: DeliveryMetrics::unregistered(),
            saves: false,
            pending: Vec::new(),
            since_save: false,
            _lock: lock,
        })
    }

    /// Writes the change stream of the events instead (`--envelope debezium`): a directory per
    /// table (`<prefix>.<schema>.<table>`) and one for the transaction metadata, the envelopes
    /// in Avro (a tombstone, a null value, has no record in a file).
    pub fn with_changes(mut self, changes: ChangeStream) -> Self {
        let schemas = crate::cdc::schemas();
        self.streams = Stream::all()
            .zip(changes.settings().topics())
            .map(|(stream, name)| StreamFiles {
                name,
                schema: serde_json::to_string(&schemas.streams[stream.index()].value)
                    .expect("a parsed schema serialises"),
                topic: stream.topic(),
            })
            .collect();
        self.changes = Some(changes);
        self
    }

    /// Completed files wait for the next save of the run's state to be renamed into place.
    pub fn with_saves(mut self) -> Self {
        self.saves = true;
        self
    }

    /// A path relative to the root, as the state records it.
    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root).unwrap_or(path).to_owned()
    }

    /// Renames a complete, synced file into place and counts it delivered.
    fn publish(&mut self, file: Pending) -> Result<(), SinkError> {
        durable::rename_durably(&file.temp, &file.path).map_err(io_error(&file.path))?;
        if let Some(topic) = file.topic {
            self.delivered[topic.index()] += file.by_type.iter().sum::<u64>();
        }
        for (event_type, count) in EventType::ALL.into_iter().zip(file.by_type) {
            self.metrics.delivered(event_type, count);
        }
        Ok(())
    }

    /// Reports deliveries (events in complete files) to `metrics`.
    pub fn with_metrics(mut self, metrics: DeliveryMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The directory of one topic's (or table's) hour.
    pub fn hour_dir(root: &Path, name: &str, hour: Timestamp) -> PathBuf {
        let at = hour.to_datetime();
        root.join(name)
            .join(at.format("date=%Y-%m-%d").to_string())
            .join(at.format("hour=%H").to_string())
    }

    /// The first part number not used in `dir` by a complete or unfinished file.
    fn first_free_part(dir: &Path, prefix: &str) -> Result<u32, SinkError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error(dir)(e)),
        };
        let mut next = 0;
        for entry in entries {
            let name = entry.map_err(io_error(dir))?.file_name();
            let name = name.to_string_lossy();
            let name = name.trim_start_matches('.').trim_end_matches(IN_PROGRESS);
            if let Some(part) = name
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(".avro"))
                .and_then(|n| n.parse::<u32>().ok())
            {
                next = next.max(part + 1);
            }
        }
        Ok(next)
    }

    fn open_file(&mut self, stream: usize, hour: i64) -> Result<OpenFile, SinkError> {
        let start = Timestamp::from_micros(hour);
        let name = &self.streams[stream].name;
        let dir = Self::hour_dir(&self.root, name, start);
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let prefix = format!("{name}-{}-", start.to_datetime().format("%Y%m%dT%H"));
        let part = match self.next_part.get(&(stream, hour)) {
            Some(&part) => part,
            None => Self::first_free_part(&dir, &prefix)?,
        };
        self.next_part.insert((stream, hour), part + 1);
        let name = format!("{prefix}{part:05}.avro");
        let path = dir.join(&name);
        let temp = dir.join(format!(".{name}{IN_PROGRESS}"));
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(io_error(&temp))?;
        // The marker follows from the file's name, so a seed fixes the file's bytes.
        let sync = container::sync_marker(&self.relative(&path).to_string_lossy());
        let header = container::header(&self.streams[stream].schema, self.codec, sync);
        file.write_all(&header).map_err(io_error(&temp))?;
        Ok(OpenFile {
            file,
            blocks: Blocks::new(self.codec, sync),
            length: header.len() as u64,
            temp,
            path,
            records: 0,
            by_type: [0; EventType::COUNT],
        })
    }

    /// Completes a file: flushes, syncs and renames it into place.
    fn finish(&mut self, stream: usize, mut file: OpenFile) -> Result<(), SinkError> {
        file.write_block()?;
        file.file.sync_all().map_err(io_error(&file.temp))?;
        let done = Pending {
            topic: self.streams[stream].topic,
            temp: file.temp,
            path: file.path,
            length: file.length,
            records: file.records,
            by_type: file.by_type,
        };
        if self.saves {
            self.pending.push(done);
            Ok(())
        } else {
            self.publish(done)
        }
    }

    /// Completes every open file of an hour that ended at least [`CLOSE_GRACE`] before `now`.
    fn close_ended_hours(&mut self, now: Timestamp) -> Result<(), SinkError> {
        let grace = CLOSE_GRACE.as_micros() as i64;
        let ended: Vec<(usize, i64)> = self
            .open
            .keys()
            .filter(|(_, hour)| hour + MICROS_PER_HOUR + grace <= now.as_micros())
            .copied()
            .collect();
        for key in ended {
            let file = self.open.remove(&key).expect("listed above");
            self.finish(key.0, file)?;
        }
        Ok(())
    }
}

impl FileSink {
    /// Appends a record of `stream` at `time` to its hour's file, written by `datum`; `event`
    /// is the type of the event it stands for, if it stands for one.
    fn append(
        &mut self,
        stream: usize,
        time: Timestamp,
        event: Option<EventType>,
        datum: impl FnOnce(&mut Vec<u8>, &Encoder),
    ) -> Result<(), SinkError> {
        let hour = time.hour_floor().as_micros();
        let file = match self.open.entry((stream, hour)) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(_) => {
                let file = self.open_file(stream, hour)?;
                self.open.entry((stream, hour)).or_insert(file)
            }
        };
        datum(file.blocks.records(), &self.encoder);
        if file.blocks.added() {
            file.write_block()?;
        }
        file.records += 1;
        if let Some(event) = event {
            file.by_type[event.index()] += 1;
        }
        self.latest = self.latest.max(time);
        self.since_save = true;
        Ok(())
    }
}

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    fn write(&mut self, events: &[Event], _created: Instant) -> Result<(), SinkError> {
        if let Some(changes) = &mut self.changes {
            for record in changes.changes(events) {
                // A tombstone is Kafka's, for compaction: a file has nothing to hold of it.
                let Some(value) = &record.value else { continue };
                let event = record.primary.then(|| events[record.event].event_type());
                self.append(record.stream.index(), record.time, event, |out, _| {
                    out.extend_from_slice(value)
                })?;
            }
            return Ok(());
        }
        for event in events {
            self.append(
                event.topic().index(),
                event.event_time(),
                Some(event.event_type()),
                |out, encoder| encoder.encode_into(event, out),
            )?;
        }
        Ok(())
    }

    fn advance(&mut self, watermark: Timestamp) -> Result<(), SinkError> {
        self.close_ended_hours(watermark.max(self.latest))
    }

    fn checkpoint(&mut self) -> Result<SinkCheckpoint, SinkError> {
        let mut files = Vec::with_capacity(self.open.len() + self.pending.len());
        for file in self.open.values_mut() {
            file.write_block()?;
            file.file.sync_data().map_err(io_error(&file.temp))?;
            files.push(FileRecord {
                temp: file.temp.clone(),
                path: file.path.clone(),
                length: file.length,
                events: file.records,
            });
        }
        files.extend(self.pending.iter().map(|p| FileRecord {
            temp: p.temp.clone(),
            path: p.path.clone(),
            length: p.length,
            events: p.records,
        }));
        for file in &mut files {
            file.temp = self.relative(&file.temp);
            file.path = self.relative(&file.path);
        }
        Ok(SinkCheckpoint {
            files,
            changes: self.changes.as_ref().map(ChangeStream::position),
        })
    }

    fn commit(&mut self) -> Result<(), SinkError> {
        self.since_save = false;
        for file in std::mem::take(&mut self.pending) {
            self.publish(file)?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        let mut first_error = None;
        let mut keys: Vec<(usize, i64)> = self.open.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            let file = self.open.remove(&key).expect("listed above");
            if let Err(e) = self.finish(key.0, file) {
                first_error.get_or_insert(e);
            }
        }
        if self.saves && self.since_save {
            // Events came after the last save (the run failed before its final save): the files
            // keep their temporary names, and a restart cuts them back to that save and
            // generates the rest again.
            for file in &self.pending {
                tracing::warn!(
                    path = %file.temp.display(),
                    "file left unfinished: it holds events the last save does not cover"
                );
            }
        } else if let Err(e) = self.commit() {
            // The final save was taken just before and covers every file.
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    fn delivered(&self) -> TopicCounts {
        self.delivered
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        // Unfinished files keep their temporary names: readers never take them for complete.
        for (_, mut file) in self.open.drain() {
            let _ = file.write_block();
        }
    }
}

/// What [`recover`] did to the output directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Files put into place, with their events (as saved, or counted in whole blocks).
    pub restored: Vec<(PathBuf, u64)>,
    /// Unfinished files removed because the resumed run writes their events again.
    pub removed: Vec<PathBuf>,
}

/// Puts the output under `root` back in line with a saved state's `files` (see the module's
/// documentation), or, with no saved state (`None`), keeps the complete blocks of unfinished
/// files under their final names.
pub fn recover(root: &Path, files: Option<&[FileRecord]>) -> Result<Recovery, SinkError> {
    let mut recovery = Recovery::default();
    let mut known = std::collections::HashSet::new();
    for record in files.unwrap_or_default() {
        let (temp, path) = (root.join(&record.temp), root.join(&record.path));
        known.insert(temp.clone());
        match File::options().write(true).open(&temp) {
            Ok(file) => {
                let length = file.metadata().map_err(io_error(&temp))?.len();
                if length < record.length {
                    return Err(SinkError::Io {
                        path: temp,
                        source: std::io::Error::other(format!(
                            "{length} bytes where the saved state recorded {}: the file was \
                             damaged after the save",
                            record.length
                        )),
                    });
                }
                file.set_len(record.length).map_err(io_error(&temp))?;
                file.sync_all().map_err(io_error(&temp))?;
                durable::rename_durably(&temp, &path).map_err(io_error(&path))?;
                recovery.restored.push((path, record.events));
            }
            // Renamed into place after the save, before the process stopped.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.exists() => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SinkError::Io {
                    path: temp,
                    source: std::io::Error::other(
                        "a file of the saved state is gone, under either name",
                    ),
                });
            }
            Err(e) => return Err(io_error(&temp)(e)),
        }
    }
    for temp in unfinished_files(root)? {
        if known.contains(&temp) {
            continue;
        }
        if files.is_some() {
            fs::remove_file(&temp).map_err(io_error(&temp))?;
            recovery.removed.push(temp);
        } else if let Some(restored) = salvage(&temp)? {
            recovery.restored.push(restored);
        }
    }
    Ok(recovery)
}

/// Every `.inprogress` file under `root`, in path order.
fn unfinished_files(root: &Path) -> Result<Vec<PathBuf>, SinkError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error(&dir))?;
            let path = entry.path();
            if entry.file_type().map_err(io_error(&path))?.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(IN_PROGRESS) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Keeps the header and complete blocks of an unfinished Avro file under its final name;
/// returns the final name and the events kept, or `None` if not even the header was complete
/// (the file is then removed: it held no event).
fn salvage(temp: &Path) -> Result<Option<(PathBuf, u64)>, SinkError> {
    let bytes = fs::read(temp).map_err(io_error(temp))?;
    let (length, events) = complete_prefix(&bytes);
    if length == 0 {
        fs::remove_file(temp).map_err(io_error(temp))?;
        return Ok(None);
    }
    let name = temp
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.trim_start_matches('.').trim_end_matches(IN_PROGRESS);
    let path = temp.with_file_name(name);
    let file = File::options()
        .write(true)
        .open(temp)
        .map_err(io_error(temp))?;
    file.set_len(length as u64).map_err(io_error(temp))?;
    file.sync_all().map_err(io_error(temp))?;
    durable::rename_durably(temp, &path).map_err(io_error(&path))?;
    Ok(Some((path, events)))
}

/// The length of the longest prefix of an Avro object container file made of its header and
/// whole blocks, and the events in those blocks; (0, 0) when the header is incomplete.
fn complete_prefix(bytes: &[u8]) -> (usize, u64) {
    let mut at = 4;
    if bytes.len() < 4 || &bytes[..4] != b"Obj\x01" {
        return (0, 0);
    }
    // The metadata map: blocks of entries, a negative count followed by the block's size.
    loop {
        let Some(count) = varint::read_long(bytes, &mut at) else {
            return (0, 0);
        };
        if count == 0 {
            break;
        }
        if count < 0 && varint::read_long(bytes, &mut at).is_none() {
            return (0, 0);
        }
        for _ in 0..count.unsigned_abs() {
            for _ in 0..2 {
                match varint::read_long(bytes, &mut at) {
                    Some(n) if n >= 0 && at + n as usize <= bytes.len() => at += n as usize,
                    _ => return (0, 0),
                }
            }
        }
    }
    let Some(sync) = bytes.get(at..at + 16) else {
        return (0, 0);
    };
    at += 16;
    let (mut length, mut events) = (at, 0u64);
    while let (Some(count), Some(size)) = (
        varint::read_long(bytes, &mut at),
        varint::read_long(bytes, &mut at),
    ) {
        if count < 0 || size < 0 {
            break;
        }
        let end = at + size as usize;
        if bytes.get(end..end + 16) != Some(sync) {
            break;
        }
        at = end + 16;
        (length, events) = (at, events + count as u64);
    }
    (length, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Money, PaymentEvent};

    fn payment(at: &str, id: i64) -> Event {
        Event::Payment(PaymentEvent {
            row: Default::default(),
            event_id: uuid::Uuid::from_u128(id as u128),
            event_type: crate::model::EventType::PaymentAuthorized,
            event_time: Timestamp::from_datetime(at.parse().unwrap()),
            payment_id: id,
            order_id: id,
            customer_id: 1,
            amount: Money::from_cents(100),
            currency: crate::model::CurrencyCode::USD,
            method: crate::model::PaymentMethod::Paypal,
            status: crate::model::PaymentStatus::Authorized,
            attempt: 1,
            failure_reason: None,
        })
    }

    fn files_under(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if !path.ends_with(LOCK_FILE) {
                    out.push(
                        path.strip_prefix(root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        out.sort();
        out
    }

    fn read_ids(path: &Path) -> Vec<i64> {
        let reader = apache_avro::Reader::new(File::open(path).unwrap()).unwrap();
        reader
            .map(|v| match v.unwrap() {
                apache_avro::types::Value::Record(fields) => match fields[3].1 {
                    apache_avro::types::Value::Long(id) => id,
                    ref other => panic!("payment_id is {other:?}"),
                },
                other => panic!("not a record: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn files_appear_only_when_their_hour_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path(), FileCodec::Deflate).unwrap();
        sink.write(
            &[
                payment("2026-01-01T10:15:00Z", 1),
                payment("2026-01-01T10:59:00Z", 2),
            ],
            tokio::time::Instant::now(),
        )
        .unwrap();
        sink.write(
            &[payment("2026-01-01T11:00:30Z", 3)],
            tokio::time::Instant::now(),
        )
        .unwrap();
        // Still within the grace period of hour 10: only unfinished, hidden files.
        assert!(
            files_under(dir.path())
                .iter()
                .all(|f| f.ends_with(IN_PROGRESS))
        );
        assert_eq!(sink.delivered(), [0; 4]);

        sink.advance(Timestamp::from_datetime(
            "2026-01-01T11:01:00Z".parse().unwrap(),
        ))
        .unwrap();
        let hour10 = "payments/date=2026-01-01/hour=10/payments-20260101T10-00000.avro";
        assert!(files_under(dir.path()).contains(&hour10.to_string()));
        assert_eq!(read_ids(&dir.path().join(hour10)), vec![1, 2]);
        assert_eq!(sink.delivered()[Topic::Payments.index()], 2);

        // A late event for hour 10 starts a second part instead of touching the first.
        sink.write(
            &[payment("2026-01-01T10:30:00Z", 4)],
            tokio::time::Instant::now(),
        )
        .unwrap();
        sink.close().unwrap();
        let files = files_under(dir.path());
        assert_eq!(
            files,
            vec![
                hour10.to_string(),
                "payments/date=2026-01-01/hour=10/payments-20260101T10-00001.avro".to_string(),
                "payments/date=2026-01-01/hour=11/payments-20260101T11-00000.avro".to_string(),
            ]
        );
        assert_eq!(sink.delivered()[Topic::Payments.index()], 4);
    }

    #[test]
    fn a_new_sink_does_not_overwrite_earlier_parts() {
        let dir = tempfile::tempdir().unwrap();
        for id in 1..=2 {
            let mut sink = FileSink::new(dir.path(), FileCodec::Snappy).unwrap();
            sink.write(
                &[payment("2026-01-01T10:15:00Z", id)],
                tokio::time::Instant::now(),
            )
            .unwrap();
            sink.close().unwrap();
        }
        let files = files_under(dir.path());
        assert_eq!(files.len(), 2, "{files:?}");
        assert_eq!(read_ids(&dir.path().join(&files[1])), vec![2]);
    }

    #[test]
    fn an_unfinished_file_keeps_its_complete_blocks_when_nothing_was_saved() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path(), FileCodec::Null).unwrap();
        let ids = |range: std::ops::RangeInclusive<i64>| -> Vec<Event> {
            range
                .map(|id| payment("2026-01-01T10:15:00Z", id))
                .collect()
        };
        sink.write(&ids(1..=3), tokio::time::Instant::now())
            .unwrap();
        sink.checkpoint().unwrap();
        sink.write(&ids(4..=5), tokio::time::Instant::now())
            .unwrap();
        sink.checkpoint().unwrap();
        sink.write(&ids(6..=6), tokio::time::Instant::now())
            .unwrap();
        // The process dies in the middle of writing a block.
        std::mem::forget(sink);
        let temp = dir
            .path()
            .join("payments/date=2026-01-01/hour=10/.payments-20260101T10-00000.avro.inprogress");
        let mut file = File::options().append(true).open(&temp).unwrap();
        file.write_all(&[0x04, 0xC8, 0x01, 1, 2, 3]).unwrap();
        drop(file);

        let recovery = recover(dir.path(), None).unwrap();
        let path = dir
            .path()
            .join("payments/date=2026-01-01/hour=10/payments-20260101T10-00000.avro");
        assert_eq!(recovery.restored, vec![(path.clone(), 5)]);
        assert_eq!(read_ids(&path), vec![1, 2, 3, 4, 5]);
        assert!(
            files_under(dir.path())
                .iter()
                .all(|f| !f.ends_with(IN_PROGRESS))
        );
        // Not even a header: nothing to keep, the file goes.
        fs::write(dir.path().join(".x.avro.inprogress"), b"Obj").unwrap();
        let recovery = recover(dir.path(), None).unwrap();
        assert!(recovery.restored.is_empty());
        assert_eq!(files_under(dir.path()).len(), 1);
    }

    #[test]
    fn with_saves_files_wait_for_a_save_and_recovery_cuts_back_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path(), FileCodec::Deflate)
            .unwrap()
            .with_saves();
        sink.write(
            &[
                payment("2026-01-01T10:15:00Z", 1),
                payment("2026-01-01T10:20:00Z", 2),
            ],
            tokio::time::Instant::now(),
        )
        .unwrap();
        sink.write(
            &[payment("2026-01-01T11:05:00Z", 3)],
            tokio::time::Instant::now(),
        )
        .unwrap();
        sink.advance(Timestamp::from_datetime(
            "2026-01-01T11:06:00Z".parse().unwrap(),
        ))
        .unwrap();
        // Hour 10 is complete but waits for a save.
        assert!(
            files_under(dir.path())
                .iter()
                .all(|f| f.ends_with(IN_PROGRESS))
        );
        assert_eq!(sink.delivered(), [0; 4]);
        let saved = sink.checkpoint().unwrap().files;
        assert_eq!(saved.len(), 2, "{saved:?}");
        sink.commit().unwrap();
        let hour10 = "payments/date=2026-01-01/hour=10/payments-20260101T10-00000.avro";
        assert!(files_under(dir.path()).contains(&hour10.to_string()));
        assert_eq!(sink.delivered()[Topic::Payments.index()], 2);

        // Closed with events the save does not cover, files keep their temporary names.
        let other = tempfile::tempdir().unwrap();
        let mut unsaved = FileSink::new(other.path(), FileCodec::Null)
            .unwrap()
            .with_saves();
        unsaved
            .write(
                &[payment("2026-01-01T10:15:00Z", 9)],
                tokio::time::Instant::now(),
            )
            .unwrap();
        unsaved.close().unwrap();
        assert!(
            files_under(other.path())
                .iter()
                .all(|f| f.ends_with(IN_PROGRESS))
        );
        assert_eq!(unsaved.delivered(), [0; 4]);

        // After the save: more of hour 11, on disk, and a file for hour 12; then a crash.
        sink.write(
            &[
                payment("2026-01-01T11:30:00Z", 4),
                payment("2026-01-01T12:10:00Z", 5),
            ],
            tokio::time::Instant::now(),
        )
        .unwrap();
        sink.checkpoint().unwrap();
        std::mem::forget(sink);

        let recovery = recover(dir.path(), Some(&saved)).unwrap();
        let hour11 = dir
            .path()
            .join("payments/date=2026-01-01/hour=11/payments-20260101T11-00000.avro");
        assert_eq!(recovery.restored, vec![(hour11.clone(), 1)]);
        assert_eq!(recovery.removed.len(), 1, "{recovery:?}");
        assert_eq!(read_ids(&hour11), vec![3], "cut back to the save");
        assert_eq!(read_ids(&dir.path().join(hour10)), vec![1, 2]);
        assert_eq!(files_under(dir.path()).len(), 2);
        // A recorded file gone under both names is an error, not silence.
        assert!(
            recover(
                dir.path(),
                Some(&[FileRecord {
                    temp: "gone/.x.inprogress".into(),
                    path: "gone/x".into(),
                    length: 10,
                    events: 1,
                }])
            )
            .is_err()
        );
    }

    #[test]
    fn one_sink_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(dir.path(), FileCodec::Null).unwrap();
        let err = FileSink::new(dir.path(), FileCodec::Null).unwrap_err();
        assert!(
            err.to_string().contains("in use by another simulator"),
            "{err}"
        );
        drop(sink);
        assert!(FileSink::new(dir.path(), FileCodec::Null).is_ok());
    }

    #[test]
    fn unwritable_root_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        fs::write(&blocker, b"x").unwrap();
        let err = FileSink::new(blocker.join("data"), FileCodec::Null).unwrap_err();
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}

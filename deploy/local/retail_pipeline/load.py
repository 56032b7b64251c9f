"""The simulator's complete hourly Avro files into the warehouse's `raw` tables.

The tables are the loader's (`retail_loader.tables`): the same columns as Synapse `raw`, filled
from a file instead of a Kafka message. For a row loaded from a file:

- `kafka_topic` is the topic (the file's top directory), `kafka_partition` the file's part
  number (`-NNNNN`), `kafka_timestamp` the event time;
- `kafka_offset` numbers the rows of each (topic, part) in the order they were loaded,
  continuing from the last file loaded, so `raw.load_log` holds one contiguous range per file;
- `batch_id` is the pipeline run that loaded it, `loaded_at` when.

A file is loaded once: `pipeline.loaded_files` keys it on its path and the SHA-256 of its
content, in the same transaction as its rows (up to 50 files a transaction). A file whose size
and modification time are those recorded is not read again (complete files are never
rewritten), so a `--watch` pass reads only what is new. A file that does not decode, or the part of one
from the first record that does not, goes whole to `raw.rejected_messages` with the reason,
and costs the other files nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, NamedTuple

import fastavro
import pyarrow as pa

from retail_loader.tables import EVENT_TABLES, LOAD_LOG, REJECTED, Column, Table

from .files import DataFile

LOG_SCHEMA = "pipeline"
COMMIT_EVERY = 50
"""Files per transaction: each file's rows commit with its entry in the load log."""
LOADED_FILES = f"{LOG_SCHEMA}.loaded_files"
LOADED_FILES_DDL = (
    f"CREATE TABLE IF NOT EXISTS {LOADED_FILES} ("
    "path VARCHAR PRIMARY KEY, sha256 VARCHAR NOT NULL, bytes BIGINT NOT NULL, modified_ns BIGINT NOT NULL, "
    "topic VARCHAR NOT NULL, "
    "kafka_partition INTEGER NOT NULL, start_offset BIGINT, end_offset BIGINT, messages BIGINT NOT NULL, "
    "rejected BIGINT NOT NULL, batch_id BIGINT NOT NULL, loaded_at TIMESTAMP NOT NULL)"
)

ARROW_TYPES = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "VARCHAR": pa.string(),
    "DECIMAL(12,2)": pa.decimal128(12, 2),
    "TIMESTAMP": pa.timestamp("us"),
    "BLOB": pa.binary(),
    "BOOLEAN": pa.bool_(),
}


def _source(column: Column) -> tuple[str, str]:
    """Where a column is filled from, for a file: the Spark expressions of `tables.py` read as
    (`event`, field), (`line`, field) for order_items, (`count`, `items`), (`join`, field) for
    an array joined with commas, or (`meta`, name) for the row's provenance."""
    source = column.source
    if source is None:
        return "event", column.name
    if source.startswith("line."):
        return "line", source[len("line."):]
    if source == "size(event.items)":
        return "count", "items"
    joined = re.fullmatch(r"array_join\(event\.([a-z_]+), ','\)", source)
    if joined:
        return "join", joined.group(1)
    if re.fullmatch(r"[a-z_]+", source):
        return "meta", source
    raise ValueError(f"column {column.name}: no file reading of the Spark expression {source!r}")


SOURCES = {t.name: [_source(c) for c in t.columns] for t in (*EVENT_TABLES, REJECTED, LOAD_LOG)}


def _array(values: list, column: Column) -> pa.Array:
    kind = column.duckdb_type
    if kind == "TIMESTAMP":
        # fastavro's instants are in UTC; the warehouse keeps UTC without a zone.
        return pa.array(values, pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))
    if kind == "VARCHAR" and any(isinstance(v, uuid.UUID) for v in values[:1]):
        values = [str(v) for v in values]
    return pa.array(values, ARROW_TYPES[kind])


def project(table: Table, events: list[dict], meta: dict[str, Any], lines: list[dict] | None = None) -> pa.Table:
    """`table`'s rows, column by column: one per event (or per line, `lines` being parallel
    to `events` then). A `meta` value is a list (one per row) or the same for every row."""
    rows = len(events)
    columns = []
    for column, (kind, name) in zip(table.columns, SOURCES[table.name]):
        if kind == "event":
            values = [e[name] for e in events]
        elif kind == "line":
            values = [line[name] for line in lines]
        elif kind == "count":
            values = [len(e[name]) for e in events]
        elif kind == "join":
            values = [",".join(e[name]) for e in events]
        else:
            value = meta[name]
            values = value if isinstance(value, list) else [value] * rows
        columns.append(_array(values, column))
    return pa.table(columns, names=table.column_names)


@dataclass(frozen=True)
class Rejected:
    value: bytes
    reason: str


def reader_schema(entity: str) -> dict:
    text = resources.files("retail_loader").joinpath("schemas", f"{entity}.avsc").read_text()
    return fastavro.parse_schema(json.loads(text))


def _canonical(schema) -> str:
    return fastavro.schema.to_parsing_canonical_form(schema)


def decode(data: bytes, schema: dict) -> list[dict | Rejected]:
    """The records of an Avro container file, read with the entity's schema, in file order.
    What does not decode becomes a `Rejected` in its place: the whole file if its header is
    not one of this schema, else the rest of a block from its first undecodable record (the
    records of a block are not delimited, so nothing after it can be found), or the rest of
    the file from a block whose framing is broken."""
    stream = io.BytesIO(data)
    try:
        blocks = fastavro.block_reader(stream)
        if _canonical(blocks.writer_schema) != _canonical(schema):
            # Written with another version of the schema: resolved against ours (slower).
            stream.seek(0)
            blocks = fastavro.block_reader(stream, reader_schema=schema)
    except Exception as error:  # noqa: BLE001 - any header or schema failure rejects the file
        return [Rejected(data, f"not an Avro container file of this topic's schema: {error}")]
    found: list[dict | Rejected] = []
    while True:
        position = stream.tell()
        try:
            block = next(blocks)
        except StopIteration:
            return found
        except Exception as error:  # noqa: BLE001 - broken framing (a cut file, a bad sync marker)
            partial = _partial_block(data, position, blocks.codec)
            if partial is None:
                return [*found, Rejected(data[position:], f"unreadable from byte {position}: {error}")]
            count, content = partial
            found += _records(content, count, blocks.writer_schema, schema, position,
                              f"the block at byte {position} is cut short or damaged ({error})")
            return found
        start = block.bytes_.tell()
        try:
            found += list(block)
        except Exception:  # noqa: BLE001 - find the first record that does not decode
            block.bytes_.seek(start)
            found += _records(block.bytes_, block.num_records, block.writer_schema, block.reader_schema or schema,
                              block.offset)


def _records(content: io.BytesIO, count: int, writer, reader, offset: int, damage: str = "") -> list:
    """The records of one block, up to the first that does not decode; the rest of the block
    as one `Rejected`."""
    found: list[dict | Rejected] = []
    for index in range(count):
        start = content.tell()
        try:
            found.append(fastavro.schemaless_reader(content, writer, reader, return_record_name=False))
        except Exception as error:  # noqa: BLE001 - a corrupt or missing record
            rest = content.getvalue()[start:]
            why = damage or f"it does not decode ({error})"
            found.append(Rejected(rest or b"\0", f"record {index + 1} of {count} of the block at byte {offset}: "
                                                 f"{why}; the block's remaining {count - index} records are kept "
                                                 "here undecoded"))
            break
    return found


def _long(data: bytes, position: int) -> tuple[int, int]:
    """An Avro long (zig-zag varint) at `position`: its value and the position after it."""
    shift, value = 0, 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), position


def _partial_block(data: bytes, position: int, codec: str) -> tuple[int, io.BytesIO] | None:
    """What is there of an uncompressed block whose framing fails: its record count and the
    bytes of it that exist (None when even its header is gone, or it is compressed)."""
    if codec != "null":
        return None
    try:
        count, position = _long(data, position)
        size, position = _long(data, position)
    except IndexError:
        return None
    if count <= 0 or size <= 0:
        return None
    return count, io.BytesIO(data[position:position + size])


@dataclass
class FileReport:
    file: DataFile
    rows: dict[str, int]
    messages: int
    rejected: list[Rejected]
    replaced: bool


@dataclass
class LoadReport:
    batch_id: int
    files: list[FileReport] = field(default_factory=list)
    skipped: int = 0

    @property
    def rows(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for report in self.files:
            for name, count in report.rows.items():
                total[name] = total.get(name, 0) + count
        return total

    @property
    def quarantined(self) -> list[tuple[DataFile, Rejected]]:
        return [(r.file, rejected) for r in self.files for rejected in r.rejected]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Prior(NamedTuple):
    """What the load log holds of a path."""

    sha256: str
    bytes: int
    modified_ns: int
    topic: str
    partition: int
    start: int | None
    end: int | None


def load(connection, data: Path, files: list[DataFile], now: Callable[[], dt.datetime]) -> LoadReport:
    """Loads every file of `files` not loaded yet (by path and content) into `connection`'s
    `raw` tables, each with its load-log rows, in transactions of up to COMMIT_EVERY files."""
    connection.execute(f"CREATE SCHEMA IF NOT EXISTS {LOG_SCHEMA}")
    connection.execute(LOADED_FILES_DDL)
    loaded = {path: Prior(*rest) for path, *rest in connection.execute(
        f"SELECT path, sha256, bytes, modified_ns, topic, kafka_partition, start_offset, end_offset "
        f"FROM {LOADED_FILES}").fetchall()}
    (last_batch,) = connection.execute(f"SELECT coalesce(max(batch_id), -1) FROM {LOADED_FILES}").fetchone()
    report = LoadReport(batch_id=last_batch + 1)
    next_offset = {(topic, partition): end + 1 for topic, partition, end in connection.execute(
        f"SELECT kafka_topic, kafka_partition, max(end_offset) FROM raw.{LOAD_LOG.name} GROUP BY ALL").fetchall()}
    schemas: dict[str, dict] = {}
    uncommitted = 0
    connection.execute("BEGIN TRANSACTION")
    try:
        for file in files:
            uncommitted += _load_file(connection, data, file, loaded, report, next_offset, schemas, now)
            if uncommitted >= COMMIT_EVERY:
                connection.execute("COMMIT")
                connection.execute("BEGIN TRANSACTION")
                uncommitted = 0
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return report


def _load_file(connection, data: Path, file: DataFile, loaded: dict[str, Prior], report: LoadReport,
               next_offset: dict, schemas: dict, now) -> int:
    """Loads one file within the open transaction; returns 1 if it did, 0 if it was loaded."""
    path = data / file.relative
    prior = loaded.get(file.relative)
    try:
        stat = path.stat()
        if prior is not None and (prior.bytes, prior.modified_ns) == (stat.st_size, stat.st_mtime_ns):
            report.skipped += 1
            return 0
        content = path.read_bytes()
    except FileNotFoundError:
        return 0  # removed since it was listed
    digest = sha256(content)
    if prior is not None and prior.sha256 == digest:
        # The same content, touched: remember the new time, so it is not read again.
        connection.execute(f"UPDATE {LOADED_FILES} SET modified_ns = ? WHERE path = ?",
                           [stat.st_mtime_ns, file.relative])
        report.skipped += 1
        return 0
    schema = schemas.get(file.entity) or schemas.setdefault(file.entity, reader_schema(file.entity))
    items = decode(content, schema)
    loaded_at = now().astimezone(dt.timezone.utc).replace(tzinfo=None)
    key = (file.topic, file.part)
    start = next_offset.get(key, 0)
    file_report = _insert(connection, file, items, content, stat.st_mtime_ns, digest, start, report.batch_id,
                          loaded_at, prior)
    next_offset[key] = start + file_report.messages
    report.files.append(file_report)
    return 1


def _insert(connection, file: DataFile, items: list[dict | Rejected], content: bytes, modified_ns: int,
            digest: str, start: int, batch_id: int, loaded_at: dt.datetime, prior: Prior | None) -> FileReport:
    tables = [t for t in EVENT_TABLES if t.entity == file.entity]
    offsets = range(start, start + len(items))
    events = [item for item in items if not isinstance(item, Rejected)]
    event_offsets = [o for o, item in zip(offsets, items) if not isinstance(item, Rejected)]
    rejected = [(o, item) for o, item in zip(offsets, items) if isinstance(item, Rejected)]
    common = {"topic": file.topic, "partition": file.part, "batch_id": batch_id, "loaded_at": loaded_at}
    messages = len(items)
    try:
        arrow: dict[str, pa.Table] = {}
        for table in tables:
            meta = {**common, "offset": event_offsets, "timestamp": [e["event_time"] for e in events]}
            if table.name == "order_items":
                owners = [(e, o, line) for e, o in zip(events, event_offsets) for line in e["items"]]
                meta.update(offset=[o for _, o, _ in owners], timestamp=[e["event_time"] for e, _, _ in owners])
                arrow[table.name] = project(table, [e for e, _, _ in owners], meta, [line for _, _, line in owners])
            else:
                arrow[table.name] = project(table, events, meta)
        if rejected:
            arrow[REJECTED.name] = project(REJECTED, [{}] * len(rejected), {
                **common, "offset": [o for o, _ in rejected], "timestamp": None, "key": None,
                "value": [r.value for _, r in rejected],
                "reason": [f"{file.relative}: {r.reason}"[:400] for _, r in rejected]})
        if messages:
            arrow[LOAD_LOG.name] = project(LOAD_LOG, [{}], {
                **common, "start_offset": start, "end_offset": start + messages - 1, "messages": messages,
                "rejected": len(rejected)})
    except (pa.ArrowException, TypeError, ValueError, OverflowError, KeyError) as error:
        # A value that decodes but does not fit its column: the file goes to quarantine whole.
        item = Rejected(content, f"a value does not fit the raw tables: {error}")
        return _insert(connection, file, [item], content, modified_ns, digest, start, batch_id, loaded_at, prior)

    # Within the caller's transaction: the rows and the file's entry in the log commit together.
    if prior is not None:
        _forget(connection, file, prior)
    for name, table in arrow.items():
        if table.num_rows == 0:
            continue
        connection.register("file_rows", table)
        # By name: a table created by an earlier release has its newer columns at its end.
        connection.execute(f"INSERT INTO raw.{name} BY NAME SELECT * FROM file_rows")
        connection.unregister("file_rows")
    connection.execute(
        f"INSERT INTO {LOADED_FILES} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [file.relative, digest, len(content), modified_ns, file.topic, file.part, start if messages else None,
         start + messages - 1 if messages else None, messages, len(rejected), batch_id, loaded_at],
    )
    counts = {t.name: arrow[t.name].num_rows for t in tables}
    return FileReport(file, counts, messages, [r for _, r in rejected], replaced=prior is not None)


def _forget(connection, file: DataFile, prior: Prior) -> None:
    """Removes what an earlier content of the same path loaded (its offset range)."""
    topic, partition, start, end = prior.topic, prior.partition, prior.start, prior.end
    if start is not None:
        for table in (*[t for t in EVENT_TABLES if t.entity == file.entity], REJECTED, LOAD_LOG):
            connection.execute(
                f"DELETE FROM raw.{table.name} WHERE kafka_topic = ? AND kafka_partition = ? "
                f"AND {table.offset_column} BETWEEN ? AND ?", [topic, partition, start, end])
    connection.execute(f"DELETE FROM {LOADED_FILES} WHERE path = ?", [file.relative])

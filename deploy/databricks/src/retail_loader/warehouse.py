"""Loading a micro-batch into the warehouse: stage it, then swap it in within one transaction.

Synapse does not enforce keys, so idempotency is ours: every batch's rows are staged as Parquet,
copied into the stage tables (schema `stage`, or one per target: `stage_dev`), and then, in one
transaction, the rows of the `raw` tables that came from the same Kafka offsets are deleted
and the staged rows inserted. A batch that is
retried, or replayed after the checkpoint was lost, replaces its rows instead of adding them.

The statements of that transaction are the same text on Synapse and on DuckDB (the local
stand-in); only how files reach the stage tables differs (`COPY INTO` against DuckDB's
`read_parquet`).
"""

from __future__ import annotations

import re
from typing import Callable, Protocol
from urllib.parse import urlparse

from .tables import TABLES, Table, duckdb_ddl

TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
SCHEMA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")


def check_topic(name: str) -> str:
    """A Kafka topic name, refused unless it is one (it is written into SQL as a literal)."""
    if not TOPIC_NAME.match(name):
        raise ValueError(f"{name!r} is not a Kafka topic name (letters, digits, '.', '_', '-')")
    return name


def offsets_predicate(table: Table, ranges: list[dict], topics: dict[str, str]) -> str | None:
    """The rows of `table` that came from the offset ranges of this batch, or None if the batch
    holds nothing for it."""
    wanted = None if table.entity is None else topics[table.entity]
    terms = [
        f"(kafka_topic = '{check_topic(r['topic'])}' AND kafka_partition = {int(r['partition'])}"
        f" AND {table.offset_column} BETWEEN {int(r['start_offset'])} AND {int(r['end_offset'])})"
        for r in ranges
        if wanted is None or r["topic"] == wanted
    ]
    return "\n   OR ".join(terms) if terms else None


def check_schema(name: str) -> str:
    """A schema name, refused unless it is a plain identifier (it is written into SQL)."""
    if not SCHEMA_NAME.match(name):
        raise ValueError(f"{name!r} is not a schema name (a letter, then letters, digits or '_')")
    return name


def swap_statements(ranges: list[dict], topics: dict[str, str], stage_schema: str = "stage") -> list[str]:
    """The statements that replace, in every raw table, the rows of this batch's offsets by
    the staged ones. Run them in one transaction."""
    statements = []
    for table in TABLES:
        predicate = offsets_predicate(table, ranges, topics)
        if predicate is None:
            continue
        columns = ", ".join(table.column_names)
        statements.append(f"DELETE FROM raw.{table.name}\nWHERE {predicate}")
        statements.append(f"INSERT INTO raw.{table.name} ({columns})\n"
                          f"SELECT {columns} FROM {check_schema(stage_schema)}.{table.name}")
    return statements


def synapse_transaction(statements: list[str]) -> str:
    """The swap as one T-SQL script, for review and for loading a batch by hand. (The loader
    itself runs the statements one at a time: see `SynapseWarehouse`.)"""
    body = ";\n".join(statements)
    return f"SET XACT_ABORT ON;\nBEGIN TRANSACTION;\n{body};\nCOMMIT TRANSACTION;"


def https_url(location: str) -> str:
    """The https form `COPY INTO` takes of an `abfss://container@account.dfs.core.windows.net/path`
    location (a directory or a file)."""
    url = urlparse(location)
    if url.scheme == "https":
        return location
    if url.scheme not in ("abfss", "abfs") or "@" not in url.netloc:
        raise ValueError(f"staging location {location!r} is not abfss://<container>@<account>.dfs.core.windows.net/<path>")
    container, host = url.netloc.split("@", 1)
    return f"https://{host}/{container}{url.path}"


def copy_into(table: Table, files: list[str], stage_schema: str = "stage") -> str:
    """`COPY INTO` a stage table from the Parquet files a batch wrote, named one by one (columns
    by position). Never a `*` path: a reader of one sees the files of failed or speculative
    tasks too, which Databricks' commit protocol leaves beside the committed ones."""
    if not files:
        raise ValueError(f"no file to copy into {stage_schema}.{table.name}")
    sources = ",\n     ".join(f"'{_literal(https_url(f))}'" for f in files)
    return (
        f"COPY INTO {check_schema(stage_schema)}.{table.name}\nFROM {sources}\n"
        "WITH (FILE_TYPE = 'PARQUET', CREDENTIAL = (IDENTITY = 'Managed Identity'), AUTO_CREATE_TABLE = 'OFF')"
    )


def _literal(text: str) -> str:
    if "'" in text:
        raise ValueError(f"{text!r}: a staged file's name holds a quote")
    return text


class Warehouse(Protocol):
    def clear_stage(self) -> None:
        """Empties every stage table."""

    def stage(self, table: Table, files: list[str]) -> None:
        """Loads the Parquet `files` (what the batch wrote, and nothing else) into the table's
        stage twin."""

    def swap(self, statements: list[str]) -> None:
        """Runs `statements` in one transaction: all or nothing, and raises if any fails."""


def jdbc_connector(spark, url: str, user: str, password: str) -> Callable[[], object]:
    """Opens `java.sql.Connection`s to `url` through the JVM's DriverManager (py4j), as the
    job does with the SQL Server driver of the Databricks runtime."""

    def connect():
        jvm = spark.sparkContext._jvm
        properties = jvm.java.util.Properties()
        properties.setProperty("user", user)
        properties.setProperty("password", password)
        return jvm.java.sql.DriverManager.getConnection(url, properties)

    return connect


class SynapseWarehouse:
    """A Synapse dedicated SQL pool over JDBC (the SQL Server driver of the Databricks runtime).

    `connect` returns a `java.sql.Connection`; one is opened per call and closed after.
    Statements run one at a time, each through its own `execute`, with every result drained:
    mssql-jdbc reports only the first result of a multi-statement batch, and an error in a
    later statement can be dropped when the statement closes. The swap runs with autocommit off
    and commits only after its last statement succeeded; any error rolls it back and is raised,
    so the micro-batch fails and Structured Streaming does not commit its offsets.
    """

    def __init__(self, connect: Callable[[], object], stage_schema: str = "stage",
                 session_statements: tuple[str, ...] = ("SET XACT_ABORT ON",)):
        self._connect = connect
        self.stage_schema = check_schema(stage_schema)
        self._session = session_statements
        """Run first in the swap's session: T-SQL's XACT_ABORT rolls the transaction back on
        the server too if an error would otherwise leave it open."""

    def clear_stage(self) -> None:
        self._run([f"TRUNCATE TABLE {self.stage_schema}.{t.name}" for t in TABLES], transaction=False)

    def stage(self, table: Table, files: list[str]) -> None:
        self._run([copy_into(table, files, self.stage_schema)], transaction=False)

    def swap(self, statements: list[str]) -> None:
        self._run([*self._session, *statements], transaction=True)

    def run(self, statements: list[str]) -> None:
        """Statements outside a transaction (maintenance), each checked."""
        self._run(statements, transaction=False)

    def _run(self, statements: list[str], transaction: bool) -> None:
        connection = self._connect()
        try:
            if transaction:
                connection.setAutoCommit(False)
            statement = connection.createStatement()
            try:
                for sql in statements:
                    statement.execute(sql)
                    # Every further result (update counts, messages) is read, so none hides an error.
                    while statement.getMoreResults() or statement.getUpdateCount() != -1:
                        pass
                if transaction:
                    connection.commit()
            except BaseException:
                if transaction:
                    connection.rollback()
                raise
            finally:
                statement.close()
        finally:
            connection.close()


class DuckDBWarehouse:
    """A DuckDB database with the same tables: the local stand-in for Synapse."""

    def __init__(self, path: str, stage_schema: str = "stage"):
        import duckdb

        self.stage_schema = check_schema(stage_schema)
        self.connection = duckdb.connect(path)
        self.connection.execute("SET TimeZone = 'UTC'")
        for statement in duckdb_ddl(self.stage_schema):
            self.connection.execute(statement)

    def clear_stage(self) -> None:
        for table in TABLES:
            self.connection.execute(f"DELETE FROM {self.stage_schema}.{table.name}")

    def stage(self, table: Table, files: list[str]) -> None:
        columns = ", ".join(table.column_names)
        self.connection.execute(
            f"INSERT INTO {self.stage_schema}.{table.name} ({columns}) SELECT {columns} FROM read_parquet(?)",
            [[f.removeprefix("file://") for f in files]],
        )

    def swap(self, statements: list[str]) -> None:
        self.connection.execute("BEGIN TRANSACTION")
        try:
            for statement in statements:
                self.connection.execute(statement)
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def close(self) -> None:
        self.connection.close()


def synapse_batch_script(staged: dict[str, list[str]], ranges: list[dict], topics: dict[str, str],
                         stage_schema: str = "stage") -> str:
    """Every statement `SynapseWarehouse` runs for one batch, in order, as one script (for
    review, and for loading a batch by hand). `staged` maps each table the batch has rows for
    to the Parquet files it wrote."""
    statements = [f"TRUNCATE TABLE {stage_schema}.{t.name};" for t in TABLES]
    statements += [copy_into(t, staged[t.name], stage_schema) + ";" for t in TABLES if t.name in staged]
    statements.append(synapse_transaction(swap_statements(ranges, topics, stage_schema)))
    return "\n".join(statements) + "\n"

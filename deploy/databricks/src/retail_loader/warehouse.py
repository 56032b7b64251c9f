"""Loading a micro-batch into the warehouse: stage it, then swap it in within one transaction.

Synapse does not enforce keys, so idempotency is ours: every batch's rows are staged as Parquet,
copied into the `stage` tables, and then, in one transaction, the rows of the `raw` tables
that came from the same Kafka offsets are deleted and the staged rows inserted. A batch that is
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


def swap_statements(ranges: list[dict], topics: dict[str, str]) -> list[str]:
    """The statements that replace, in every raw table, the rows of this batch's offsets by
    the staged ones. Run them in one transaction."""
    statements = []
    for table in TABLES:
        predicate = offsets_predicate(table, ranges, topics)
        if predicate is None:
            continue
        columns = ", ".join(table.column_names)
        statements.append(f"DELETE FROM raw.{table.name}\nWHERE {predicate}")
        statements.append(f"INSERT INTO raw.{table.name} ({columns})\nSELECT {columns} FROM stage.{table.name}")
    return statements


def synapse_transaction(statements: list[str]) -> str:
    """One T-SQL batch: any error rolls the whole swap back."""
    body = ";\n".join(statements)
    return f"SET XACT_ABORT ON;\nBEGIN TRANSACTION;\n{body};\nCOMMIT TRANSACTION;"


def https_url(location: str) -> str:
    """The https form `COPY INTO` takes of an `abfss://container@account.dfs.core.windows.net/path`
    location."""
    url = urlparse(location)
    if url.scheme == "https":
        return location
    if url.scheme not in ("abfss", "abfs") or "@" not in url.netloc:
        raise ValueError(f"staging location {location!r} is not abfss://<container>@<account>.dfs.core.windows.net/<path>")
    container, host = url.netloc.split("@", 1)
    return f"https://{host}/{container}{url.path}"


def copy_into(table: Table, location: str) -> str:
    """`COPY INTO` a stage table from the Parquet files of a batch (columns by position)."""
    source = https_url(location).rstrip("/") + "/*.parquet"
    return (
        f"COPY INTO stage.{table.name}\nFROM '{source}'\n"
        "WITH (FILE_TYPE = 'PARQUET', CREDENTIAL = (IDENTITY = 'Managed Identity'), AUTO_CREATE_TABLE = 'OFF')"
    )


class Warehouse(Protocol):
    def clear_stage(self) -> None:
        """Empties every stage table."""

    def stage(self, table: Table, location: str) -> None:
        """Loads the Parquet files under `location` into `stage.<table>`."""

    def swap(self, statements: list[str]) -> None:
        """Runs `statements` in one transaction: all or nothing."""


class SynapseWarehouse:
    """A Synapse dedicated SQL pool over JDBC (the SQL Server driver of the Databricks runtime).

    `connect` returns a `java.sql.Connection`; one is opened per call and closed after.
    """

    def __init__(self, connect: Callable[[], object]):
        self._connect = connect

    def clear_stage(self) -> None:
        self._execute(";\n".join(f"TRUNCATE TABLE stage.{t.name}" for t in TABLES))

    def stage(self, table: Table, location: str) -> None:
        self._execute(copy_into(table, location))

    def swap(self, statements: list[str]) -> None:
        self._execute(synapse_transaction(statements))

    def _execute(self, sql: str) -> None:
        connection = self._connect()
        try:
            statement = connection.createStatement()
            statement.execute(sql)
            statement.close()
        finally:
            connection.close()


class DuckDBWarehouse:
    """A DuckDB database with the same tables: the local stand-in for Synapse."""

    def __init__(self, path: str):
        import duckdb

        self.connection = duckdb.connect(path)
        self.connection.execute("SET TimeZone = 'UTC'")
        for statement in duckdb_ddl():
            self.connection.execute(statement)

    def clear_stage(self) -> None:
        for table in TABLES:
            self.connection.execute(f"DELETE FROM stage.{table.name}")

    def stage(self, table: Table, location: str) -> None:
        columns = ", ".join(table.column_names)
        self.connection.execute(
            f"INSERT INTO stage.{table.name} ({columns}) SELECT {columns} FROM read_parquet(?)",
            [location.rstrip("/") + "/*.parquet"],
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



def synapse_batch_script(location: str, staged: list[str], ranges: list[dict], topics: dict[str, str]) -> str:
    """Every statement `SynapseWarehouse` runs for one batch staged under `location`, in
    order, as one script (for review, and for loading a batch by hand). `staged` names the
    tables the batch has rows for."""
    statements = [f"TRUNCATE TABLE stage.{t.name};" for t in TABLES]
    statements += [copy_into(t, f"{location.rstrip('/')}/{t.name}") + ";" for t in TABLES if t.name in staged]
    statements.append(synapse_transaction(swap_statements(ranges, topics)))
    return "\n".join(statements) + "\n"

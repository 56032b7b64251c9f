"""The loader's JDBC statement path against a real server: PostgreSQL and its JDBC driver in
local Spark, through the loader's own connection code (py4j, `DriverManager`). SQL Server
cannot run here; the dialect differs, so what is tested is how statements run and fail: one
at a time, the swap with autocommit off, any error raised, nothing committed before the end.

The server is the one `.ci/run` starts (PIPELINE_JDBC_URL, PIPELINE_JDBC_USER); without it the
fixture starts its own from Debian's postgresql package."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile

import pytest
from py4j.protocol import Py4JJavaError

from conftest import JDBC_JAR

from retail_loader.tables import TABLES
from retail_loader.warehouse import SynapseWarehouse, jdbc_connector, swap_statements

POSTGRES_TYPES = {"BLOB": "BYTEA"}
TOPICS = {"customers": "customers", "products": "products", "orders": "orders", "payments": "payments"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """(url, user, password) of a PostgreSQL server."""
    if os.environ.get("PIPELINE_JDBC_URL"):
        yield os.environ["PIPELINE_JDBC_URL"], os.environ.get("PIPELINE_JDBC_USER", "postgres"), "unused"
        return
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins or not os.path.exists(JDBC_JAR):
        pytest.fail("PostgreSQL and its JDBC driver are missing: .ci/run installs postgresql and "
                    "libpostgresql-jdbc-java")
    directory = tempfile.mkdtemp(prefix="loader-pg-")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(directory, "postgres")
    port = free_port()
    subprocess.run([*as_postgres, f"{bins[-1]}/initdb", "-D", f"{directory}/data", "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*as_postgres, f"{bins[-1]}/pg_ctl", "-D", f"{directory}/data", "-l", f"{directory}/log", "-w",
                    "-o", f"-p {port} -k {directory} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield f"jdbc:postgresql://127.0.0.1:{port}/postgres", "postgres", "unused"
    finally:
        subprocess.run([*as_postgres, f"{bins[-1]}/pg_ctl", "-D", f"{directory}/data", "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


def run(connect, *statements: str) -> list[tuple]:
    """Runs statements in autocommit (set-up and checks); the rows of the last if it queries."""
    connection = connect()
    try:
        statement = connection.createStatement()
        rows = []
        for sql in statements:
            if statement.execute(sql):
                result = statement.getResultSet()
                width = result.getMetaData().getColumnCount()
                while result.next():
                    rows.append(tuple(result.getString(i + 1) for i in range(width)))
        return rows
    finally:
        connection.close()


@pytest.fixture(scope="module")
def warehouse(spark, postgres):
    """The raw and stage tables in PostgreSQL, a staged batch of orders, and the loader's own
    SynapseWarehouse on them (without T-SQL's SET XACT_ABORT, which PostgreSQL lacks)."""
    url, user, password = postgres
    connect = jdbc_connector(spark, url, user, password)
    statements = ["DROP SCHEMA IF EXISTS raw CASCADE", "DROP SCHEMA IF EXISTS stage CASCADE",
                  "CREATE SCHEMA raw", "CREATE SCHEMA stage"]
    for schema in ("raw", "stage"):
        for table in TABLES:
            columns = ", ".join(f"{c.name} {POSTGRES_TYPES.get(c.duckdb_type, c.duckdb_type)}"
                                f"{'' if c.nullable else ' NOT NULL'}" for c in table.columns)
            statements.append(f"CREATE TABLE {schema}.{table.name} ({columns})")
    for offset in range(100, 110):
        statements.append(
            "INSERT INTO stage.orders VALUES ("
            f"'00000000-0000-4000-8000-{offset:012d}', 'order_placed', '2026-03-02 10:00:00', {offset}, 7, 1, "
            "10.00, 0.00, 0.80, 5.99, 16.79, 'USD', 'web', 'placed', "
            f"'orders', 0, {offset}, '2026-03-02 10:00:00', 1, '2026-03-02 11:00:00')")
    statements.append("INSERT INTO stage.load_log VALUES (1, 'orders', 0, 100, 109, 10, 0, '2026-03-02 11:00:00')")
    run(connect, *statements)
    return connect, SynapseWarehouse(connect, session_statements=())


RANGES = [{"topic": "orders", "partition": 0, "start_offset": 100, "end_offset": 109}]


def counts(connect) -> tuple[int, int]:
    (row,) = run(connect, "SELECT (SELECT count(*) FROM raw.orders), (SELECT count(*) FROM raw.load_log)")
    return int(row[0]), int(row[1])


def test_a_statement_failing_mid_swap_is_raised_and_nothing_is_committed(warehouse):
    connect, loader = warehouse
    statements = swap_statements(RANGES, TOPICS)
    # Delete and insert for orders, order_items, rejected_messages and load_log.
    assert len(statements) == 8 and "raw.load_log" in statements[-1]
    # The orders are swapped in, then a statement fails before the load log is.
    broken = statements[:2] + ["INSERT INTO raw.load_log (batch_id) VALUES ('not a number')"] + statements[2:]
    with pytest.raises(Py4JJavaError) as raised:
        loader.swap(broken)
    assert "invalid input syntax" in str(raised.value.java_exception)
    assert counts(connect) == (0, 0), "the statements before the failure were rolled back"

    # The batch retried succeeds, once; replayed, it replaces its rows instead of adding them.
    loader.swap(statements)
    assert counts(connect) == (10, 1)
    loader.swap(statements)
    assert counts(connect) == (10, 1)


def test_a_failing_statement_outside_the_swap_is_raised_too(warehouse):
    connect, loader = warehouse
    with pytest.raises(Py4JJavaError) as raised:
        loader._run(["SELECT 1", "SELECT * FROM stage.no_such_table"], transaction=False)
    assert "no_such_table" in str(raised.value.java_exception)
    # The stage is emptied table by table, each statement checked.
    loader.clear_stage()
    assert run(connect, "SELECT count(*) FROM stage.orders") == [("0",)]


def test_every_connection_is_closed_even_after_an_error(spark, postgres, warehouse):
    url, user, password = postgres
    opened = []
    base = jdbc_connector(spark, url, user, password)

    def connect():
        connection = base()
        opened.append(connection)
        return connection

    loader = SynapseWarehouse(connect, session_statements=())
    with pytest.raises(Py4JJavaError):
        loader.swap(["DELETE FROM raw.no_such_table"])
    loader.swap(swap_statements(RANGES, TOPICS))
    assert len(opened) == 2 and all(c.isClosed() for c in opened)

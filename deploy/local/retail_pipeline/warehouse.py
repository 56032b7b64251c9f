"""The local warehouse: one DuckDB file, opened for one step at a time (dbt runs in its own
process in between, and DuckDB admits one writer)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb

from retail_loader.tables import duckdb_ddl

from .errors import PipelineError


@contextlib.contextmanager
def opened(path: Path, read_only: bool = False):
    """A connection to the warehouse at `path` (created with the `raw` tables if new), or a
    `PipelineError` that says why not: not a DuckDB file, or locked by another process."""
    if read_only and not path.exists():
        raise PipelineError(f"--warehouse {path}: no such file")
    try:
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        connection = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as error:
        message = str(error).splitlines()[0]
        if "lock" in message.lower():
            raise PipelineError(f"--warehouse {path} is in use by another process (DuckDB admits one writer): "
                                f"stop it, or give another --warehouse") from None
        raise PipelineError(f"--warehouse {path} is not a DuckDB database: {message}") from None
    except OSError as error:
        raise PipelineError(f"--warehouse {path}: {error.strerror}") from None
    try:
        connection.execute("SET TimeZone = 'UTC'")
        if not read_only:
            for statement in duckdb_ddl():
                connection.execute(statement)
        yield connection
    finally:
        connection.close()

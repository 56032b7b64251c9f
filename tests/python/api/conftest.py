"""Fixtures of the pull API tests: a seeded backfill written by the simulator, and
`simulator serve` processes over it.

`tests/api.rs` runs this suite with PIPELINE_SIMULATOR, the simulator binary.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import time
from dataclasses import dataclass

import fastavro
import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[3]
TOPICS = ("products", "customers", "orders", "payments")  # the API's order: reference data first
START = "2026-03-02T00:00:00Z"


def simulator() -> str:
    path = os.environ.get("PIPELINE_SIMULATOR")
    if not path:
        pytest.skip("PIPELINE_SIMULATOR is not set: run through `cargo test --test api`")
    return path


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMULATOR__") and k != "RUST_LOG"}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="session")
def backfill(workdir) -> pathlib.Path:
    """Six seeded hours with deflate blocks, duplicates and events published two hours late
    (so most hours have several parts per topic)."""
    data = workdir / "data"
    run = subprocess.run(
        [simulator(), "--seed", "11", "--rate", "3000/h", "--shoppers", "400", "--start", START,
         "--duration", "6h", "--speed", "max", "--output-dir", str(data), "--metrics-addr", "127.0.0.1:0"],
        env=clean_env(SIMULATOR__FILE__CODEC="deflate", SIMULATOR__FAULTS__DUPLICATE_FRACTION="0.01",
                      SIMULATOR__FAULTS__LATE_FRACTION="0.02", SIMULATOR__FAULTS__LATE_DELAY="2h"),
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    parts = list(data.glob("orders/date=*/hour=*/*-00001.avro"))
    assert parts, "the late events made no second part"
    return data


def hour_files(data: pathlib.Path, hour: str, topic: str) -> list[pathlib.Path]:
    date, hh = hour.split("T")
    directory = data / topic / f"date={date}" / f"hour={hh}"
    return sorted(directory.glob(f"{topic}-*.avro"))


def read_hour(data: pathlib.Path, hour: str, topic: str) -> list[dict]:
    """The hour's records of `topic`, read from the files with fastavro, in part order."""
    records = []
    for path in hour_files(data, hour, topic):
        with path.open("rb") as f:
            records.extend(fastavro.reader(f))
    return records


def as_json(record: dict) -> dict:
    """A fastavro record in the API's JSON form: decimals and instants as text."""
    from datetime import datetime
    from decimal import Decimal
    from uuid import UUID

    def convert(value):
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, Decimal):
            return f"{value:.2f}"
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
        if isinstance(value, UUID):
            return str(value)
        return value

    return convert(record)


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: pathlib.Path

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=30)


def serve(data: pathlib.Path, workdir: pathlib.Path, *args: str, **env: str) -> Server:
    port = free_port()
    log = workdir / f"serve-{port}.log"
    process = subprocess.Popen(
        [simulator(), "serve", "--output-dir", str(data), "--metrics-addr", f"127.0.0.1:{port}", *args],
        env=clean_env(**env), stdout=subprocess.DEVNULL, stderr=log.open("w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}: {log.read_text()}")
        try:
            if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                return Server(process, url, log)
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"serve did not become ready: {log.read_text()}")


@pytest.fixture(scope="session")
def server(backfill, workdir):
    running = serve(backfill, workdir)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def hours(server) -> dict:
    response = requests.get(f"{server.url}/v1/hours", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def ledger_events(data: pathlib.Path, hour: str) -> int:
    date, hh = hour.split("T")
    ledger = json.loads((data / "_ledger" / f"date={date}" / f"hour={hh}.json").read_text())
    return ledger["events_total"] + ledger["faults"]["duplicates"]

"""Throughput of the pull API: one large hour fetched whole, page by page, in each format.

Usage: .venv/bin/python benches/api_throughput.py [target/release/simulator]

Simulates one hour at 100,000 orders/h (seed 2: 588,633 events) into a scratch directory,
serves it with `simulator serve`, then fetches every page (limit 100,000) of the hour in NDJSON,
JSON, Avro (topic by topic) and NDJSON with gzip, three rounds each, and prints the median
events per second and MB per second of body (as received), and the server's peak memory.
"""

from __future__ import annotations

import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import requests

HOUR = "2026-03-02T00"
TOPICS = ("products", "customers", "orders", "payments")


def fetch(url: str, params: dict, headers: dict) -> tuple[int, int]:
    """Every page: (events, bytes received)."""
    events = received = 0
    params = dict(params, hour=HOUR, limit=100000)
    while True:
        response = requests.get(f"{url}/v1/transactions", params=params, headers=headers, timeout=300, stream=True)
        response.raise_for_status()
        for chunk in response.raw.stream(1 << 16, decode_content=False):
            received += len(chunk)
        events += int(response.headers["Event-Count"])
        cursor = response.headers.get("Next-Cursor")
        if not cursor:
            return events, received
        params["cursor"] = cursor


def main() -> None:
    simulator = sys.argv[1] if len(sys.argv) > 1 else "target/release/simulator"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMULATOR__")}
    with tempfile.TemporaryDirectory() as scratch:
        data = pathlib.Path(scratch) / "data"
        subprocess.run([simulator, "--seed", "2", "--rate", "100000/h", "--shoppers", "20000",
                        "--start", "2026-03-02T00:00:00Z", "--duration", "1h", "--speed", "max",
                        "--output-dir", str(data), "--metrics-addr", "127.0.0.1:0"],
                       env=env, check=True, capture_output=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([simulator, "serve", "--output-dir", str(data), "--metrics-addr",
                                   f"127.0.0.1:{port}"], env=env, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if requests.get(f"{url}/readyz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        cases = {
            "ndjson": [({}, {"Accept-Encoding": "identity"})],
            "json": [({}, {"Accept": "application/json", "Accept-Encoding": "identity"})],
            "avro": [({"topic": t}, {"Accept": "application/avro", "Accept-Encoding": "identity"}) for t in TOPICS],
            "ndjson+gzip": [({}, {"Accept-Encoding": "gzip"})],
        }
        try:
            for name, requests_of_case in cases.items():
                rounds = []
                for _ in range(3):
                    started = time.perf_counter()
                    events = received = 0
                    for params, headers in requests_of_case:
                        e, r = fetch(url, params, headers)
                        events, received = events + e, received + r
                    rounds.append((time.perf_counter() - started, events, received))
                seconds = statistics.median(r[0] for r in rounds)
                events, received = rounds[0][1], rounds[0][2]
                print(f"{name:12} {events} events in {seconds:.2f} s: {events / seconds:,.0f} events/s, "
                      f"{received / seconds / 1e6:,.0f} MB/s ({received / 1e6:,.0f} MB)")
            status = pathlib.Path(f"/proc/{server.pid}/status").read_text()
            peak = next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]
            print(f"server peak resident memory: {int(peak) // 1024} MiB")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()

"""The pull API against the files, read independently with fastavro."""

from __future__ import annotations

import gzip
import io
import json
import pathlib
import shutil
import subprocess
import threading

import fastavro
import pytest
import requests

from conftest import TOPICS, as_json, clean_env, ledger_events, read_hour, serve, simulator

AVRO = {"Accept": "application/avro"}
JSON = {"Accept": "application/json"}


def pages(url: str, params: dict, headers: dict | None = None):
    """Every page of a request, following the cursor: (response, body) pairs."""
    params = dict(params)
    while True:
        response = requests.get(f"{url}/v1/transactions", params=params, headers=headers or {}, timeout=60)
        assert response.status_code == 200, response.text
        yield response
        cursor = response.headers.get("Next-Cursor")
        if headers == JSON:
            body = response.json()
            assert body["next_cursor"] == cursor and body["has_more"] == (cursor is not None)
        if cursor is None:
            return
        params["cursor"] = cursor


def ndjson(url: str, params: dict) -> list[dict]:
    events = []
    for response in pages(url, params):
        assert response.headers["Content-Type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert len(lines) == int(response.headers["Event-Count"])
        events.extend(lines)
    return events


def test_the_hours_are_the_files_and_the_ledger(backfill, hours):
    listed = [h["hour"] for h in hours["hours"]]
    assert listed == [f"2026-03-02T{h:02d}" for h in range(6)]
    assert hours["watermark"] == "2026-03-02T05"
    for hour in hours["hours"]:
        counts = {t: len(read_hour(backfill, hour["hour"], t)) for t in TOPICS}
        assert hour["events"] == counts
        assert sum(counts.values()) == ledger_events(backfill, hour["hour"])


def test_every_hour_in_ndjson_and_json_pages_is_the_files_in_order(backfill, server, hours):
    for hour in hours["hours"]:
        expected = [as_json({"topic": t, **r}) for t in TOPICS for r in read_hour(backfill, hour["hour"], t)]
        assert ndjson(server.url, {"hour": hour["hour"], "limit": 997}) == expected
    # Small JSON pages of one topic, and of every topic.
    hour = hours["hours"][2]["hour"]
    for topic in (None, "payments"):
        params = {"hour": hour, "limit": 113, **({"topic": topic} if topic else {})}
        events = [e for r in pages(server.url, params, JSON) for e in r.json()["events"]]
        expected = [as_json({"topic": t, **r}) for t in TOPICS if topic in (None, t)
                    for r in read_hour(backfill, hour, t)]
        assert events == expected


def test_avro_pages_hold_the_files_records(backfill, server, hours):
    for hour in hours["hours"]:
        for topic in TOPICS:
            records = []
            for response in pages(server.url, {"hour": hour["hour"], "topic": topic, "limit": 211}, AVRO):
                assert response.headers["Content-Type"] == "application/avro"
                records.extend(fastavro.reader(io.BytesIO(response.content)))
            assert records == read_hour(backfill, hour["hour"], topic), (hour, topic)


def test_a_cursor_survives_a_restart_of_the_server(backfill, workdir, hours):
    hour = hours["hours"][1]["hour"]
    first = serve(backfill, workdir)
    seen, cursor = [], None
    for _ in range(3):
        params = {"hour": hour, "limit": 500, **({"cursor": cursor} if cursor else {})}
        response = requests.get(f"{first.url}/v1/transactions", params=params, timeout=60)
        seen.extend(json.loads(line) for line in response.text.splitlines())
        cursor = response.headers["Next-Cursor"]
    assert first.stop() == 0
    second = serve(backfill, workdir)
    try:
        seen.extend(ndjson(second.url, {"hour": hour, "limit": 500, "cursor": cursor}))
    finally:
        second.stop()
    expected = [as_json({"topic": t, **r}) for t in TOPICS for r in read_hour(backfill, hour, t)]
    assert seen == expected
    assert len({e["event_id"] for e in seen}) == len({e["event_id"] for e in expected})


def test_concurrent_clients_each_get_the_whole_hour(backfill, server, hours):
    hour = hours["hours"][0]["hour"]
    expected = ndjson(server.url, {"hour": hour, "limit": 100000})
    results, errors = {}, []

    def client(n):
        try:
            results[n] = ndjson(server.url, {"hour": hour, "limit": 300 + n})
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r == expected for r in results.values())


def test_gzip_and_entity_tags(server, hours):
    hour = hours["hours"][0]["hour"]
    url = f"{server.url}/v1/transactions"
    plain = requests.get(url, params={"hour": hour}, headers={"Accept-Encoding": "identity"}, timeout=60)
    raw = requests.get(url, params={"hour": hour}, headers={"Accept-Encoding": "gzip"}, stream=True, timeout=60)
    assert raw.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(raw.raw.read()) == plain.content
    tag = plain.headers["ETag"]
    assert tag.startswith('W/"')
    again = requests.get(url, params={"hour": hour}, headers={"If-None-Match": tag}, timeout=60)
    assert again.status_code == 304 and again.content == b""
    other = requests.get(url, params={"hour": hour, "limit": 5}, timeout=60)
    assert other.headers["ETag"] != tag


@pytest.mark.parametrize("params, headers, status, parameter", [
    ({"hour": "2026-03-02T09"}, {}, 404, "hour"),
    ({"hour": "2025-01-01T00"}, {}, 404, "hour"),
    ({}, {}, 400, "hour"),
    ({"hour": "2026-03-02 01"}, {}, 400, "hour"),
    ({"hour": "2026-03-02T01", "topic": "refunds"}, {}, 400, "topic"),
    ({"hour": "2026-03-02T01", "limit": "0"}, {}, 400, "limit"),
    ({"hour": "2026-03-02T01", "limit": "many"}, {}, 400, "limit"),
    ({"hour": "2026-03-02T01", "cursor": "AAAA"}, {}, 400, "cursor"),
    ({"hour": "2026-03-02T01"}, AVRO, 400, "topic"),
    ({"hour": "2026-03-02T01"}, {"Accept": "text/csv"}, 406, None),
])
def test_bad_requests_are_named(server, params, headers, status, parameter):
    response = requests.get(f"{server.url}/v1/transactions", params=params, headers=headers, timeout=30)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem.get("parameter") == parameter and problem["detail"]


def test_a_cursor_of_another_hour_or_topic_is_refused(server, hours):
    first = requests.get(f"{server.url}/v1/transactions", params={"hour": hours["hours"][0]["hour"], "limit": 1}, timeout=30)
    cursor = first.headers["Next-Cursor"]
    for params in ({"hour": hours["hours"][1]["hour"]}, {"hour": hours["hours"][0]["hour"], "topic": "orders"}):
        response = requests.get(f"{server.url}/v1/transactions", params={**params, "cursor": cursor}, timeout=30)
        assert response.status_code == 400 and response.json()["parameter"] == "cursor"


def test_an_hour_still_being_written_is_409_with_retry_after(backfill, workdir):
    data = workdir / "unfinished"
    shutil.copytree(backfill, data)
    hour_dir = data / "orders" / "date=2026-03-02" / "hour=03"
    (hour_dir / ".orders-20260302T03-00009.avro.inprogress").write_bytes(b"")
    running = serve(data, workdir)
    try:
        listed = requests.get(f"{running.url}/v1/hours", timeout=30).json()
        assert listed["watermark"] == "2026-03-02T02"
        assert "2026-03-02T04" in [h["hour"] for h in listed["hours"]]
        response = requests.get(f"{running.url}/v1/transactions", params={"hour": "2026-03-02T03"}, timeout=30)
        assert response.status_code == 409
        assert int(response.headers["Retry-After"]) >= 1
        assert "still being written" in response.json()["detail"]
    finally:
        running.stop()


def test_a_live_run_serves_complete_hours_and_answers_409_for_the_rest(workdir):
    """A run at 900 simulated seconds per second, writing files and encoding into the null
    sink too: hours not reached are 409, hours done are served whole, the summary counts each
    sink."""
    data = workdir / "live"
    port = __import__("conftest").free_port()
    process = subprocess.Popen(
        [simulator(), "--seed", "4", "--rate", "2000/h", "--shoppers", "300", "--start", "2026-03-02T00:00:00Z",
         "--duration", "3h", "--speed", "900", "--sink", "file,null", "--output-dir", str(data),
         "--metrics-addr", f"127.0.0.1:{port}"],
        env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        import time
        deadline = time.monotonic() + 20
        while True:
            try:
                ahead = requests.get(f"{url}/v1/transactions", params={"hour": "2026-03-02T02"}, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert ahead.status_code == 409, ahead.text
        assert 1 <= int(ahead.headers["Retry-After"]) <= 3600
        assert requests.get(f"{url}/v1/transactions", params={"hour": "2026-03-02T05"}, timeout=5).status_code == 404
        while requests.get(f"{url}/v1/hours", timeout=5).json()["watermark"] is None:
            assert time.monotonic() < deadline + 20
            time.sleep(0.2)
        served = ndjson(url, {"hour": "2026-03-02T00", "limit": 2000})
        expected = [as_json({"topic": t, **r}) for t in TOPICS for r in read_hour(data, "2026-03-02T00", t)]
        assert served == expected and served
    finally:
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "every event was delivered" in stderr
    assert stderr.count("delivered by this sink") == 2, stderr


def test_the_token_guards_the_data_and_never_shows(backfill, workdir, tmp_path):
    token = "s3cret-token-value"
    running = serve(backfill, workdir, SIMULATOR__API__TOKEN=token)
    try:
        url = f"{running.url}/v1/hours"
        missing = requests.get(url, timeout=30)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
        assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 401
        assert requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 200
        assert requests.get(f"{running.url}/metrics", timeout=30).status_code == 200
        document = requests.get(f"{running.url}/openapi.json", timeout=30).json()
        assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    finally:
        running.stop()
    assert token not in running.log.read_text()
    printed = subprocess.run([simulator(), "serve", "--print-config", "--output-dir", str(backfill)],
                             env=clean_env(SIMULATOR__API__TOKEN=token), capture_output=True, text=True)
    assert printed.returncode == 0 and token not in printed.stdout + printed.stderr
    # From a mounted file; both forms at once is a mistake.
    secret = tmp_path / "token"
    secret.write_text(token + "\n")
    from_file = serve(backfill, workdir, "--api-token-file", str(secret))
    try:
        assert requests.get(f"{from_file.url}/v1/hours", timeout=30).status_code == 401
        assert requests.get(f"{from_file.url}/v1/hours", headers={"Authorization": f"Bearer {token}"},
                            timeout=30).status_code == 200
    finally:
        from_file.stop()
    both = subprocess.run([simulator(), "serve", "--output-dir", str(backfill), "--api-token-file", str(secret)],
                          env=clean_env(SIMULATOR__API__TOKEN=token), capture_output=True, text=True, timeout=30)
    assert both.returncode == 2 and "api.token" in both.stderr and token not in both.stderr


def test_serve_refuses_a_missing_directory(workdir):
    run = subprocess.run([simulator(), "serve", "--output-dir", str(workdir / "nowhere"),
                          "--metrics-addr", "127.0.0.1:0"], env=clean_env(), capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 2
    assert "file.output_dir (--output-dir)" in run.stderr and "nowhere" in run.stderr
    assert "panicked" not in run.stderr


def test_requests_and_bytes_are_counted(server, hours):
    requests.get(f"{server.url}/v1/transactions", params={"hour": hours["hours"][0]["hour"], "limit": 3}, timeout=30)
    requests.get(f"{server.url}/v1/transactions", params={"hour": "nonsense"}, timeout=30)
    metrics = requests.get(f"{server.url}/metrics", timeout=30).text
    lines = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
             if line.startswith("simulator_api_")}
    assert lines['simulator_api_requests_total{route="/v1/transactions",status="200"}'] >= 1
    assert lines['simulator_api_requests_total{route="/v1/transactions",status="400"}'] >= 1
    assert lines['simulator_api_response_bytes_total{route="/v1/transactions"}'] > 0


def test_the_openapi_document_is_valid_and_the_server_keeps_to_it(server, workdir):
    from openapi_spec_validator import validate

    document = requests.get(f"{server.url}/openapi.json", timeout=30).json()
    assert document["openapi"].startswith("3.1")
    validate(document)
    assert set(document["paths"]) == {"/v1/hours", "/v1/transactions"}
    schemathesis = pathlib.Path(__import__("sys").executable).parent / "schemathesis"
    run = subprocess.run(
        [str(schemathesis), "run", f"{server.url}/openapi.json", "--max-examples", "60",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance,response_headers_conformance",
         "--seed", "1", "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=workdir, env=clean_env())
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def test_a_large_hour_streams_in_bounded_memory(workdir):
    """About 590,000 events in one hour, 230 MB of NDJSON in pages of 100,000: the server's
    peak resident memory stays far below one page's size."""
    data = workdir / "large"
    run = subprocess.run(
        [simulator(), "--seed", "2", "--rate", "100000/h", "--shoppers", "20000", "--start", "2026-03-02T00:00:00Z",
         "--duration", "1h", "--speed", "max", "--output-dir", str(data), "--metrics-addr", "127.0.0.1:0"],
        env=clean_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    running = serve(data, workdir)
    try:
        served, count, params = 0, 0, {"hour": "2026-03-02T00", "limit": 100000}
        while True:
            with requests.get(f"{running.url}/v1/transactions", params=params, stream=True, timeout=120) as response:
                assert response.status_code == 200
                for chunk in response.iter_content(1 << 16):
                    served += len(chunk)
                    count += chunk.count(b"\n")
                cursor = response.headers.get("Next-Cursor")
            if not cursor:
                break
            params["cursor"] = cursor
        status = pathlib.Path(f"/proc/{running.process.pid}/status").read_text()
        peak_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
    finally:
        running.stop()
    assert count == sum(len(read_hour(data, "2026-03-02T00", t)) for t in TOPICS) > 500_000
    assert served > 200 * 1024 * 1024
    assert peak_kb < 64 * 1024, f"peak {peak_kb} kB while serving {served} bytes"


def test_a_client_that_leaves_early_is_no_error(server, hours):
    hour = hours["hours"][0]["hour"]
    with requests.get(f"{server.url}/v1/transactions", params={"hour": hour, "limit": 100000}, stream=True,
                      timeout=30) as response:
        next(response.iter_content(1024))
    head = requests.head(f"{server.url}/v1/transactions", params={"hour": hour}, timeout=30)
    assert head.status_code == 200 and head.headers["ETag"]
    # The server still answers, and logged no failure.
    assert requests.get(f"{server.url}/v1/hours", timeout=30).status_code == 200
    import time
    time.sleep(0.5)
    assert "failed part-way" not in server.log.read_text()

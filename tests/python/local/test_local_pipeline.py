"""deploy/local/pipeline on the simulator's real files: marts equal to the ledger, the page in
Chromium, the Tableau workbooks, a second replica's files, and its handling of bad input."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from conftest import PIPELINE, ROOT, Run, ledger, pipeline, query, simulate, succeeds

MARTS = "analytics_marts"


def assert_marts_equal_ledger(run: Run) -> None:
    truth = ledger(run.data)
    assert truth["orders_placed"] > 1000
    assert query(run.warehouse, f"SELECT count(*) FROM {MARTS}.fct_orders") == [(truth["orders_placed"],)]
    net = dict(query(run.warehouse, f"SELECT currency, sum(net_revenue) FROM {MARTS}.fct_orders GROUP BY ALL"))
    expected = {c: truth["captured"][c] - truth["refunded"].get(c, Decimal(0)) for c in truth["captured"]}
    assert net == expected
    assert set(net) == {"USD", "EUR"}, "the run has two currencies"
    # The lines carry the whole of every order: they sum to the same revenue.
    lines = dict(query(run.warehouse, f"SELECT currency, sum(net_revenue) FROM {MARTS}.fct_sales GROUP BY ALL"))
    assert lines == expected
    # In the reporting currency, EUR amounts converted at the configured rate.
    (reporting,) = query(run.warehouse, f"SELECT sum(net_revenue_reporting) FROM {MARTS}.fct_orders")[0]
    eur = query(run.warehouse, f"SELECT sum(net_revenue), sum(net_revenue_reporting) FROM {MARTS}.fct_orders "
                               "WHERE currency = 'EUR'")[0]
    assert abs(eur[1] - eur[0] / Decimal("0.92")) < Decimal("0.01") * 500
    assert reporting == expected["USD"] + eur[1]


def test_the_marts_equal_the_ledger_and_the_run_says_so(first_replica):
    run = first_replica
    output = run.outputs[0]
    assert_marts_equal_ledger(run)
    hours = ledger(run.data)["hours"]
    assert re.search(rf"reconcile \({hours} ledger hours\): equal: orders placed [\d,]+ = ledger", output), output
    assert "net revenue EUR" in output and "DIFFERENT" not in output
    assert re.search(r"dbt build: ok PASS=\d+ WARN=0 ERROR=0", output), output
    assert f"dashboard: {(run.dashboard / 'index.html').resolve().as_uri()}" in output


def test_a_second_replica_adds_its_files_and_nothing_is_loaded_twice(both_replicas):
    run = both_replicas
    assert_marts_equal_ledger(run)
    files = query(run.warehouse, "SELECT path, sha256 FROM pipeline.loaded_files ORDER BY path")
    # Every file of the first run is still there, loaded once, and the replica's parts joined them.
    assert set(run.loaded_before) < set(files)
    assert len({path for path, _ in files}) == len(files)
    assert any(path.endswith("-00001.avro") for path, _ in files), "the replicas share hours"
    on_disk = sorted(p.relative_to(run.data).as_posix() for p in run.data.glob("*/date=*/hour=*/*.avro"))
    assert [path for path, _ in files] == on_disk
    # Raw holds each message once: as many rows as the files hold records.
    import fastavro

    records = sum(sum(1 for _ in fastavro.reader(open(run.data / path, "rb"))) for path, _ in files)
    raw = sum(query(run.warehouse, f"SELECT count(*) FROM raw.{t}")[0][0]
              for t in ("customers", "products", "orders", "payments"))
    assert raw == records
    # Offsets are contiguous per topic and part: the completeness the load log promises.
    gaps = query(run.warehouse, """
        SELECT kafka_topic, kafka_partition FROM (
            SELECT kafka_topic, kafka_partition, start_offset,
                   lag(end_offset) OVER (PARTITION BY kafka_topic, kafka_partition ORDER BY start_offset) AS previous
            FROM raw.load_log) WHERE previous IS NOT NULL AND start_offset <> previous + 1""")
    assert gaps == []
    # A third run finds nothing new.
    output = run.pipeline()
    assert "load: 0 new file(s)" in output and "equal" in output


def test_the_history_dimensions_hold_every_version_and_facts_the_one_in_force(both_replicas):
    run = both_replicas
    # One version per sign-up and update loaded, each valid until the next began.
    raw = dict(query(run.warehouse, "SELECT event_type, count(DISTINCT event_id) FROM raw.customers GROUP BY ALL"))
    history = dict(query(run.warehouse, f"SELECT change_type, count(*) FROM {MARTS}.dim_customer_history GROUP BY ALL"))
    assert raw["customer_updated"] > 20 and raw["customer_deleted"] > 10, raw
    assert history == {"customer_signed_up": raw["customer_signed_up"], "customer_updated": raw["customer_updated"]}
    gaps = query(run.warehouse, f"""
        SELECT count(*) FROM (
            SELECT valid_to, lead(valid_from) OVER (PARTITION BY customer_key ORDER BY version) AS next_from
            FROM {MARTS}.dim_customer_history) WHERE next_from IS NOT NULL AND valid_to <> next_from""")
    assert gaps == [(0,)]
    # A move changes the region an order is reported under from the move on, not before.
    moved = query(run.warehouse, f"""
        SELECT count(*) FROM {MARTS}.dim_customer_history
        WHERE change_type = 'customer_updated' AND changed_fields LIKE '%street_address%'""")[0][0]
    assert moved > 10
    wrong = query(run.warehouse, f"""
        SELECT count(*) FROM {MARTS}.fct_sales AS s
        LEFT JOIN {MARTS}.dim_customer_history AS h USING (customer_version_key)
        WHERE h.customer_key IS DISTINCT FROM s.customer_key OR s.ordered_at < h.valid_from
           OR s.ordered_at >= coalesce(h.valid_to, TIMESTAMP '9999-01-01')""")
    assert wrong == [(0,)]
    # The catalogue price of each line is the product's price in force when it was ordered.
    mismatched = query(run.warehouse, f"""
        SELECT count(*) FROM {MARTS}.fct_sales AS s WHERE s.currency = 'USD' AND s.unit_price <> s.catalogue_unit_price""")
    assert mismatched == [(0,)]


def test_an_erased_customer_s_personal_data_is_in_no_mart(both_replicas):
    run = both_replicas
    erased = [key for (key,) in query(run.warehouse,
                                      "SELECT DISTINCT customer_id FROM raw.customers WHERE event_type = 'customer_deleted'")]
    assert len(erased) > 10
    personal = ("first_name", "last_name", "email", "phone", "street_address", "city", "region", "postal_code",
                "country_code", "customer_name", "marketing_consent")
    # Every mart and view that names customers holds nothing personal of them.
    relations = query(run.warehouse, """
        SELECT table_name, list(column_name) FROM information_schema.columns
        WHERE table_schema = ? GROUP BY table_name""", [MARTS])
    checked = []
    for relation, columns in relations:
        if "customer_key" not in columns:
            continue
        held = [c for c in columns if c in personal]
        for column in held:
            kept = query(run.warehouse, f"""
                SELECT count(*) FROM {MARTS}.{relation}
                WHERE customer_key IN (SELECT unnest(?::BIGINT[])) AND {column} IS NOT NULL
                  AND CAST({column} AS VARCHAR) NOT IN ('Erased')""", [erased])
            assert kept == [(0,)], f"{relation}.{column} keeps an erased customer's data"
        checked.append(relation)
    assert {"dim_customer", "dim_customer_history", "customer_revenue", "rpt_sales"} <= set(checked)
    # Nor anywhere else: no text column of any mart holds one of their emails or phone numbers.
    contacts = [value for (value,) in query(run.warehouse, """
        SELECT email FROM raw.customers WHERE customer_id IN (SELECT unnest(?::BIGINT[])) AND email IS NOT NULL
        UNION SELECT phone FROM raw.customers WHERE customer_id IN (SELECT unnest(?::BIGINT[])) AND phone IS NOT NULL""",
                                               [erased, erased])]
    assert len(contacts) >= 2 * len(erased)
    for relation, columns in relations:
        types = dict(query(run.warehouse, """
            SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ?""",
                           [MARTS, relation]))
        for column in columns:
            if types[column] == "VARCHAR":
                found = query(run.warehouse, f"SELECT count(*) FROM {MARTS}.{relation} "
                                             f"WHERE {column} IN (SELECT unnest(?::VARCHAR[]))", [contacts])
                assert found == [(0,)], f"{relation}.{column} holds an erased customer's contact"


def open_page(browser, run: Run, fragment: str = ""):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    problems, outside = [], []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    def route(request_route):
        if request_route.request.url.startswith("file://"):
            request_route.continue_()
        else:
            outside.append(request_route.request.url)
            request_route.abort()

    page.route("**/*", route)
    page.goto((run.dashboard / "index.html").resolve().as_uri() + fragment)
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    return page, problems, outside


def metrics(page) -> dict[str, str]:
    return {e.get_attribute("data-metric"): e.get_attribute("data-value")
            for e in page.query_selector_all("[data-metric]")}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=os.environ.get("PIPELINE_CHROMIUM", "/usr/bin/chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"])
        yield chromium
        chromium.close()


def sql_figures(run: Run, where: str = "true", parameters=None) -> dict[str, str]:
    net, orders = query(run.warehouse, f"SELECT sum(net_revenue_reporting), count(DISTINCT order_id) "
                                       f"FROM {MARTS}.rpt_sales WHERE {where}", parameters)[0]
    return {"net_revenue": f"{net:.2f}", "orders": str(orders),
            "average_order_value": f"{float(net) / orders:.2f}"}


def test_the_page_shows_the_marts_and_its_filters_change_every_view(both_replicas, browser):
    run = both_replicas
    page, problems, outside = open_page(browser, run)
    assert problems == [] and outside == []
    shown = metrics(page)
    assert shown == sql_figures(run)
    # With no filter, the headline revenue is the ledger's, in the reporting currency.
    (total,) = query(run.warehouse, f"SELECT sum(net_revenue_reporting) FROM {MARTS}.fct_orders")[0]
    assert shown["net_revenue"] == f"{total:.2f}"
    assert int(shown["orders"]) == ledger(run.data)["orders_placed"]
    # The top customers with no filter are customer_revenue's, and the page knows it is exact.
    top = query(run.warehouse, f"SELECT customer_key FROM {MARTS}.customer_revenue ORDER BY revenue_rank, "
                               "customer_key LIMIT 10")
    assert [int(r.get_attribute("data-customer")) for r in page.query_selector_all("#top-customers tbody tr")] == \
        [k for (k,) in top]
    assert page.get_attribute("#top-customers-note", "data-exact") == "true"
    screenshot = Path(os.environ.get("PIPELINE_SCREENSHOT") or run.workdir / "dashboard.png")
    page.screenshot(path=str(screenshot), full_page=True)

    # Filters: a channel, a category and the last day.
    (category,) = query(run.warehouse, f"SELECT category_name FROM {MARTS}.category_revenue "
                                       "GROUP BY 1 ORDER BY sum(net_revenue_reporting) DESC LIMIT 1")[0]
    page.select_option("#filter-channel", label="web")
    page.select_option("#filter-category", label=category)
    day = page.eval_on_selector("#filter-to", "e => e.options[e.options.length - 1].text")
    page.select_option("#filter-from", label=day)
    filtered = metrics(page)
    assert filtered == sql_figures(run, "channel = 'web' AND category_name = ? AND order_date = ?",
                                   [category, day])
    assert filtered != shown
    # The category chart shows the one category; the top customers are those of the filtered set.
    labels = page.evaluate("Chart.getChart(document.querySelector('#sheet-revenue_by_category canvas')).data.labels")
    assert labels == [category]
    best = query(run.warehouse, f"SELECT customer_key FROM {MARTS}.rpt_sales WHERE channel = 'web' AND "
                                "category_name = ? AND order_date = ? GROUP BY 1 "
                                "ORDER BY sum(net_revenue_reporting) DESC, customer_key LIMIT 1", [category, day])
    first_row = page.query_selector("#top-customers tbody tr")
    if page.get_attribute("#top-customers-note", "data-exact") == "true":
        assert int(first_row.get_attribute("data-customer")) == best[0][0]
    # The filters are in the address: a reload (as --watch does) keeps them.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert metrics(page) == filtered
    # A region and a currency.
    page.click("#filter-reset")
    region = page.eval_on_selector("#filter-region", "e => e.options[1].text")
    page.select_option("#filter-region", label=region)
    page.select_option("#filter-currency", label="EUR")
    country, state = region.split(" · ")
    assert metrics(page) == sql_figures(run, "country_code = ? AND region = ? AND currency = 'EUR'", [country, state])
    assert problems == [] and outside == []
    page.close()


def test_the_page_is_self_contained_and_bounded(both_replicas):
    run = both_replicas
    html = (run.dashboard / "index.html").read_text()
    assert "http://" not in html and "https://" not in html
    for name in ("app.js", "data.js", "style.css"):
        text = (run.dashboard / name).read_text()
        assert not re.search(r"""(src|href|fetch\(|import\()\s*=?\s*["']https?://""", text), name
    size = sum(p.stat().st_size for p in run.dashboard.iterdir() if p.suffix in (".html", ".js", ".css"))
    assert size < 3_000_000, f"the page of two replicas' day weighs {size} bytes"


XSD_USER_STUB = """<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="http://www.tableausoftware.com/xml/user">
  <xs:attributeGroup name="UserAttributes-AG"><xs:anyAttribute processContents="skip"/></xs:attributeGroup>
</xs:schema>
"""


@pytest.fixture(scope="module")
def workbook_schema(tmp_path_factory):
    """Tableau's published workbook XSD (.ci/run extracts it; TABLEAU_XSD names it). It imports
    Tableau's `user` namespace without a location: a stub admits those attributes."""
    import xmlschema

    path = os.environ.get("TABLEAU_XSD")
    if not path or not Path(path).exists():
        pytest.fail("TABLEAU_XSD (twb_2026.2.0.xsd, which .ci/run extracts) is not set or missing")
    stub = tmp_path_factory.mktemp("xsd") / "user.xsd"
    stub.write_text(XSD_USER_STUB)
    return xmlschema.XMLSchema(path, locations={"http://www.tableausoftware.com/xml/user": str(stub)})


def workbooks(run: Run) -> dict[str, bytes]:
    with zipfile.ZipFile(run.dashboard / "retail.twbx") as archive:
        packaged = archive.read("retail.twb")
    return {"deploy/tableau/retail.twb": (ROOT / "deploy" / "tableau" / "retail.twb").read_bytes(),
            "retail.twbx": packaged}


def test_both_workbooks_validate_and_use_only_columns_of_their_model(both_replicas, workbook_schema):
    import xml.etree.ElementTree as ET

    from retail_pipeline import dashboards, tableau

    run = both_replicas
    assert tableau.workbook(tableau.PLACEHOLDERS) == workbooks(run)["deploy/tableau/retail.twb"], \
        "deploy/tableau/retail.twb is stale: deploy/local/pipeline tableau --output deploy/tableau/retail.twb"
    manifest = json.loads((run.warehouse.with_suffix(".dbt") / "target" / "manifest.json").read_text())
    model = next(n for n in manifest["nodes"].values() if n["resource_type"] == "model"
                 and n["name"] == dashboards.SOURCE)
    columns = set(model["columns"])
    catalog_columns = {c for (c,) in query(run.warehouse, "SELECT column_name FROM information_schema.columns "
                                                          "WHERE table_name = ?", [dashboards.SOURCE])}
    for name, content in workbooks(run).items():
        errors = list(workbook_schema.iter_errors(content.decode()))
        assert errors == [], f"{name}: {errors[0]}"
        root = ET.fromstring(content)
        referenced = {c.get("name").strip("[]") for c in root.iter("column") if c.find("calculation") is None}
        assert referenced <= columns & catalog_columns, f"{name}: {referenced - columns}"
        # The same dashboards, sheets and filters as the page's definition.
        assert [d.get("name") for d in root.iter("dashboard")] == [d.caption for d in dashboards.DASHBOARDS]
        assert {w.get("name") for w in root.iter("worksheet")} == {s.caption for s in dashboards.SHEETS.values()}
        for worksheet in root.iter("worksheet"):
            filtered = {f.get("column").split(":")[1] for f in worksheet.iter("filter") if f.get("filter-group")}
            assert filtered == {dashboards.FIELDS[f.field].column for f in dashboards.FILTERS}
    live = ET.fromstring(workbooks(run)["deploy/tableau/retail.twb"])
    assert [c.get("class") for c in live.iter("connection")] == ["federated", "azure_sql_dw"]
    packaged = ET.fromstring(workbooks(run)["retail.twbx"])
    assert [c.get("class") for c in packaged.iter("connection")] == ["federated", "hyper"]


def test_the_extract_holds_what_duckdb_holds(both_replicas, tmp_path):
    import pantab

    run = both_replicas
    with zipfile.ZipFile(run.dashboard / "retail.twbx") as archive:
        archive.extract("Data/Extracts/retail.hyper", tmp_path)
    table = pantab.frame_from_hyper(tmp_path / "Data" / "Extracts" / "retail.hyper", table=("Extract", "rpt_sales"),
                                    return_type="pyarrow")
    rows, net, orders = query(run.warehouse, f"SELECT count(*), sum(net_revenue_reporting), count(DISTINCT order_id) "
                                             f"FROM {MARTS}.rpt_sales")[0]
    assert table.num_rows == rows
    import pyarrow.compute as pc

    assert round(pc.sum(table["net_revenue_reporting"]).as_py(), 2) == float(net)
    assert pc.count_distinct(table["order_id"]).as_py() == orders


def test_publish_sends_the_workbook_to_the_server_in_overwrite_mode(both_replicas):
    from standin import TableauStandIn

    run = both_replicas
    secret = "pat-secret-7f3c9e"
    with TableauStandIn() as server:
        environment = {**os.environ, "TABLEAU_SERVER": server.url, "TABLEAU_SITE": "retail",
                       "TABLEAU_PROJECT": "Sales", "TABLEAU_TOKEN_NAME": "ci", "TABLEAU_TOKEN_SECRET": secret}
        result = succeeds(pipeline("publish", str(run.dashboard / "retail.twbx"), env=environment))
        assert "published (overwrite) as workbook" in result.stdout
        assert secret not in result.stdout + result.stderr
        signin, projects, upload = server.requests[:3]
        assert signin["path"].endswith("/auth/signin")
        credentials = signin["credentials"]
        assert credentials["personalAccessTokenName"] == "ci" and credentials["site"]["contentUrl"] == "retail"
        assert credentials["personalAccessTokenSecret"] == secret
        assert projects["headers"]["x-tableau-auth"] == server.token
        assert upload["path"].endswith(f"/sites/{server.site_id}/workbooks") and upload["query"]["overwrite"] == ["true"]
        assert upload["workbook"] == (run.dashboard / "retail.twbx").read_bytes()
        assert upload["payload"]["workbook"]["project"]["id"] == server.project_id
        assert upload["payload"]["workbook"]["name"] == "retail"
        # Without a project of that name, the command says so and fails.
        failed = pipeline("publish", str(run.dashboard / "retail.twbx"),
                          env={**environment, "TABLEAU_PROJECT": "Missing"})
        assert failed.returncode == 2 and "no project named 'Missing'" in failed.stderr
        assert secret not in failed.stdout + failed.stderr
    missing = pipeline("publish", str(run.dashboard / "retail.twbx"),
                       env={k: v for k, v in os.environ.items() if not k.startswith("TABLEAU_")})
    assert missing.returncode == 2 and "set TABLEAU_SERVER" in missing.stderr


def test_an_undecodable_file_goes_to_quarantine_and_costs_nothing_else(tmp_path, first_replica):
    """The loader on a copy of three hours' files, one of them broken two ways."""
    import datetime as dt

    from retail_pipeline import load as loading
    from retail_pipeline.files import complete_files
    from retail_pipeline.warehouse import opened

    data = tmp_path / "data"
    for path in sorted(first_replica.data.glob("*/date=2026-03-02/hour=0[0-2]/*.avro")):
        target = data / path.relative_to(first_replica.data)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    orders = sorted(data.glob("orders/date=2026-03-02/hour=01/*.avro"))[0]
    content = orders.read_bytes()
    orders.write_bytes(content[: len(content) // 2])  # cut in the middle of its block
    bogus = data / "payments/date=2026-03-02/hour=02/payments-20260302T02-00007.avro"
    bogus.write_bytes(b"not avro at all")
    in_progress = data / "orders/date=2026-03-02/hour=02/.orders-20260302T02-00009.avro.inprogress"
    in_progress.write_bytes(b"Obj\x01")
    files = complete_files(data)
    assert all(".inprogress" not in f.relative for f in files)
    warehouse = tmp_path / "w.duckdb"
    with opened(warehouse) as connection:
        report = loading.load(connection, data, files, now=lambda: dt.datetime.now(dt.timezone.utc))
    quarantined = {file.relative: rejected.reason for file, rejected in report.quarantined}
    assert set(quarantined) == {orders.relative_to(data).as_posix(), bogus.relative_to(data).as_posix()}
    assert "not an Avro container file" in quarantined[bogus.relative_to(data).as_posix()]
    rejected = query(warehouse, "SELECT kafka_topic, reason, octet_length(kafka_value) FROM raw.rejected_messages")
    assert len(rejected) == 2 and all(size > 0 for _, _, size in rejected)
    # The broken file's records before the cut are loaded; every other file is whole.
    import fastavro

    whole = sum(sum(1 for _ in fastavro.reader(open(data / f.relative, "rb"))) for f in files
                if f.relative not in quarantined)
    loaded_orders = query(warehouse, "SELECT count(*) FROM raw.orders")[0][0]
    total = sum(query(warehouse, f"SELECT count(*) FROM raw.{t}")[0][0]
                for t in ("customers", "products", "orders", "payments"))
    assert total > whole, "the records before the cut are kept"
    assert loaded_orders > 0
    # Loading again changes nothing: the quarantined files are recorded too.
    now = lambda: dt.datetime.now(dt.timezone.utc)  # noqa: E731
    with opened(warehouse) as connection:
        again = loading.load(connection, data, complete_files(data), now=now)
    assert again.files == [] and again.skipped == len(files)
    # A file touched but unchanged is not loaded again, and its new time is remembered.
    touched = sorted(data.glob("payments/date=2026-03-02/hour=00/*.avro"))[0]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    with opened(warehouse) as connection:
        again = loading.load(connection, data, complete_files(data), now=now)
    assert again.files == []
    relative = touched.relative_to(data).as_posix()
    assert query(warehouse, "SELECT modified_ns FROM pipeline.loaded_files WHERE path = ?", [relative]) == \
        [(touched.stat().st_mtime_ns,)]
    # A file whose content changed replaces what its earlier content loaded.
    before = query(warehouse, "SELECT count(*) FROM raw.payments")[0][0]
    in_file = sum(1 for _ in fastavro.reader(open(touched, "rb")))
    shutil.copy(sorted(data.glob("payments/date=2026-03-02/hour=01/*.avro"))[0], touched)
    with opened(warehouse) as connection:
        replaced = loading.load(connection, data, complete_files(data), now=now)
    assert [(r.file.relative, r.replaced) for r in replaced.files] == [(relative, True)]
    now_in_file = sum(1 for _ in fastavro.reader(open(touched, "rb")))
    assert query(warehouse, "SELECT count(*) FROM raw.payments")[0][0] == before - in_file + now_in_file


def test_bad_input_gets_one_line_and_exit_2(tmp_path, first_replica):
    missing = pipeline("--data", str(tmp_path / "nowhere"), "--warehouse", str(tmp_path / "w.duckdb"))
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    not_duckdb = tmp_path / "notes.duckdb"
    not_duckdb.write_text("these are notes, not a database\n" * 100)
    result = pipeline("--data", str(first_replica.data), "--warehouse", str(not_duckdb))
    assert result.returncode == 2 and "is not a DuckDB database" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(120)",
         str(first_replica.warehouse)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        locked = pipeline("--data", str(first_replica.data), "--warehouse", str(first_replica.warehouse))
        assert locked.returncode == 2 and "in use by another process" in locked.stderr, locked.stderr
        assert "Traceback" not in locked.stderr
    finally:
        holder.kill()
        holder.wait()
    bad_flag = pipeline("--interval", "0")
    assert bad_flag.returncode == 2 and "--interval" in bad_flag.stderr


def test_watch_loads_each_hour_as_it_completes_and_stops_on_ctrl_c(tmp_path, first_replica):
    data = tmp_path / "data"
    data.mkdir()
    process = subprocess.Popen(
        [str(PIPELINE), "--data", str(data), "--warehouse", str(tmp_path / "w.duckdb"), "--dashboard",
         str(tmp_path / "page"), "--watch", "--interval", "1", "--no-tableau"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    arrived: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [arrived.put(line) for line in process.stdout] + [arrived.put(None)],
                     daemon=True).start()

    def until(pattern: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = arrived.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            lines.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(lines)}")

    try:
        until(r"dashboard: file://", 300)  # the first pass, on an empty directory
        # Three simulated hours at an hour per two seconds: the pipeline picks each up.
        simulate(data, "0/1", tmp_path, duration="3h", speed="1800")
        until(r"load: [1-9]\d* new file\(s\)", 120)
        # Each pass rebuilds and reconciles; once the three hours are in, the marts equal them.
        until(r"reconcile \(3 ledger hours\): equal", 300)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=300)
        until(r"pipeline: stopped$", 10)
        assert process.returncode == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
    page = (tmp_path / "page" / "data.js").read_text()
    assert '"refresh_seconds":10' in page

"""The local dashboard: one page that opens from the file system, with no server and no
request to any network. Its data is aggregated from the marts here (`data.js`, beside it),
at a grain that keeps it bounded: per period (day for up to 120 days of data, week up to
three years, month beyond), category, channel, region and currency. The page only filters
and adds up:

- every cell comes twice, per category and for all categories together (`category` = -1),
  so that orders, which can span categories, are counted once;
- top customers come from the customers most valuable overall and in each category,
  channel, region, currency and period (the candidates), with their own cells. Each cell
  also holds the most any other customer spent in it, and each slice (overall, each
  category, channel, region, currency and period) the most any other customer spent in it.
  Those give upper bounds on what a customer outside the candidates can have under the
  filters (the smallest applies): when the tenth candidate shown has at least that, no
  other customer can rank, and the list says it is exact; otherwise it says it may be
  approximate.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from datetime import date, datetime, timezone
from pathlib import Path

from . import dashboards

ASSETS = Path(__file__).resolve().parent / "assets"
CHART_LIBRARY = "chart.umd.min.js"
CANDIDATES = {"overall": 30, "category_name": 10, "channel": 10, "region": 5, "currency": 10, "period": 5}


def grain(first: date, last: date) -> str:
    days = (last - first).days
    return "day" if days <= 120 else "week" if days <= 3 * 366 else "month"


def extract(connection, relation: str = f"analytics_{dashboards.SCHEMA}.{dashboards.SOURCE}") -> dict:
    """The page's data from the warehouse."""
    first, last, currency = connection.execute(
        f"SELECT min(order_date), max(order_date), coalesce(max(reporting_currency), '') FROM {relation}").fetchone()
    if first is None:
        return {"grain": "day", "periods": [], "categories": [], "channels": [], "regions": [], "currencies": [],
                "reporting_currency": currency, "sales": {}, "customers": {}, "customer_sales": {}}
    step = grain(first, last)
    period = "order_date" if step == "day" else f"CAST(date_trunc('{step}', order_date) AS DATE)"
    connection.execute(f"""
        CREATE OR REPLACE TEMP TABLE page_lines AS
        SELECT {period} AS period, category_name, channel, country_code || ' · ' || region AS region, currency,
               customer_key, customer_name, order_id, net_revenue_reporting AS net
        FROM {relation}""")
    dims = {name: [r[0] for r in connection.execute(
        f"SELECT DISTINCT {column} FROM page_lines ORDER BY 1").fetchall()]
        for name, column in (("periods", "period"), ("categories", "category_name"), ("channels", "channel"),
                             ("regions", "region"), ("currencies", "currency"))}
    candidates, thresholds = _candidates(connection)
    connection.execute("CREATE OR REPLACE TEMP TABLE page_candidates (customer_key BIGINT)")
    connection.executemany("INSERT INTO page_candidates VALUES (?)", [[c] for c in candidates])
    index = {name: {value: i for i, value in enumerate(values)} for name, values in dims.items()}
    cell = "period, category_name, channel, region, currency"
    sets = f"GROUPING SETS (({cell}{{extra}}), (period, channel, region, currency{{extra}}))"
    connection.execute(f"""
        CREATE OR REPLACE TEMP TABLE page_customer_cells AS
        SELECT {cell}, customer_key, grouping(category_name) AS all_categories,
               CAST(round(sum(net) * 100) AS BIGINT) AS net, count(DISTINCT order_id) AS orders
        FROM page_lines GROUP BY {sets.format(extra=', customer_key')}""")
    sales = connection.execute(f"""
        WITH cells AS (
            SELECT {cell}, grouping(category_name) AS all_categories,
                   CAST(round(sum(net) * 100) AS BIGINT) AS net, count(DISTINCT order_id) AS orders
            FROM page_lines GROUP BY {sets.format(extra='')}
        ),
        others AS (
            SELECT {cell}, all_categories, max(net) AS other_max
            FROM page_customer_cells
            WHERE customer_key NOT IN (SELECT customer_key FROM page_candidates)
            GROUP BY ALL
        )
        SELECT cells.period, cells.category_name, cells.all_categories, cells.channel, cells.region, cells.currency,
               cells.net, cells.orders, coalesce(others.other_max, 0)
        FROM cells LEFT JOIN others
            ON others.period = cells.period AND others.channel = cells.channel AND others.region = cells.region
           AND others.currency = cells.currency AND others.all_categories = cells.all_categories
           AND others.category_name IS NOT DISTINCT FROM cells.category_name
        ORDER BY ALL""").fetchall()
    customers = connection.execute("""
        SELECT customer_key, max(customer_name) FROM page_lines
        WHERE customer_key IN (SELECT customer_key FROM page_candidates) GROUP BY 1 ORDER BY 1""").fetchall()
    customer_index = {key: i for i, (key, _) in enumerate(customers)}
    customer_sales = connection.execute(f"""
        SELECT customer_key, {cell}, all_categories, net, orders FROM page_customer_cells
        WHERE customer_key IN (SELECT customer_key FROM page_candidates) ORDER BY ALL""").fetchall()

    def category(value, everything):
        return -1 if everything else index["categories"][value]

    return {
        "grain": step,
        "periods": [p.isoformat() for p in dims["periods"]],
        "categories": dims["categories"], "channels": dims["channels"],
        "regions": dims["regions"], "currencies": dims["currencies"],
        "reporting_currency": currency,
        "sales": _columns(
            ("period", "category", "channel", "region", "currency", "net", "orders", "other_max"),
            [(index["periods"][p], category(c, a), index["channels"][ch], index["regions"][r],
              index["currencies"][cu], net, orders, other) for p, c, a, ch, r, cu, net, orders, other in sales]),
        "customers": _columns(("key", "name"), customers),
        "thresholds": {
            "overall": thresholds["overall"].get(None, 0),
            **{name: [thresholds[column].get(value, 0) for value in dims[values]]
               for name, column, values in (("category", "category_name", "categories"),
                                            ("channel", "channel", "channels"), ("region", "region", "regions"),
                                            ("currency", "currency", "currencies"), ("period", "period", "periods"))}},
        "customer_sales": _columns(
            ("customer", "period", "category", "channel", "region", "currency", "net", "orders"),
            [(customer_index[k], index["periods"][p], category(c, a), index["channels"][ch], index["regions"][r],
              index["currencies"][cu], net, orders) for k, p, c, ch, r, cu, a, net, orders in customer_sales]),
    }


def _candidates(connection) -> tuple[list[int], dict]:
    """The customers the top-customers view can show: the most valuable overall and in every
    value of each filter. With them, for each slice, the most any other customer has there
    (the next one's total, in cents; 0 when every customer of the slice is a candidate)."""
    chosen: set[int] = set()
    thresholds: dict = {}
    for slice_, count in CANDIDATES.items():
        partition = "" if slice_ == "overall" else f"PARTITION BY {slice_}"
        key = "NULL" if slice_ == "overall" else slice_
        group = "" if slice_ == "overall" else f", {slice_}"
        rows = connection.execute(f"""
            SELECT {key}, customer_key, rank, net FROM (
                SELECT customer_key, {key} AS {'slice' if slice_ == 'overall' else slice_},
                       CAST(round(sum(net) * 100) AS BIGINT) AS net,
                       row_number() OVER ({partition} ORDER BY sum(net) DESC, customer_key) AS rank
                FROM page_lines GROUP BY customer_key{group}
            ) WHERE rank <= {count + 1}""").fetchall()
        chosen.update(customer for _, customer, rank, _ in rows if rank <= count)
        thresholds[slice_] = {value: max(net, 0) for value, _, rank, net in rows if rank == count + 1}
    return sorted(chosen), thresholds


def _columns(names: tuple[str, ...], rows) -> dict[str, list]:
    columns = {name: [] for name in names}
    for row in rows:
        for name, value in zip(names, row):
            columns[name].append(value)
    return columns


def definition() -> dict:
    return {
        "fields": {k: asdict(v) for k, v in dashboards.FIELDS.items()},
        "measures": {k: asdict(v) for k, v in dashboards.MEASURES.items()},
        "headlines": list(dashboards.HEADLINES),
        "filters": [asdict(f) for f in dashboards.FILTERS],
        "sheets": {k: asdict(v) for k, v in dashboards.SHEETS.items()},
        "dashboards": [asdict(d) for d in dashboards.DASHBOARDS],
    }


def write(target: Path, data: dict, chart_library: Path, refresh_seconds: int | None = None) -> Path:
    """Writes the page into `target` (index.html, its script, style, chart library and data)
    and returns the page's path. Each file is replaced whole, so an open page never reads a
    half-written one."""
    target.mkdir(parents=True, exist_ok=True)
    payload = {"generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "refresh_seconds": refresh_seconds, "definition": definition(), **data}
    _replace(target / "data.js", "window.RETAIL_DATA = " + json.dumps(payload, separators=(",", ":"), default=str)
             + ";\n")
    for name in ("index.html", "app.js", "style.css"):
        _replace(target / name, (ASSETS / name).read_text())
    if not (target / CHART_LIBRARY).exists() or (target / CHART_LIBRARY).read_bytes() != chart_library.read_bytes():
        shutil.copyfile(chart_library, target / CHART_LIBRARY)
    return target / "index.html"


def _replace(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)

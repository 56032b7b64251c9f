"""The dashboards, defined once: the local page (page.py) and the Tableau workbooks
(tableau.py) are both generated from this, so they cannot disagree on fields or filters.

Every field is a column of the dbt model `SOURCE`; a test holds them to the dbt manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "rpt_sales"
"""The dbt model both read: one row per order line (deploy/dbt/models/marts/rpt_sales.sql)."""
SCHEMA = "marts"
"""Its schema suffix: dbt builds it in `<target schema>_marts` (`analytics_marts`)."""


@dataclass(frozen=True)
class Field:
    column: str
    caption: str
    datatype: str
    """Tableau's datatype: string, date, integer, real."""
    role: str
    """dimension or measure."""


FIELDS = {
    "order_id": Field("order_id", "Order", "integer", "dimension"),
    "order_date": Field("order_date", "Order date", "date", "dimension"),
    "category": Field("category_name", "Category", "string", "dimension"),
    "channel": Field("channel", "Channel", "string", "dimension"),
    "country": Field("country_code", "Country", "string", "dimension"),
    "region": Field("region", "Region", "string", "dimension"),
    "currency": Field("currency", "Currency", "string", "dimension"),
    "customer_key": Field("customer_key", "Customer id", "integer", "dimension"),
    "customer": Field("customer_name", "Customer", "string", "dimension"),
    "reporting_currency": Field("reporting_currency", "Reporting currency", "string", "dimension"),
    "net_revenue": Field("net_revenue_reporting", "Net revenue", "real", "measure"),
}


@dataclass(frozen=True)
class Measure:
    name: str
    caption: str
    tableau: str
    """Tableau calculation, over the fields' captions."""
    sql: str
    """The same over the source's columns, in SQL (the page's queries and the tests)."""
    format: str
    """money or count."""


MEASURES = {
    "net_revenue": Measure("net_revenue", "Net revenue", "SUM([net_revenue_reporting])",
                           "sum(net_revenue_reporting)", "money"),
    "orders": Measure("orders", "Orders", "COUNTD([order_id])", "count(DISTINCT order_id)", "count"),
    "average_order_value": Measure("average_order_value", "Average order value",
                                   "SUM([net_revenue_reporting]) / COUNTD([order_id])",
                                   "sum(net_revenue_reporting) / count(DISTINCT order_id)", "money"),
}
HEADLINES = ("net_revenue", "orders", "average_order_value")


@dataclass(frozen=True)
class Filter:
    field: str
    caption: str
    kind: str
    """range (from, to) or single (one value, or all)."""


FILTERS = (
    Filter("order_date", "Dates", "range"),
    Filter("category", "Category", "single"),
    Filter("channel", "Channel", "single"),
    Filter("region", "Country / region", "single"),
    Filter("currency", "Currency", "single"),
)


@dataclass(frozen=True)
class Sheet:
    name: str
    caption: str
    dimension: str
    measures: tuple[str, ...]
    mark: str
    """line or bar."""
    top: int | None = None
    """Only the first N by the first measure."""


SHEETS = {
    "net_revenue_over_time": Sheet("net_revenue_over_time", "Net revenue over time", "order_date",
                                   ("net_revenue",), "line"),
    "orders_and_aov": Sheet("orders_and_aov", "Orders and average order value", "order_date",
                            ("orders", "average_order_value"), "bar"),
    "top_customers": Sheet("top_customers", "Top customers by net revenue", "customer",
                           ("net_revenue", "orders"), "bar", top=10),
    "revenue_by_category": Sheet("revenue_by_category", "Net revenue by category", "category",
                                 ("net_revenue", "orders"), "bar"),
}


@dataclass(frozen=True)
class Dashboard:
    name: str
    caption: str
    sheets: tuple[str, ...]


DASHBOARDS = (
    Dashboard("revenue", "Revenue", ("net_revenue_over_time", "orders_and_aov")),
    Dashboard("customers", "Top customers", ("top_customers",)),
    Dashboard("categories", "Categories", ("revenue_by_category",)),
)


def columns() -> set[str]:
    """Every column of SOURCE the dashboards use."""
    return {f.column for f in FIELDS.values()}

"""The Tableau workbooks, generated from the dashboards' one definition (dashboards.py):

- `deploy/tableau/retail.twb`: live on the Synapse marts (connection class `azure_sql_dw`),
  with the server, database and schema as arguments:
  `python -m retail_pipeline.tableau --server <workspace>.sql.azuresynapse.net --database <pool>
  --schema analytics_marts --output retail.twb` (the committed file has placeholders; a test
  keeps it current);
- `<dashboard>/retail.twbx`, which the local pipeline writes: the same workbook packaged with
  a Hyper extract of the local `rpt_sales`, which opens in Tableau Desktop or Public offline.

Three dashboards (revenue, top customers, categories) over four worksheets; the filters are
on every worksheet, in one filter group each, so a filter set on one applies to all.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from . import dashboards as D

VERSION = "18.1"
SOURCE_BUILD = "2026.2.0 (20262.26.0528.2205)"
USER_NS = "http://www.tableausoftware.com/xml/user"
DATASOURCE = "federated.retail_sales"
DATASOURCE_CAPTION = "Retail sales"
EXTRACT_PATH = "Data/Extracts/retail.hyper"
EXTRACT_SCHEMA = "Extract"
PLACEHOLDERS = {"server": "<workspace>.sql.azuresynapse.net", "database": "<dedicated SQL pool>",
                "schema": "analytics_marts"}

ET.register_namespace("user", USER_NS)

CALCULATION = "Calculation_average_order_value"


def _simple_id(parent: ET.Element, kind: str, name: str) -> None:
    """Tableau's identity of a sheet or dashboard: stable, derived from its name."""
    ET.SubElement(parent, "simple-id", {"uuid": "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"retail/{kind}/{name}")).upper() + "}"})


def _column_type(field: D.Field) -> str:
    return "quantitative" if field.role == "measure" else "ordinal" if field.datatype == "date" else "nominal"


def _instance(field: D.Field, derivation: str = "None") -> tuple[str, str, str]:
    """(name, derivation, type) of a column instance: `[none:region:nk]`, `[tdy:order_date:ok]`."""
    if derivation == "Day":
        return f"[tdy:{field.column}:ok]", "Day", "ordinal"
    if derivation == "Sum":
        return f"[sum:{field.column}:qk]", "Sum", "quantitative"
    if derivation == "CountD":
        return f"[ctd:{field.column}:qk]", "CountD", "quantitative"
    if derivation == "User":
        return f"[usr:{field.column}:qk]", "User", "quantitative"
    return f"[none:{field.column}:{'qk' if field.datatype == 'date' else 'nk'}]", "None", (
        "quantitative" if field.datatype == "date" else "nominal")


def _qualified(instance: str) -> str:
    return f"[{DATASOURCE}].{instance}"


def _measure_instances(measure: D.Measure) -> list[tuple[D.Field, str]]:
    if measure.name == "net_revenue":
        return [(D.FIELDS["net_revenue"], "Sum")]
    if measure.name == "orders":
        return [(D.FIELDS["order_id"], "CountD")]
    if measure.name == "average_order_value":
        return [(_aov_field(), "User")]
    raise ValueError(f"measure {measure.name} has no Tableau field")


def _aov_field() -> D.Field:
    return D.Field(CALCULATION, D.MEASURES["average_order_value"].caption, "real", "measure")


def _connection(live: dict | None) -> ET.Element:
    """The federated connection: Synapse (`live`: server, database, schema) or the extract."""
    outer = ET.Element("connection", {"class": "federated"})
    named = ET.SubElement(ET.SubElement(outer, "named-connections"), "named-connection")
    if live is not None:
        named.attrib.update({"caption": live["server"], "name": "azure_sql_dw.retail"})
        ET.SubElement(named, "connection", {
            "authentication": "sqlserver", "class": "azure_sql_dw", "dbname": live["database"],
            "one-time-sql": "", "port": "1433", "server": live["server"], "sslmode": "require",
            "username": ""})
        table = f"[{live['schema']}].[{D.SOURCE}]"
        connection_name = "azure_sql_dw.retail"
    else:
        named.attrib.update({"caption": "retail.hyper", "name": "hyper.retail"})
        ET.SubElement(named, "connection", {
            "authentication": "auth-none", "author-locale": "en_US", "class": "hyper",
            "dbname": EXTRACT_PATH, "default-settings": "yes", "schema": EXTRACT_SCHEMA,
            "sslmode": "", "tablename": D.SOURCE, "username": "tableau"})
        table = f"[{EXTRACT_SCHEMA}].[{D.SOURCE}]"
        connection_name = "hyper.retail"
    ET.SubElement(outer, "relation", {"connection": connection_name, "name": D.SOURCE, "table": table,
                                      "type": "table"})
    return outer


def _datasource(live: dict | None) -> ET.Element:
    source = ET.Element("datasource", {"caption": DATASOURCE_CAPTION, "inline": "true", "name": DATASOURCE,
                                       "version": VERSION})
    source.append(_connection(live))
    for field in D.FIELDS.values():
        ET.SubElement(source, "column", {"caption": field.caption, "datatype": field.datatype,
                                         "name": f"[{field.column}]", "role": field.role,
                                         "type": _column_type(field)})
    aov = ET.SubElement(source, "column", {"caption": _aov_field().caption, "datatype": "real",
                                           "name": f"[{CALCULATION}]", "role": "measure", "type": "quantitative"})
    ET.SubElement(aov, "calculation", {"class": "tableau", "formula": D.MEASURES["average_order_value"].tableau})
    return source


def _filter(filter_: D.Filter, group: int) -> ET.Element:
    field = D.FIELDS[filter_.field]
    instance, _, _ = _instance(field)
    if filter_.kind == "range":
        element = ET.Element("filter", {"class": "quantitative", "column": _qualified(instance),
                                        "filter-group": str(group), "included-values": "in-range"})
        return element
    element = ET.Element("filter", {"class": "categorical", "column": _qualified(instance),
                                    "filter-group": str(group)})
    ET.SubElement(element, "groupfilter", {"function": "level-members", "level": instance,
                                           f"{{{USER_NS}}}ui-enumeration": "all",
                                           f"{{{USER_NS}}}ui-marker": "enumerate"})
    return element


def _top_filter(sheet: D.Sheet) -> ET.Element:
    field = D.FIELDS[sheet.dimension]
    instance, _, _ = _instance(field)
    measure = D.MEASURES[sheet.measures[0]]
    element = ET.Element("filter", {"class": "categorical", "column": _qualified(instance)})
    end = ET.SubElement(element, "groupfilter", {
        "count": str(sheet.top), "end": "top", "function": "end", "units": "records",
        f"{{{USER_NS}}}ui-marker": "end", f"{{{USER_NS}}}ui-top-by-field": "true"})
    order = ET.SubElement(end, "groupfilter", {"direction": "DESC", "expression": measure.tableau,
                                               "function": "order", f"{{{USER_NS}}}ui-marker": "order"})
    ET.SubElement(order, "groupfilter", {"function": "level-members", "level": instance,
                                         f"{{{USER_NS}}}ui-enumeration": "all",
                                         f"{{{USER_NS}}}ui-marker": "enumerate"})
    return element


def _worksheet(sheet: D.Sheet) -> ET.Element:
    worksheet = ET.Element("worksheet", {"name": sheet.caption})
    table = ET.SubElement(worksheet, "table")
    view = ET.SubElement(table, "view")
    sources = ET.SubElement(view, "datasources")
    ET.SubElement(sources, "datasource", {"caption": DATASOURCE_CAPTION, "name": DATASOURCE})
    dependencies = ET.SubElement(view, "datasource-dependencies", {"datasource": DATASOURCE})
    dimension = D.FIELDS[sheet.dimension]
    dimension_instance = _instance(dimension, "Day" if dimension.datatype == "date" else "None")
    measures = [m for name in sheet.measures for m in _measure_instances(D.MEASURES[name])]
    used_fields = {dimension.column: dimension}
    for field, _ in measures:
        used_fields[field.column] = field
    for filter_ in D.FILTERS:
        used_fields[D.FIELDS[filter_.field].column] = D.FIELDS[filter_.field]
    if CALCULATION in used_fields:
        # A calculation's inputs are dependencies too.
        used_fields["net_revenue_reporting"] = D.FIELDS["net_revenue"]
        used_fields["order_id"] = D.FIELDS["order_id"]
    for column, field in sorted(used_fields.items()):
        attributes = {"caption": field.caption, "datatype": field.datatype, "name": f"[{column}]",
                      "role": field.role, "type": _column_type(field)}
        element = ET.SubElement(dependencies, "column", attributes)
        if column == CALCULATION:
            ET.SubElement(element, "calculation", {"class": "tableau",
                                                   "formula": D.MEASURES["average_order_value"].tableau})
    instances = {dimension_instance}
    instances.update(_instance(field, derivation) for field, derivation in measures)
    instances.update(_instance(D.FIELDS[f.field]) for f in D.FILTERS)
    for name, derivation, kind in sorted(instances):
        column = name.split(":")[1]
        ET.SubElement(dependencies, "column-instance", {"column": f"[{column}]", "derivation": derivation,
                                                        "name": name, "pivot": "key", "type": kind})
    for group, filter_ in enumerate(D.FILTERS, start=1):
        view.append(_filter(filter_, group))
    if sheet.top:
        view.append(_top_filter(sheet))
    ET.SubElement(view, "aggregation", {"value": "true"})
    ET.SubElement(table, "style")
    panes = ET.SubElement(table, "panes")
    pane = ET.SubElement(panes, "pane")
    ET.SubElement(ET.SubElement(pane, "view"), "breakdown", {"value": "auto"})
    ET.SubElement(pane, "mark", {"class": "Line" if sheet.mark == "line" else "Bar"})
    measure_shelf = " + ".join(_qualified(_instance(f, d)[0]) for f, d in measures)
    if len(measures) > 1:
        measure_shelf = f"({measure_shelf})"
    dimension_shelf = _qualified(dimension_instance[0])
    vertical = dimension.datatype == "date"
    ET.SubElement(table, "rows").text = measure_shelf if vertical else dimension_shelf
    ET.SubElement(table, "cols").text = dimension_shelf if vertical else measure_shelf
    _simple_id(worksheet, "worksheet", sheet.name)
    return worksheet


def _dashboard(dashboard: D.Dashboard, zone_ids) -> ET.Element:
    element = ET.Element("dashboard", {"name": dashboard.caption})
    ET.SubElement(element, "style")
    ET.SubElement(element, "size", {"maxheight": "900", "maxwidth": "1400", "minheight": "900", "minwidth": "1400"})
    zones = ET.SubElement(element, "zones")
    root = ET.SubElement(zones, "zone", {"h": "100000", "id": str(next(zone_ids)), "type-v2": "layout-basic",
                                         "w": "100000", "x": "0", "y": "0"})
    filter_height = 12000
    width = 100000 // len(D.FILTERS)
    first_sheet = D.SHEETS[dashboard.sheets[0]].caption
    for index, filter_ in enumerate(D.FILTERS):
        instance, _, _ = _instance(D.FIELDS[filter_.field])
        ET.SubElement(root, "zone", {
            "h": str(filter_height), "id": str(next(zone_ids)), "name": first_sheet,
            "param": _qualified(instance), "type-v2": "filter", "mode": "quantitative" if filter_.kind == "range"
            else "dropdown", "w": str(width), "x": str(index * width), "y": "0"})
    height = (100000 - filter_height) // len(dashboard.sheets)
    for index, name in enumerate(dashboard.sheets):
        ET.SubElement(root, "zone", {"h": str(height), "id": str(next(zone_ids)), "name": D.SHEETS[name].caption,
                                     "w": "100000", "x": "0", "y": str(filter_height + index * height)})
    _simple_id(element, "dashboard", dashboard.name)
    return element


def workbook(live: dict | None) -> bytes:
    """The workbook's XML: live on Synapse (`live` has server, database, schema) or on the
    packaged extract (None)."""
    root = ET.Element("workbook", {"original-version": VERSION, "source-build": SOURCE_BUILD,
                                   "source-platform": "linux", "version": VERSION})
    ET.SubElement(root, "preferences")
    ET.SubElement(root, "datasources").append(_datasource(live))
    worksheets = ET.SubElement(root, "worksheets")
    for sheet in D.SHEETS.values():
        worksheets.append(_worksheet(sheet))
    boards = ET.SubElement(root, "dashboards")
    zone_ids = iter(range(1, 10_000))
    for dashboard in D.DASHBOARDS:
        boards.append(_dashboard(dashboard, zone_ids))
    explain = ET.SubElement(root, "explain-data", {"enabled-for-viewer": "false",
                                                   "extreme-values-enabled-for-all": "false"})
    ET.SubElement(explain, "explanation-types")
    ET.indent(root)
    return b"<?xml version='1.0' encoding='utf-8' ?>\n" + ET.tostring(root, encoding="utf-8") + b"\n"


def extract(connection, path: Path, relation: str = f"analytics_{D.SCHEMA}.{D.SOURCE}") -> int:
    """Writes `relation` as the Hyper file `path` (table Extract.rpt_sales); returns its rows.
    Amounts go as doubles (Tableau's number type); ids as 64-bit integers."""
    import pantab

    columns = sorted(D.columns() | {"line_number"})
    casts = ", ".join(f"CAST({c} AS DOUBLE) AS {c}" if c in ("net_revenue_reporting",) else c for c in columns)
    table = connection.sql(f"SELECT {casts} FROM {relation} ORDER BY order_id, line_number").to_arrow_table()
    pantab.frame_to_hyper(table, path, table=(EXTRACT_SCHEMA, D.SOURCE))
    return table.num_rows


def write_packaged(target: Path, connection) -> Path:
    """`<target>/retail.twbx`: the workbook on its extract of the local marts."""
    target.mkdir(parents=True, exist_ok=True)
    output = target / "retail.twbx"
    with tempfile.TemporaryDirectory() as scratch:
        hyper = Path(scratch) / "retail.hyper"
        extract(connection, hyper)
        temporary = target / ".retail.twbx.tmp"
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("retail.twb", workbook(None))
            archive.write(hyper, EXTRACT_PATH)
        temporary.replace(output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retail_pipeline.tableau",
                                     description="Writes the Tableau workbook live on the Synapse marts.")
    parser.add_argument("--server", default=PLACEHOLDERS["server"], help="<workspace>.sql.azuresynapse.net")
    parser.add_argument("--database", default=PLACEHOLDERS["database"], help="the dedicated SQL pool")
    parser.add_argument("--schema", default=PLACEHOLDERS["schema"],
                        help="the schema dbt builds the marts in (default analytics_marts)")
    parser.add_argument("--output", type=Path, default=Path("retail.twb"))
    args = parser.parse_args(argv)
    args.output.write_bytes(workbook({"server": args.server, "database": args.database, "schema": args.schema}))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

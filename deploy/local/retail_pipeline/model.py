"""`dbt build` of the project in deploy/dbt, target `local`, on the warehouse."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import PipelineError

PROJECT = Path(__file__).resolve().parents[2] / "dbt"
SUMMARY = re.compile(r"Done\. PASS=(\d+) WARN=(\d+) ERROR=(\d+) SKIP=(\d+)(?: NO-OP=\d+)? TOTAL=(\d+)")


@dataclass(frozen=True)
class BuildResult:
    ok: bool
    summary: str
    output: str


def currency_vars(data: Path) -> dict:
    """The shop's reporting currency and the rates of its other currencies, from the run's
    record (`<data>/_run.json`, which holds the run's settings); the dbt defaults without it."""
    record = data / "_run.json"
    if not record.exists():
        return {}
    try:
        settings = dict(json.loads(record.read_text())["settings"])
        currency = settings.get("shop.currency", "USD")
        others = tomllib.loads(f"currencies = {settings.get('shop.currencies', '[]')}")["currencies"]
    except (ValueError, KeyError, TypeError, tomllib.TOMLDecodeError) as error:
        raise PipelineError(f"{record} is not the simulator's run record: {error}") from None
    return {"reporting_currency": currency, "currency_rates": {c["code"]: c["rate"] for c in others}}


def dbt_build(warehouse: Path, state: Path, variables: dict, full_refresh: bool = False) -> BuildResult:
    """Runs `dbt build` in its own process group (Ctrl-C in the terminal waits for it)."""
    dbt = Path(sys.executable).with_name("dbt")
    command = [str(dbt), "build", "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT), "--target", "local",
               "--target-path", str(state / "target"), "--vars", json.dumps(variables)]
    if full_refresh:
        command.append("--full-refresh")
    environment = {**os.environ, "RETAIL_DUCKDB_PATH": str(warehouse), "DBT_LOG_PATH": str(state / "logs"),
                   "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "RETAIL_DBT_TARGET": "local"}
    result = subprocess.run(command, env=environment, capture_output=True, text=True, start_new_session=True)
    output = result.stdout + result.stderr
    match = SUMMARY.search(output)
    summary = (f"PASS={match[1]} WARN={match[2]} ERROR={match[3]} SKIP={match[4]} TOTAL={match[5]}"
               if match else "no summary (see the log)")
    return BuildResult(result.returncode == 0, summary, output)

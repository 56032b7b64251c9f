"""deploy/local/pipeline: load → model → show → reconcile, once or (--watch) as hours complete."""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import time
from pathlib import Path

from . import load as loading
from . import model, page, reconcile
from .errors import PipelineError
from .files import complete_files
from .warehouse import opened

ROOT = Path(__file__).resolve().parents[3]


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deploy/local/pipeline",
        description="Loads the simulator's hourly Avro files into a DuckDB warehouse, builds the dbt models on it "
                    "and writes the dashboards (a page and a Tableau workbook).")
    parser.add_argument("--data", type=Path, default=Path("data"), help="the simulator's --output-dir (default ./data)")
    parser.add_argument("--warehouse", type=Path, default=Path("warehouse/retail.duckdb"),
                        help="the DuckDB file (default ./warehouse/retail.duckdb; created if missing)")
    parser.add_argument("--dashboard", type=Path, default=Path("dashboard"),
                        help="where the page and retail.twbx go (default ./dashboard)")
    parser.add_argument("--watch", action="store_true", help="keep running: load each hour as it completes")
    parser.add_argument("--interval", type=float, default=5.0, help="--watch: seconds between looks (default 5)")
    parser.add_argument("--full-refresh", action="store_true", help="rebuild the incremental models from scratch")
    parser.add_argument("--no-tableau", action="store_true", help="write the page only, not retail.twbx")
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error("--interval must be positive")
    return args


class Stop:
    """Ctrl-C (or SIGTERM) asks the pipeline to stop after the step it is in; a second one
    stops it at once."""

    def __init__(self):
        self.requested = False
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        say("stopping after this step (Ctrl-C again to stop now)")


def say(message: str) -> None:
    print(f"pipeline: {message}", flush=True)


def chart_library() -> Path:
    """The vendored chart library (installed by deploy/local/pipeline from the pinned npm lock)."""
    import os

    web = Path(os.environ.get("RETAIL_PIPELINE_WEB", ROOT / "deploy" / "local" / "web"))
    path = web / "node_modules" / "chart.js" / "dist" / page.CHART_LIBRARY
    if not path.exists():
        raise PipelineError(f"the chart library is missing ({path}): run deploy/local/pipeline, which installs it")
    return path


def cycle(args, stop: Stop, first: bool, reconciled: int) -> int:
    """One pass: load, then (when something is new, and always on the first pass) model, show
    and reconcile; when only the ledger has new hours (the simulator closes an hour's ledger
    beside its files), reconcile again. Returns the number of ledger hours last reconciled."""
    data: Path = args.data
    if not data.is_dir():
        raise PipelineError(f"--data {data}: no such directory (run the simulator first: it writes ./data)")
    files = complete_files(data)
    started = time.monotonic()
    with opened(args.warehouse) as connection:
        report = loading.load(connection, data, files, now=lambda: dt.datetime.now(dt.timezone.utc))
    rows = report.rows
    if report.files or first:
        say(f"load: {len(report.files)} new file(s), {report.skipped} already loaded; rows "
            + (" ".join(f"{k}={v}" for k, v in rows.items()) or "none")
            + f" in {time.monotonic() - started:.0f} s")
    for file_report in report.files:
        if file_report.replaced:
            say(f"replaced {file_report.file.relative}: its content changed since it was loaded; "
                "the rows of the earlier content are gone")
    for file, rejected in report.quarantined:
        say(f"quarantined {file.relative}: {rejected.reason} (kept in raw.rejected_messages)")
    hours = reconcile.hour_count(data)
    if stop.requested:
        return reconciled
    if not report.files and not first:
        if hours != reconciled:
            with opened(args.warehouse, read_only=True) as connection:
                say(reconcile_line(connection, data))
        return hours
    state = args.warehouse.with_suffix(".dbt")
    started = time.monotonic()
    build = model.dbt_build(args.warehouse.resolve(), state.resolve(), model.currency_vars(data),
                            full_refresh=args.full_refresh and first)
    say(f"dbt build: {'ok' if build.ok else 'FAILED'} {build.summary} in {time.monotonic() - started:.0f} s")
    if not build.ok:
        sys.stdout.write(build.output[-4000:])
        raise RuntimeError(f"dbt build failed (log in {state / 'logs'})")
    if stop.requested:
        return reconciled
    with opened(args.warehouse, read_only=True) as connection:
        data_for_page = page.extract(connection)
        written = page.write(args.dashboard, data_for_page, chart_library(),
                             refresh_seconds=max(10, int(args.interval * 2)) if args.watch else None)
        size = sum(p.stat().st_size for p in args.dashboard.iterdir() if p.is_file())
        say(f"dashboard: {written.resolve().as_uri()} ({size / 1e6:.1f} MB with its files)")
        if not args.no_tableau:
            from . import tableau

            workbook = tableau.write_packaged(args.dashboard, connection)
            say(f"tableau: {workbook}")
        say(reconcile_line(connection, data))
    return hours


def reconcile_line(connection, data: Path) -> str:
    result = reconcile.reconcile(connection, data)
    return result.line() if result else "reconcile: no ledger in the data directory (<data>/_ledger)"


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    stop = Stop()
    try:
        first, reconciled = True, -1
        while True:
            reconciled = cycle(args, stop, first, reconciled)
            first = False
            if not args.watch or stop.requested:
                break
            deadline = time.monotonic() + args.interval
            while time.monotonic() < deadline and not stop.requested:
                time.sleep(min(0.2, args.interval))
            if stop.requested:
                break
        if stop.requested:
            say("stopped")
        return 0
    except PipelineError as error:
        print(f"pipeline: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"pipeline: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        say("stopped at once")
        return 130

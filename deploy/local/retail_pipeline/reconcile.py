"""The marts against the simulator's ledger (`<data>/_ledger`, one file per event-time hour,
per replica under `shard=I/`): orders placed, captured, refunded and net revenue, over the
hours the ledger has closed. Captured and refunded come from fct_payments (by the payment's
time, as the ledger counts them), net revenue from fct_orders (the marts' definition)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from .errors import PipelineError


@dataclass(frozen=True)
class Figure:
    name: str
    marts: Decimal | int
    ledger: Decimal | int

    def __str__(self) -> str:
        if self.marts == self.ledger:
            return f"{self.name} {_fmt(self.marts)} = ledger"
        return f"{self.name} {_fmt(self.marts)} ≠ ledger {_fmt(self.ledger)} (marts {_fmt(self.marts - self.ledger, True)})"


def _fmt(value, signed: bool = False) -> str:
    text = f"{value:+,}" if signed else f"{value:,}"
    return text


@dataclass(frozen=True)
class Reconciliation:
    hours: int
    figures: list[Figure]

    @property
    def equal(self) -> bool:
        return all(f.marts == f.ledger for f in self.figures)

    def line(self) -> str:
        verdict = "equal" if self.equal else "DIFFERENT"
        return f"reconcile ({self.hours} ledger hours): {verdict}: " + "; ".join(map(str, self.figures))


LEDGER_HOURS = "**/date=*/hour=*.json"


def hour_count(data: Path) -> int:
    """How many hours the ledger has closed (its files, not read)."""
    return sum(1 for _ in (data / "_ledger").glob(LEDGER_HOURS))


def ledger_hours(data: Path) -> dict[str, dict]:
    """Every closed hour of the ledger, summed over replicas, by `YYYY-MM-DDTHH`."""
    hours: dict[str, dict] = {}
    for path in sorted((data / "_ledger").glob(LEDGER_HOURS)):
        try:
            hour = json.loads(path.read_text())
            start = hour["hour_start"][:13]
            total = hours.setdefault(start, {"orders_placed": 0, "captured": {}, "refunded": {}})
            total["orders_placed"] += int(hour["orders_placed"])
            for kind in ("captured", "refunded"):
                for currency, amount in hour[kind].items():
                    total[kind][currency] = total[kind].get(currency, Decimal(0)) + Decimal(amount)
        except (ValueError, KeyError, TypeError, ArithmeticError) as error:
            raise PipelineError(f"{path} is not a ledger hour of the simulator: {error}") from None
    return hours


def reconcile(connection, data: Path) -> Reconciliation | None:
    """None when the data directory has no ledger."""
    hours = ledger_hours(data)
    if not hours:
        return None
    connection.execute("CREATE OR REPLACE TEMP TABLE ledger_hours (hour VARCHAR)")
    connection.executemany("INSERT INTO ledger_hours VALUES (?)", [[h] for h in hours])
    (orders,) = connection.execute(
        "SELECT count(*) FROM analytics_marts.fct_orders "
        "WHERE strftime(placed_at, '%Y-%m-%dT%H') IN (SELECT hour FROM ledger_hours)").fetchone()
    money = connection.execute(
        "SELECT currency, sum(captured_amount), sum(refunded_amount) FROM analytics_marts.fct_payments "
        "WHERE strftime(occurred_at, '%Y-%m-%dT%H') IN (SELECT hour FROM ledger_hours) GROUP BY currency").fetchall()
    marts = {currency: (captured, refunded) for currency, captured, refunded in money}
    # Revenue as the marts define it: fct_orders.net_revenue of the orders placed in those
    # hours. (While a run goes on, an order's payment can fall in an hour not closed yet.)
    net = dict(connection.execute(
        "SELECT currency, sum(net_revenue) FROM analytics_marts.fct_orders "
        "WHERE strftime(placed_at, '%Y-%m-%dT%H') IN (SELECT hour FROM ledger_hours) GROUP BY currency").fetchall())
    ledger: dict[str, list[Decimal]] = {}
    for hour in hours.values():
        for index, kind in enumerate(("captured", "refunded")):
            for currency, amount in hour[kind].items():
                ledger.setdefault(currency, [Decimal(0), Decimal(0)])[index] += amount
    figures = [Figure("orders placed", orders, sum(h["orders_placed"] for h in hours.values()))]
    for currency in sorted(set(marts) | set(ledger)):
        got = marts.get(currency, (Decimal(0), Decimal(0)))
        want = ledger.get(currency, [Decimal(0), Decimal(0)])
        figures.append(Figure(f"captured {currency}", got[0], want[0]))
        figures.append(Figure(f"refunded {currency}", got[1], want[1]))
        figures.append(Figure(f"net revenue {currency}", net.get(currency, Decimal(0)), want[0] - want[1]))
    return Reconciliation(len(hours), figures)

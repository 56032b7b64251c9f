"""Checks of the retail model's invariants over decoded records, shared by the file and Kafka
checks. Records are dicts as fastavro decodes them (Decimal amounts, datetime times)."""

import collections

TOPICS = ("products", "customers", "orders", "payments")


def check_records(records):
    """Returns a list of violations (empty when every invariant holds)."""
    problems = []
    ids = collections.Counter(str(r["event_id"]) for t in TOPICS for r in records[t])
    duplicated = [i for i, n in ids.items() if n > 1]
    if duplicated:
        problems.append(f"{len(duplicated)} event ids appear more than once")

    # Each product's prices over time: published once, then repriced now and then, perhaps
    # discontinued (once, and replaced by a product published at the same instant).
    prices = collections.defaultdict(list)
    discontinued, published_at, replacements = {}, {}, {}
    by_time = sorted(records["products"], key=lambda p: (p["event_time"], p["event_type"] != "product_discontinued"))
    for p in by_time:
        history = prices[p["product_id"]]
        if p["product_id"] in discontinued:
            problems.append(f"product {p['product_id']}: {p['event_type']} after it was discontinued")
        if (p["event_type"] == "product_published") != (not history):
            problems.append(f"product {p['product_id']}: {p['event_type']} out of turn")
        if p["event_type"] == "product_discontinued":
            discontinued[p["product_id"]] = p["event_time"]
            if p["replaced_by"] is None:
                problems.append(f"product {p['product_id']} discontinued without a replacement")
            else:
                replacements[p["replaced_by"]] = p["event_time"]
            history.append((p["event_time"], None))
            continue
        if p["replaced_by"] is not None:
            problems.append(f"product {p['product_id']}: {p['event_type']} names a replacement")
        if p["event_type"] == "product_published":
            published_at[p["product_id"]] = p["event_time"]
        history.append((p["event_time"], p["unit_price"]))
    for product_id, at in replacements.items():
        if published_at.get(product_id) != at:
            problems.append(f"replacement {product_id} not published when its predecessor was discontinued")

    def price_at(product_id, at):
        """The price in force at `at`, or None before the product was published or once it was
        discontinued."""
        in_force = [price for time, price in prices.get(product_id, []) if time <= at]
        return in_force[-1] if in_force else None

    # Each customer's life: signed up first, then updates (each changing exactly the fields it
    # names), perhaps an erasure (no personal data), after which nothing of theirs follows.
    personal = ("first_name", "last_name", "email", "phone", "street_address", "city", "region",
                "postal_code", "country", "marketing_consent")
    signed_up, erased, current = {}, {}, {}
    for c in sorted(records["customers"], key=lambda c: c["event_time"]):
        cid, kind = c["customer_id"], c["event_type"]
        if kind == "customer_signed_up":
            if cid in signed_up:
                problems.append(f"customer {cid} signed up twice")
            signed_up[cid] = c["event_time"]
            if any(c[f] is None for f in personal) or c["changed_fields"]:
                problems.append(f"customer {cid}: a sign-up without every personal field")
        elif cid not in signed_up or cid in erased:
            problems.append(f"customer {cid}: {kind} before the sign-up or after the erasure")
            continue
        elif kind == "customer_deleted":
            erased[cid] = c["event_time"]
            if any(c[f] is not None for f in personal) or c["changed_fields"]:
                problems.append(f"customer {cid}: an erasure that keeps personal data")
        elif kind == "customer_updated":
            before = current[cid]
            changed = [f for f in personal if c[f] != before[f]]
            if not changed or changed != list(c["changed_fields"]):
                problems.append(f"customer {cid}: changed {changed}, the event says {c['changed_fields']}")
        else:
            problems.append(f"customer {cid}: unknown event type {kind}")
        current[cid] = c
    orders = {}
    placed = [o for o in records["orders"] if o["event_type"] == "order_placed"]
    for o in placed:
        cid = o["customer_id"]
        if cid not in signed_up or signed_up[cid] > o["event_time"]:
            problems.append(f"order {o['order_id']} names customer {cid} not signed up before it")
        if cid in erased and erased[cid] <= o["event_time"]:
            problems.append(f"order {o['order_id']} placed by customer {cid} after their erasure")
        subtotal = sum(line["line_total"] for line in o["items"])
        for line in o["items"]:
            price = price_at(line["product_id"], o["event_time"])
            if price is None:
                problems.append(f"order {o['order_id']} names product {line['product_id']}, not on sale then")
            elif line["unit_price"] != price:
                problems.append(f"order {o['order_id']} line price differs from the catalogue's at that time")
            if line["line_total"] != line["unit_price"] * line["quantity"]:
                problems.append(f"order {o['order_id']} line {line['line_number']} total is wrong")
        if not o["items"]:
            problems.append(f"order {o['order_id']} has no lines")
        if o["subtotal"] != subtotal:
            problems.append(f"order {o['order_id']}: subtotal {o['subtotal']} != sum of lines {subtotal}")
        if o["total"] != o["subtotal"] - o["discount"] + o["tax"] + o["shipping"]:
            problems.append(f"order {o['order_id']}: total does not add up")
        if o["order_id"] in orders:
            problems.append(f"order {o['order_id']} placed twice")
        orders[o["order_id"]] = o

    # Payments, and then the order's life, in time order: authorisation before capture,
    # capture before shipping, refunds only of captured payments, valid status transitions.
    stream = sorted(
        [(o["event_time"], 0 if o["event_type"] == "order_placed" else 1, "order", o) for o in records["orders"]]
        + [(p["event_time"], 2, "payment", p) for p in records["payments"]],
        key=lambda x: (x[0], x[1]),
    )
    transitions = {"placed": {"cancelled", "shipped"}, "shipped": {"delivered"}, "delivered": {"returned"}}
    status, captured, authorized, refunded = {}, {}, {}, set()
    for _, _, kind, e in stream:
        order = orders.get(e["order_id"])
        if order is None or order["event_time"] > e["event_time"]:
            problems.append(f"{kind} {e['event_type']} names order {e['order_id']} not placed before it")
            continue
        if kind == "order":
            if e["event_type"] == "order_placed":
                status[e["order_id"]] = "placed"
                continue
            now = status.get(e["order_id"])
            if e["status"] not in transitions.get(now, set()):
                problems.append(f"order {e['order_id']}: {now} -> {e['status']} is not a valid transition")
            if e["status"] == "shipped" and e["order_id"] not in captured:
                problems.append(f"order {e['order_id']} shipped unpaid")
            if e["items"] or e["total"] != order["total"]:
                problems.append(f"order {e['order_id']}: a status change carries lines or another total")
            status[e["order_id"]] = e["status"]
            continue
        p = e
        if p["amount"] != order["total"]:
            problems.append(f"payment {p['payment_id']} is for {p['amount']}, its order's total is {order['total']}")
        if (p["failure_reason"] is None) == (p["status"] == "declined"):
            problems.append(f"payment {p['payment_id']}: failure_reason does not match status {p['status']}")
        if p["status"] == "authorized":
            authorized[p["payment_id"]] = p
        elif p["status"] == "captured":
            if p["payment_id"] not in authorized:
                problems.append(f"payment {p['payment_id']} captured without an earlier authorisation")
            captured[p["order_id"]] = p["payment_id"]
        elif p["status"] == "refunded":
            if captured.get(p["order_id"]) != p["payment_id"] or p["payment_id"] in refunded:
                problems.append(f"payment {p['payment_id']} refunded without a capture, or twice")
            if status.get(p["order_id"]) not in ("cancelled", "returned"):
                problems.append(f"payment {p['payment_id']} refunded for an order {status.get(p['order_id'])}")
            refunded.add(p["payment_id"])
    return problems


def summary(records, **extra):
    """Counts for the caller to compare with what the simulator reported."""
    result = {
        "records": {t: len(records[t]) for t in TOPICS},
        "event_types": dict(collections.Counter(r["event_type"] for t in TOPICS for r in records[t])),
        "revenue_captured": str(sum(p["amount"] for p in records["payments"] if p["status"] == "captured")),
        "refunded": str(sum(p["amount"] for p in records["payments"] if p["status"] == "refunded")),
    }
    result.update(extra)
    return result

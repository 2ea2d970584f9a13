"""The analyst's one-page campaign report: plain HTML, inline CSS and SVG, nothing else.

It must open from a mail attachment or an object store on a machine without
the pipeline, without network and without JavaScript, so every chart is drawn
here as SVG and every piece of text is escaped (campaign ids, vendor reasons
and keys come from outside).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from html import escape
from typing import Any

#: latency histogram bucket edges, seconds (last bucket open-ended)
LATENCY_EDGES_S: tuple[float, ...] = (0, 10, 30, 60, 120, 300, 900, 3600, 6 * 3600, 86400,
                                      math.inf)

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:76em;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:1.2em 0 .3em}td:first-child{white-space:nowrap}
table{border-collapse:collapse;margin:.5em 0;font-size:.93em}
td,th{padding:.2em .5em;border:1px solid #ddd}
th{background:#f4f4f4;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:bold;background:#fafafa}.muted{color:#777}svg text{font:12px sans-serif}
"""
_BAR = "#3b78b0"
_BAD = "#c0504d"


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else escape(str(value))


def _short(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g}h"
    if seconds >= 60:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def latency_labels(edges: Sequence[float]) -> list[str]:
    """Short bucket names (``<10s``, ``10–30s``, ``15m–1h`` … ``≥24h``): they sit under
    narrow bars."""
    labels = []
    for lo, hi in itertools.pairwise(edges[:-1]):
        a, b = _short(lo), _short(hi)
        labels.append(f"<{b}" if lo == 0 else f"{a[:-1]}–{b}" if a[-1] == b[-1]
                      else f"{a}–{b}")
    return [*labels, f"≥{_short(edges[-2])}"]


def hbar_chart(items: Sequence[tuple[str, int]], *, color: str = _BAR, total: int | None = None,
               width: int = 720) -> str:
    """Horizontal bars, one per (label, value); with ``total`` each shows its share."""
    if not items:
        return '<p class="muted">nothing to show</p>'
    label_w, row_h, value_w = 260, 24, 140
    bar_w = width - label_w - value_w
    top = max(max(v for _, v in items), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{row_h * len(items) + 4}" role="img">']
    for i, (label, value) in enumerate(items):
        y = i * row_h + 2
        w = max(value / top * bar_w, 1 if value else 0)
        share = f" ({value / total:.1%})" if total else ""
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">{escape(label[:40])}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
            f'fill="{color}"><title>{escape(label)}: {value:,}</title></rect>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 16}">{value:,}{share}</text>')
    parts.append("</svg>")
    return "".join(parts)


def column_chart(labels: Sequence[str], counts: Sequence[int], *, width: int = 720,
                 height: int = 200) -> str:
    """Vertical bars (a histogram) with the labels under them."""
    if not any(counts):
        return '<p class="muted">no final reports yet</p>'
    pad, foot = 10, 36
    slot = (width - 2 * pad) / len(counts)
    top = max(counts)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img">']
    plot_h = height - foot - 16
    for i, (label, count) in enumerate(zip(labels, counts, strict=True)):
        h = count / top * plot_h
        x = pad + i * slot
        base = height - foot
        parts.append(
            f'<rect x="{x + 3:.1f}" y="{base - h:.1f}" width="{slot - 6:.1f}" height="{h:.1f}" '
            f'fill="{_BAR}"><title>{escape(label)}: {count:,}</title></rect>'
            f'<text x="{x + slot / 2:.1f}" y="{base - h - 3:.1f}" text-anchor="middle">'
            f'{count:,}</text>'
            f'<text x="{x + slot / 2:.1f}" y="{base + 14}" text-anchor="middle">'
            f'{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
           total: Sequence[Any] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)

    def cells(row: Sequence[Any]) -> str:
        return "".join(f'<td class="n">{_n(v)}</td>' if isinstance(v, int)
                       else f"<td>{escape('' if v is None else str(v))}</td>" for v in row)

    body = "".join(f"<tr>{cells(r)}</tr>" for r in rows)
    if total is not None:
        body += f'<tr class="total">{cells(total)}</tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_SUMMARY_COLUMNS = ("input_rows", "invalid", "valid", "submitted", "rejected", "ambiguous",
                    "not_submitted", "delivered", "failed", "pending", "unknown",
                    "charge_items_submitted")


def render(*, campaign_id: str, generated_at: datetime, totals: Mapping[str, int],
           failure_reasons: Sequence[tuple[str, int]], latency_counts: Sequence[int],
           latency_edges: Sequence[float], summary: Sequence[Mapping[str, Any]],
           discrepancies: Sequence[Mapping[str, Any]], discrepancy_totals: Mapping[str, int],
           final_window_hours: float, money: Sequence[Mapping[str, Any]] = (),
           carriers: Sequence[Mapping[str, Any]] = (),
           carrier_failures: Mapping[str, Sequence[tuple[str, int]]] | None = None,
           balance: Sequence[Mapping[str, Any]] = (),
           attempts: Sequence[Mapping[str, Any]] = ()) -> str:
    """The whole page as one string."""
    sent = totals.get("submitted", 0) + totals.get("ambiguous", 0)
    funnel = [("Input rows", totals.get("input_rows", 0)), ("Valid", totals.get("valid", 0)),
              (f"Submitted (incl. {totals.get('ambiguous', 0):,} ambiguous)", sent),
              ("Delivered", totals.get("delivered", 0))]
    day_rows = [[_day(r.get("day")), *(int(r.get(c) or 0) for c in _SUMMARY_COLUMNS)]
                for r in summary]
    total_row = ["Total", *(int(totals.get(c, 0)) for c in _SUMMARY_COLUMNS)]
    kinds = [[kind, count] for kind, count in discrepancy_totals.items()]
    details = [[d.get("kind"), d.get("conn_id"), d.get("key"), d.get("detail"),
                int(d.get("count") or 0)] for d in discrepancies]
    title = f"Campaign {campaign_id}: reconciliation"
    return "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        # an attempt's page (campaigns/<id>/attempt-2/) is a folder further down
        f'<p><a href="{"../" * (campaign_id.count("/") + 1)}index.html">← all campaigns</a>'
        "</p>",
        f'<p class="muted">Generated {escape(generated_at.isoformat(timespec="seconds"))}. '
        f"A message without a DELIVERED/FAILED report is PENDING for "
        f"{final_window_hours:g} h after submission, then UNKNOWN. Days are China time.</p>",
        "<h2>Funnel</h2>", hbar_chart(funnel, total=totals.get("input_rows", 0) or None),
        _table(["delivered", "failed", "pending", "unknown", "rejected by vendor",
                "not submitted"],
               [[totals.get("delivered", 0), totals.get("failed", 0), totals.get("pending", 0),
                 totals.get("unknown", 0), totals.get("rejected", 0),
                 totals.get("not_submitted", 0)]]),
        _money_section(money, balance),
        _attempts_section(attempts),
        _carrier_section(carriers, carrier_failures or {}),
        "<h2>Failure reasons</h2>", hbar_chart(list(failure_reasons), color=_BAD,
                                               total=totals.get("failed", 0) or None),
        "<h2>Delivery latency</h2>",
        '<p class="muted">From our submission to the vendor\'s final report.</p>',
        column_chart(latency_labels(latency_edges), list(latency_counts)),
        "<h2>Per day</h2>",
        _table(["day", *(c.replace("_", " ") for c in _SUMMARY_COLUMNS)], day_rows, total_row),
        "<h2>Discrepancies</h2>", _table(["kind", "rows"], kinds),
        (_table(["kind", "connection", "key", "detail", "count"], details)
         + '<p class="muted">At most 20 rows per kind here; all of them are in '
           "<code>discrepancies/</code>.</p>") if details
        else "<p>None found.</p>",
        "</body></html>\n",
    ])


def _day(value: date | None) -> str:
    return value.isoformat() if value is not None else "not sent"


def money_text(value: Any, currency: str | None = None, places: int | None = None) -> str:
    """An amount as an analyst reads it: two places, or up to six when it needs them
    (``places``: exactly that many, rounded)."""
    if value is None:
        return "—"
    amount = Decimal(value)
    if places is not None:
        shown = f"{amount:,.{places}f}"
        return f"{shown} {currency}" if currency else shown
    places = amount.normalize().as_tuple().exponent
    shown = f"{amount:,.2f}" if not isinstance(places, int) or places >= -2 else \
        f"{amount:,.{min(6, -places)}f}"
    return f"{shown} {currency}" if currency else shown


def _money_section(money: Sequence[Mapping[str, Any]],
                   balance: Sequence[Mapping[str, Any]]) -> str:
    """Per connection: items, estimate, spend, cost per delivered; then balance steps."""
    if not money:
        return ""
    rows = [[m.get("conn_id"), m.get("vendor"), int(m.get("charge_items") or 0),
             money_text(m.get("estimated_amount"), m.get("currency")),
             money_text(m.get("spend"), m.get("currency")), int(m.get("delivered") or 0),
             money_text(m.get("cost_per_delivered"), m.get("currency"), places=4),
             m.get("balance_unit") or "—"] for m in money]
    parts = ["<h2>Money</h2>",
             '<p class="muted">Each message priced at the price in force on its connection '
             "when it was submitted (the prices file). Estimate: every prepared recipient "
             "at the price of the first submission. — : no price for the connection.</p>",
             _table(["connection", "vendor", "charge items", "estimate", "spend",
                     "delivered", "cost per delivered", "balance kept in"], rows)]
    if balance:
        steps = [[b.get("conn_id"),
                  f"{_stamp(b.get('start_ms'))} → {_stamp(b.get('end_ms'))}",
                  f"{money_text(b.get('before'))} → {money_text(b.get('after'))} "
                  f"{b.get('currency') or 'money' if b.get('unit') == 'money' else 'items'}",
                  "top-up" if b.get("topped_up") else _items(b.get("fall_items")),
                  "top-up" if b.get("topped_up") else money_text(b.get("fall_money"),
                                                                 b.get("currency")),
                  int(b.get("ours_items") or 0), money_text(b.get("ours_money"),
                                                            b.get("currency"))]
                 for b in balance]
        parts += ["<h3>Balance movements</h3>",
                  '<p class="muted">Each fall of the balance between two snapshots beside '
                  "what every campaign on the connection submitted in between. Money "
                  "balances are compared in money, item balances in items.</p>",
                  _table(["connection", "between (UTC)", "balance", "fall (items)",
                          "fall (money)", "we submitted (items)", "we submitted (money)"],
                         steps)]
    return "".join(parts)


def _attempts_section(attempts: Sequence[Mapping[str, Any]]) -> str:
    """With resends: per attempt what it sent, delivered (recovered) and cost."""
    if not attempts:
        return ""
    rows = [[a.get("attempt"), a.get("conn_id"), int(a.get("recipients") or 0),
             int(a.get("sent") or 0), int(a.get("delivered") or 0),
             int(a.get("failed") or 0), int(a.get("open") or 0),
             int(a.get("charge_items") or 0), money_text(a.get("spend"), a.get("currency")),
             money_text(a.get("cost_per_delivered"), a.get("currency"), places=4)]
            for a in attempts]
    recovered = sum(int(a.get("delivered") or 0) for a in attempts if a.get("attempt", 1) > 1)
    spent = [a.get("spend") for a in attempts if a.get("attempt", 1) > 1]
    cost = (money_text(sum(spent, Decimal(0)), attempts[-1].get("currency"))
            if spent and None not in spent else "an amount no price tells")
    return "".join([
        "<h2>Attempts</h2>",
        f"<p>The resends recovered <strong>{recovered:,}</strong> recipient(s) "
        f"for {escape(cost)}. Attempt 1 is the campaign; each later one resent through "
        "its connection what no attempt had delivered and was worth another try. "
        "Every recipient's status across attempts is in <code>final/</code>, each "
        "attempt's row in <code>attempts/</code>.</p>",
        _table(["attempt", "connection", "recipients", "sent", "delivered", "failed",
                "pending/unknown", "charge items", "spend", "cost per delivered"], rows)])


def _items(value: Any) -> str:
    if value is None:
        return "—"
    amount = Decimal(value)
    return f"{amount:,.0f}" if amount == amount.to_integral_value() else f"{amount:,.2f}"


def _stamp(value: Any) -> str:
    if value is None:
        return "—"
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _carrier_section(carriers: Sequence[Mapping[str, Any]],
                     failures: Mapping[str, Sequence[tuple[str, int]]]) -> str:
    """Delivery rate, latency and failure reasons per carrier."""
    if not carriers:
        return ""
    totals: dict[str, dict[str, int]] = {}
    for c in carriers:
        t = totals.setdefault(c["carrier"], {"sent": 0, "delivered": 0})
        t["sent"] += int(c.get("sent") or 0)
        t["delivered"] += int(c.get("delivered") or 0)
    bars = [(name, round(t["delivered"] * 1000 / max(t["sent"], 1)))
            for name, t in totals.items()]
    rows = [[c.get("conn_id"), c.get("carrier"), int(c.get("sent") or 0),
             int(c.get("delivered") or 0), int(c.get("failed") or 0),
             int(c.get("pending") or 0), f"{(c.get('delivery_rate') or 0):.1%}",
             _seconds(c.get("latency_p50_s")), _seconds(c.get("latency_p90_s"))]
            for c in carriers]
    reasons = [[carrier, "; ".join(f"{r} ({n:,})" for r, n in items)]
               for carrier, items in failures.items()]
    return "".join([
        "<h2>Carriers</h2>",
        '<p class="muted">The carrier a number range was assigned to (libphonenumber); '
        "numbers ported since keep their first carrier, so this is an estimate.</p>",
        "<h3>Delivery rate per carrier</h3>",
        percent_chart(bars),
        _table(["connection", "carrier", "sent", "delivered", "failed", "no final report",
                "delivery rate", "latency p50", "latency p90"], rows),
        ("<h3>Failure reasons per carrier</h3>" + _table(["carrier", "commonest reasons"],
                                                         reasons)) if reasons else "",
    ])


def _seconds(value: Any) -> str:
    """A latency as a person reads it: 42 s, 3.5 min, 2.3 h."""
    if value is None:
        return "—"
    seconds = float(value)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def percent_chart(items: Sequence[tuple[str, int]], *, width: int = 720) -> str:
    """Horizontal bars of shares given in tenths of a percent (0..1000), on a 0–100 % axis."""
    if not items:
        return '<p class="muted">nothing to show</p>'
    label_w, row_h, value_w = 160, 24, 80
    bar_w = width - label_w - value_w
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{row_h * len(items) + 4}" role="img" class="chart">']
    for i, (label, tenths) in enumerate(items):
        y = i * row_h + 2
        w = tenths / 1000 * bar_w
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="{row_h - 6}" '
            f'fill="#eee"/>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
            f'fill="{_BAR}"><title>{escape(label)}: {tenths / 10:.1f}%</title></rect>'
            f'<text x="{label_w + bar_w + 6}" y="{y + 16}">{tenths / 10:.1f}%</text>')
    parts.append("</svg>")
    return "".join(parts)

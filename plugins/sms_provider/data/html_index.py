"""The index page: every campaign side by side, and spend and delivery per vendor over time.

Like ``report.html`` it is one file of plain HTML with inline CSS and SVG: no
script, no fonts or styles from elsewhere, so it opens offline and from an
object store. Every text from outside (campaign ids, vendor names) is escaped,
and links are relative (``<campaign>/report.html``), so the folder can move.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Any
from urllib.parse import quote

from sms_provider.data.html_report import _CSS, money_text

CHINA = timedelta(hours=8)
#: one colour per vendor, in order of first appearance (distinguishable, print-safe)
PALETTE = ("#3b78b0", "#e08a2c", "#3a9b5c", "#c0504d", "#7d5ba6", "#8c6d31", "#444")


def _day(moment: datetime | None) -> date | None:
    return (moment.astimezone(UTC) + CHINA).date() if moment is not None else None


def campaigns(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per campaign from its overview rows (one per connection)."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        c = out.setdefault(r["campaign_id"], {
            "campaign_id": r["campaign_id"], "day": None, "vendors": [], "recipients": 0,
            "sent": 0, "delivered": 0, "spend": {}, "discrepancies": 0, "unpriced": False})
        day = _day(r.get("first_submitted_at"))
        if day is not None and (c["day"] is None or day < c["day"]):
            c["day"] = day
        if r.get("vendor") and r["vendor"] not in c["vendors"]:
            c["vendors"].append(r["vendor"])
        for key in ("recipients", "sent", "delivered", "discrepancies"):
            c[key] += int(r.get(key) or 0)
        if r.get("spend") is not None:
            cur = r.get("currency") or ""
            c["spend"][cur] = c["spend"].get(cur, Decimal(0)) + r["spend"]
        elif int(r.get("charge_items") or 0):
            c["unpriced"] = True
    by_id = sorted(out.values(), key=lambda c: c["campaign_id"])
    return sorted(by_id, key=lambda c: c["day"] or date.max, reverse=True)  # newest first


def per_vendor_day(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[date, dict[str, Any]]]:
    """vendor -> China day of first submission -> sent, delivered, spend."""
    out: dict[str, dict[date, dict[str, Any]]] = {}
    for r in rows:
        day = _day(r.get("first_submitted_at"))
        if day is None or not r.get("vendor"):
            continue
        cell = out.setdefault(r["vendor"], {}).setdefault(
            day, {"sent": 0, "delivered": 0, "spend": Decimal(0)})
        cell["sent"] += int(r.get("sent") or 0)
        cell["delivered"] += int(r.get("delivered") or 0)
        cell["spend"] += r.get("spend") or Decimal(0)
    return out


def _nice(top: float) -> float:
    """A round axis maximum at or above ``top`` (1, 2, 2.5 or 5 times a power of ten)."""
    if top <= 0:
        return 1.0
    step = 10.0 ** math.floor(math.log10(top))
    return next(k * step for k in (1, 2, 2.5, 5, 10) if k * step >= top * (1 - 1e-9))


#: up to this many days a chart draws grouped columns (every value readable), beyond it lines
COLUMN_DAYS = 6


def time_chart(series: Mapping[str, Mapping[date, float]], *, y_label: str,
               percent: bool = False) -> str:
    """Per vendor over days: grouped columns for a few days, lines for more."""
    days = {d for values in series.values() for d in values}
    if days and len(days) <= COLUMN_DAYS:
        return column_groups(series, y_label=y_label, percent=percent)
    return line_chart(series, y_label=y_label, percent=percent)


def column_groups(series: Mapping[str, Mapping[date, float]], *, y_label: str,
                  percent: bool = False, width: int = 760, height: int = 260) -> str:
    """One group of columns per day, one column per series, each with its value on top."""
    days = sorted({d for values in series.values() for d in values})
    left, right, top_pad, foot, legend_h = 70, 20, 18, 44, 22
    plot_w, plot_h = width - left - right, height - top_pad - foot - legend_h
    values = [v for s in series.values() for v in s.values()]
    top = 100.0 if percent else _nice(max(values, default=0))
    base = top_pad + legend_h + plot_h
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" class="chart" aria-label="{escape(y_label)}">']
    for k in range(5):
        v = top * k / 4
        y = base - v / top * plot_h
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#e4e4e4"/><text x="{left - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{_axis(v, percent)}</text>')
    parts.append(f'<text x="14" y="{base - plot_h / 2:.0f}" '
                 f'transform="rotate(-90 14 {base - plot_h / 2:.0f})" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    group = plot_w / len(days)
    bar = min(48.0, (group - 16) / max(len(series), 1))
    for j, d in enumerate(days):
        start = left + j * group + (group - bar * len(series)) / 2
        for i, (name, vals) in enumerate(series.items()):
            if d not in vals:
                continue
            h = vals[d] / top * plot_h
            x = start + i * bar
            parts.append(f'<rect x="{x + 2:.1f}" y="{base - h:.1f}" width="{bar - 4:.1f}" '
                         f'height="{h:.1f}" fill="{PALETTE[i % len(PALETTE)]}"><title>'
                         f'{escape(name)} {d.isoformat()}: {_value(vals[d], percent)}</title>'
                         f'</rect><text x="{x + bar / 2:.1f}" y="{base - h - 4:.1f}" '
                         f'text-anchor="middle" font-size="11">{_value(vals[d], percent)}'
                         "</text>")
        parts.append(f'<text x="{left + (j + 0.5) * group:.1f}" y="{base + 18}" '
                     f'text-anchor="middle">{d.isoformat()}</text>')
    for i, name in enumerate(series):
        lx = left + i * 130
        parts.append(f'<rect x="{lx}" y="2" width="12" height="12" '
                     f'fill="{PALETTE[i % len(PALETTE)]}"/>'
                     f'<text x="{lx + 16}" y="12">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _value(v: float, percent: bool) -> str:
    return f"{v:.1f}%" if percent else f"{v:,.2f}"


def line_chart(series: Mapping[str, Mapping[date, float]], *, y_label: str,
               percent: bool = False, width: int = 760, height: int = 260) -> str:
    """One line with markers per series over days; the legend names each series."""
    points = [(d, v) for s in series.values() for d, v in s.items()]
    if not points:
        return '<p class="muted">nothing sent yet</p>'
    left, right, top_pad, foot, legend_h = 70, 50, 14, 44, 22
    plot_w, plot_h = width - left - right, height - top_pad - foot - legend_h
    first, last = min(d for d, _ in points), max(d for d, _ in points)
    span = max((last - first).days, 1)
    top = 100.0 if percent else _nice(max(v for _, v in points))

    def x(d: date) -> float:
        offset = (d - first).days / span if last != first else 0.5
        return left + offset * plot_w

    def y(v: float) -> float:
        return top_pad + legend_h + plot_h - (v / top) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" class="chart" aria-label="{escape(y_label)}">']
    for k in range(5):
        v = top * k / 4
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                     f'stroke="#e4e4e4"/><text x="{left - 6}" y="{y(v) + 4:.1f}" '
                     f'text-anchor="end">{_axis(v, percent)}</text>')
    days = sorted({d for d, _ in points})
    shown = days if len(days) <= 8 else days[:: -(-len(days) // 8)]
    for d in shown:
        parts.append(f'<text x="{x(d):.1f}" y="{height - foot + 18}" text-anchor="middle">'
                     f'{d.isoformat()}</text>')
    parts.append(f'<text x="14" y="{top_pad + legend_h + plot_h / 2:.0f}" '
                 f'transform="rotate(-90 14 {top_pad + legend_h + plot_h / 2:.0f})" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    for i, (name, values) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        # earlier series under later ones, and larger: equal values stay visible as rings
        radius = 4 + 2.5 * (len(series) - 1 - i)
        ordered = sorted(values.items())
        if len(ordered) > 1:
            path = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in ordered)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                         f'stroke-width="2"/>')
        for d, v in ordered:
            parts.append(f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="{radius}" '
                         f'fill="{color}" stroke="#fff">'
                         f'<title>{escape(name)} {d.isoformat()}: {_axis(v, percent)}</title>'
                         f'</circle>')
        lx = left + i * 130
        parts.append(f'<rect x="{lx}" y="2" width="12" height="12" fill="{color}"/>'
                     f'<text x="{lx + 16}" y="12">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _axis(v: float, percent: bool) -> str:
    if percent:
        return f"{v:.0f}%"
    return f"{v:,.0f}" if v >= 10 or v == int(v) else f"{v:,.2f}"


def _spend(spend: Mapping[str, Decimal], unpriced: bool) -> str:
    if not spend:
        return "— (no price)" if unpriced else "—"
    text = ", ".join(money_text(v, c or None) for c, v in sorted(spend.items()))
    return text + (" + unpriced" if unpriced else "")


def _vendor_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Per vendor over every campaign: sent, delivered, spend, cost per delivered."""
    totals: dict[str, dict[str, Any]] = {}
    for r in rows:
        if not r.get("vendor"):
            continue
        t = totals.setdefault(r["vendor"], {"campaigns": set(), "sent": 0, "delivered": 0,
                                            "spend": {}, "priced_delivered": 0})
        t["campaigns"].add(r["campaign_id"])
        t["sent"] += int(r.get("sent") or 0)
        t["delivered"] += int(r.get("delivered") or 0)
        if r.get("spend") is not None:
            cur = r.get("currency") or ""
            t["spend"][cur] = t["spend"].get(cur, Decimal(0)) + r["spend"]
            t["priced_delivered"] += int(r.get("delivered") or 0)
    if not totals:
        return '<p class="muted">nothing sent yet</p>'
    body = []
    for vendor, t in sorted(totals.items()):
        per = (", ".join(money_text(v / t["priced_delivered"], c or None, places=4)
                         for c, v in sorted(t["spend"].items()))
               if t["spend"] and t["priced_delivered"] else "—")
        pct = f"{t['delivered'] / t['sent']:.1%}" if t["sent"] else "—"
        body.append(f"<tr><td>{escape(vendor)}</td><td class=\"n\">{len(t['campaigns']):,}</td>"
                    f"<td class=\"n\">{t['sent']:,}</td><td class=\"n\">{pct}</td>"
                    f"<td class=\"n\">{escape(_spend(t['spend'], False))}</td>"
                    f"<td class=\"n\">{escape(per)}</td></tr>")
    return ("<table><thead><tr><th>vendor</th><th>campaigns</th><th>sent</th>"
            "<th>delivered %</th><th>spend</th><th>cost per delivered</th></tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def render(rows: Sequence[Mapping[str, Any]], *, generated_at: datetime) -> str:
    """The whole index page as one string."""
    listed = campaigns(rows)
    by_vendor = per_vendor_day(rows)
    currencies = {r.get("currency") for r in rows if r.get("spend") is not None}
    unit = next(iter(currencies)) if len(currencies) == 1 else "mixed currencies"
    spend = {v: {d: float(c["spend"]) for d, c in days.items()} for v, days in by_vendor.items()}
    rate = {v: {d: 100.0 * c["delivered"] / c["sent"] for d, c in days.items() if c["sent"]}
            for v, days in by_vendor.items()}
    body = []
    for c in listed:
        link = f'{quote(c["campaign_id"])}/report.html'
        pct = f"{c['delivered'] / c['sent']:.1%}" if c["sent"] else "—"
        flag = (f'<td class="n bad">{c["discrepancies"]:,}</td>' if c["discrepancies"]
                else '<td class="n">0</td>')
        body.append(
            f'<tr><td><a href="{escape(link)}">{escape(c["campaign_id"])}</a></td>'
            f'<td>{c["day"].isoformat() if c["day"] else "not sent"}</td>'
            f'<td>{escape(", ".join(c["vendors"]) or "—")}</td>'
            f'<td class="n">{c["recipients"]:,}</td><td class="n">{c["sent"]:,}</td>'
            f'<td class="n">{pct}</td><td class="n">{escape(_spend(c["spend"], c["unpriced"]))}'
            f"</td>{flag}</tr>")
    table = ("<table><thead><tr><th>campaign</th><th>date (China)</th><th>vendor(s)</th>"
             "<th>recipients</th><th>sent</th><th>delivered %</th><th>spend</th>"
             "<th>discrepancies</th></tr></thead><tbody>" + "".join(body)
             + "</tbody></table>") if body else "<p>No campaign reconciled yet.</p>"
    vendors = _vendor_table(rows)
    return "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f"<title>SMS campaigns</title><style>{_CSS}td.bad{{color:#c0504d;font-weight:bold}}"
        "</style></head><body>",
        "<h1>SMS campaigns</h1>",
        f'<p class="muted">Generated {escape(generated_at.isoformat(timespec="seconds"))}. '
        f"{len(listed):,} campaign(s). Delivered: share of the messages sent (submitted or "
        "ambiguous) with a DELIVERED report. Spend: charge items at the price in force when "
        "sent. Days are China time, by a campaign's first submission.</p>",
        "<h2>Campaigns</h2>", table,
        "<h2>Per vendor, all campaigns</h2>", vendors,
        f"<h2>Spend per vendor per day ({escape(unit)})</h2>",
        time_chart(spend, y_label=f"spend ({unit})"),
        "<h2>Delivery rate per vendor per day</h2>",
        time_chart(rate, y_label="delivered / sent", percent=True),
        "</body></html>\n",
    ])

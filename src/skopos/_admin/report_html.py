"""``skopos report --html FILE``: one self-contained page, charts drawn as inline SVG.

No script, no font, no stylesheet or image from anywhere: the CSS is inline and every chart
is SVG generated here, so the file can be mailed, archived or opened offline, and opening it
makes no request at all (not even for a favicon).

Example::

    Path("report.html").write_text(render_html(report), encoding="utf-8")
"""

from __future__ import annotations

import math
from html import escape

from skopos._admin.metrics import BREAKDOWN_TITLES, Count, DailyPoint, Metrics
from skopos._admin.report import Report
from skopos._admin.report_render import format_duration
from skopos._version import __version__

__all__ = ["daily_chart_svg", "donut_svg", "render_html"]

_VISITORS = "#2563eb"
_VIEWS = "#db2777"
_CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
 color:#0f172a;background:#f1f5f9}
main{max-width:1120px;margin:0 auto;padding:24px}
header{display:flex;justify-content:space-between;align-items:flex-end;flex-wrap:wrap;gap:8px}
h1{font-size:22px;margin:0}
h2{font-size:15px;margin:0 0 10px}
.muted{color:#64748b}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:12px;
 margin:18px 0}
.card,.panel{background:#fff;border-radius:10px;box-shadow:0 1px 2px rgba(15,23,42,.08);
 padding:14px}
.card .label{color:#64748b;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:24px;font-weight:650;margin-top:2px}
.card .note{color:#64748b;font-size:12px}
.row{display:grid;grid-template-columns:2fr 1fr;gap:12px;margin-bottom:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px}
table{width:100%;border-collapse:collapse}
td{padding:3px 0;vertical-align:middle}
td.key{max-width:200px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;
 padding-right:8px}
td.num{text-align:right;white-space:nowrap;width:1%;padding-left:8px}
td.bar{width:38%}
.bar span{display:block;height:10px;border-radius:5px;background:#22c55e}
.legend span{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 12px}
svg text{font:11px system-ui,sans-serif;fill:#64748b}
footer{margin-top:18px;color:#94a3b8;font-size:12px}
@media (max-width:720px){.row{grid-template-columns:1fr}}
"""


def _nice_top(value: int) -> int:
    """A round axis maximum at or above ``value``."""
    if value <= 4:
        return 4
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        top = int(step * magnitude)
        if top >= value:
            return top
    return value


def daily_chart_svg(points: list[DailyPoint], *, width: int = 720, height: int = 240) -> str:
    """Visitors as bars and page views as a line, one slot per day, each on its own scale.

    >>> "<svg" in daily_chart_svg([DailyPoint(__import__("datetime").date(2026, 1, 1), 2, 5)])
    True
    """
    left, right, top, bottom = 40, 40, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    slots = max(1, len(points))
    slot = plot_w / slots
    top_v = _nice_top(max((p.visitors for p in points), default=0))
    top_p = _nice_top(max((p.page_views for p in points), default=0))
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img"'
        ' aria-label="Visitors and page views per day" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e2e8f0"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{top_v * i // 4}</text>'
        )
        parts.append(f'<text x="{width - right + 6}" y="{y + 4:.1f}">{top_p * i // 4}</text>')
    every = max(1, math.ceil(slots / 12))  # at most ~12 date labels
    line: list[str] = []
    for index, point in enumerate(points):
        x = left + index * slot
        bar_h = plot_h * point.visitors / top_v
        parts.append(
            f'<rect x="{x + slot * 0.15:.1f}" y="{top + plot_h - bar_h:.1f}"'
            f' width="{slot * 0.7:.1f}" height="{bar_h:.1f}" rx="2" fill="{_VISITORS}"'
            f' opacity="0.85"><title>{point.day}: {point.visitors} visitors,'
            f" {point.page_views} page views</title></rect>"
        )
        cy = top + plot_h - plot_h * point.page_views / top_p
        line.append(f"{x + slot / 2:.1f},{cy:.1f}")
        if index % every == 0:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                f"{point.day:%m-%d}</text>"
            )
    if line:
        parts.append(
            f'<polyline points="{" ".join(line)}" fill="none" stroke="{_VIEWS}"'
            ' stroke-width="2.5" stroke-linejoin="round"/>'
        )
        for xy in line:
            x_text, y_text = xy.split(",")
            parts.append(f'<circle cx="{x_text}" cy="{y_text}" r="3" fill="{_VIEWS}"/>')
    parts.append("</svg>")
    return "".join(parts)


def donut_svg(parts: list[tuple[str, int, str]], *, size: int = 160) -> str:
    """A ring cut into ``(label, value, colour)`` slices, the total in the middle.

    >>> donut_svg([("new", 3, "#000"), ("returning", 1, "#fff")]).count("<circle")
    3
    """
    total = sum(value for _, value, _ in parts)
    radius, stroke = size / 2 - 14, 22
    circumference = 2 * math.pi * radius
    centre = size / 2
    out = [
        f'<svg viewBox="0 0 {size} {size}" width="{size}" height="{size}" role="img"'
        ' xmlns="http://www.w3.org/2000/svg">',
        f'<circle cx="{centre}" cy="{centre}" r="{radius:.1f}" fill="none" stroke="#e2e8f0"'
        f' stroke-width="{stroke}"/>',
    ]
    offset = 0.0
    for label, value, colour in parts:
        length = circumference * value / total if total else 0.0
        out.append(
            f'<circle cx="{centre}" cy="{centre}" r="{radius:.1f}" fill="none"'
            f' stroke="{colour}" stroke-width="{stroke}"'
            f' stroke-dasharray="{length:.2f} {circumference - length:.2f}"'
            f' stroke-dashoffset="{-offset:.2f}" transform="rotate(-90 {centre} {centre})">'
            f"<title>{escape(label)}: {value}</title></circle>"
        )
        offset += length
    out.append(
        f'<text x="{centre}" y="{centre + 6}" text-anchor="middle"'
        f' style="font-size:18px;fill:#0f172a">{total:,}</text></svg>'
    )
    return "".join(out)


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "-"


def _card(label: str, value: str, note: str = "") -> str:
    return (
        f'<div class="card"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div><div class="note">{escape(note)}</div></div>'
    )


def _breakdown(title: str, rows: list[Count], whole: int, limit: int | None) -> str:
    top = rows[0].count if rows else 0
    body = []
    for row in rows[:limit]:
        width = 100 * row.count / top if top else 0
        body.append(
            f'<tr><td class="key" title="{escape(row.key)}">{escape(row.key)}</td>'
            f'<td class="bar"><span style="width:{width:.1f}%"></span></td>'
            f'<td class="num">{row.count:,}</td>'
            f'<td class="num muted">{_percent(row.count, whole)}</td></tr>'
        )
    if not rows:
        body.append('<tr><td class="muted">none</td></tr>')
    elif limit is not None and len(rows) > limit:
        body.append(f'<tr><td class="muted">… {len(rows) - limit:,} more</td></tr>')
    return (
        f'<section class="panel"><h2>{escape(title)}</h2><table>{"".join(body)}</table></section>'
    )


def _cards(metrics: Metrics) -> str:
    return "".join(
        [
            _card("Visitors", f"{metrics.visitors:,}", f"{metrics.distinct_visitors:,} distinct"),
            _card("Page views", f"{metrics.page_views:,}"),
            _card(
                "Bounce rate",
                f"{metrics.bounce_rate:.0%}",
                f"{metrics.bounced_sessions:,} sessions",
            ),
            _card(
                "Engagement",
                f"{metrics.engagement_rate:.0%}",
                f"{metrics.engaged_sessions:,} sessions",
            ),
            _card("Avg. session", format_duration(metrics.avg_session_duration)),
            _card("JS errors", f"{metrics.js_errors:,}", f"{len(metrics.errors):,} distinct"),
        ]
    )


def render_html(report: Report, *, limit: int | None = 10) -> str:
    """The whole page for ``report``, as one string of HTML.

    Example::

        Path("week.html").write_text(render_html(report, limit=20), encoding="utf-8")
    """
    metrics, period, site = report.metrics, report.period, report.site
    title = f"Skopos report: {site.name or site.domain or site.tracking_id}"
    span = f"{period.start:%Y-%m-%d %H:%M} → {period.end:%Y-%m-%d %H:%M} {period.timezone_name}"
    wholes = {"top_pages": metrics.page_views, "errors": metrics.js_errors}
    breakdowns = "".join(
        _breakdown(BREAKDOWN_TITLES[name], rows, wholes.get(name, metrics.visitors), limit)
        for name, rows in metrics.breakdowns().items()
    )
    donut = donut_svg(
        [
            ("new", metrics.new_visitors, _VISITORS),
            ("returning", metrics.returning_visitors, "#f59e0b"),
        ]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="icon" href="data:,">
<title>{escape(title)}</title><style>{_CSS}</style></head>
<body><main>
<header><div><h1>{escape(title)}</h1>
<div class="muted">{escape(site.domain)} · tracking id {escape(site.tracking_id)}</div></div>
<div class="muted">{escape(span)}</div></header>
<div class="cards">{_cards(metrics)}</div>
<div class="row">
<section class="panel"><h2>Visitors and page views per day</h2>
<div class="legend muted"><span style="background:{_VISITORS}"></span>visitors (left axis)
<span style="background:{_VIEWS}"></span>page views (right axis)</div>
{daily_chart_svg(metrics.daily)}</section>
<section class="panel"><h2>New and returning</h2>{donut}
<div class="legend muted"><span style="background:{_VISITORS}"></span>new
{metrics.new_visitors:,}<span style="background:#f59e0b"></span>returning
{metrics.returning_visitors:,}</div></section>
</div>
<div class="grid">{breakdowns}</div>
<footer>Generated {report.generated_at:%Y-%m-%d %H:%M} by skopos {escape(__version__)}
with the Skopos Dashboard's definitions.</footer>
</main></body></html>
"""

"""``skopos report`` in the terminal: headline cards, a daily chart and breakdown tables (rich).

Example::

    from rich.console import Console
    render_report(report, Console(), limit=10)
"""

from __future__ import annotations

from rich import box
from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from skopos._admin.metrics import BREAKDOWN_TITLES, Count, DailyPoint, Metrics
from skopos._admin.report import Report

__all__ = ["format_duration", "render_report", "sparkline"]

_SPARKS = "▁▂▃▄▅▆▇█"
_BAR = "█"
_PARTIAL = " ▏▎▍▌▋▊▉"


def format_duration(seconds: float) -> str:
    """Seconds as the dashboard shows them, ``mm:ss`` (``h:mm:ss`` past an hour).

    >>> format_duration(75.4), format_duration(3725)
    ('01:15', '1:02:05')
    """
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def sparkline(values: list[int]) -> str:
    """One block character per value, scaled to the largest.

    >>> sparkline([0, 1, 2, 4])
    '▁▃▅█'
    """
    top = max(values, default=0)
    if top <= 0:
        return _SPARKS[0] * len(values)
    return "".join(_SPARKS[min(7, round(v / top * 7))] for v in values)


def _bar(value: int, top: int, width: int) -> str:
    if top <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / top * width * 8))
    full, part = divmod(eighths, 8)
    return _BAR * full + (_PARTIAL[part] if part else "")


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "-"


def _cards(metrics: Metrics) -> RenderableType:
    cards = [
        ("Visitors", f"{metrics.visitors:,}", f"{metrics.distinct_visitors:,} distinct"),
        (
            "New / returning",
            f"{metrics.new_visitors:,} / {metrics.returning_visitors:,}",
            f"{_percent(metrics.new_visitors, metrics.visitors)} new",
        ),
        ("Page views", f"{metrics.page_views:,}", ""),
        ("Bounce rate", f"{metrics.bounce_rate:.0%}", f"{metrics.bounced_sessions:,} sessions"),
        ("Engagement", f"{metrics.engagement_rate:.0%}", f"{metrics.engaged_sessions:,} sessions"),
        ("Avg. session", format_duration(metrics.avg_session_duration), ""),
        ("JS errors", f"{metrics.js_errors:,}", f"{len(metrics.errors):,} distinct"),
    ]
    panels = [
        Panel(
            Group(Text(value, style="bold cyan"), Text(note, style="dim")),
            title=title,
            title_align="left",
            box=box.ROUNDED,
            width=22,
        )
        for title, value, note in cards
    ]
    return Columns(panels, padding=(0, 1))


def _daily(points: list[DailyPoint]) -> RenderableType:
    visitors = [p.visitors for p in points]
    views = [p.page_views for p in points]
    table = Table(box=box.SIMPLE_HEAD, title="Daily", title_justify="left", expand=False)
    table.add_column("day")
    table.add_column("visitors", justify="right")
    table.add_column("", style="cyan", min_width=20)
    table.add_column("page views", justify="right")
    table.add_column("", style="magenta", min_width=20)
    top_v, top_p = max(visitors, default=0), max(views, default=0)
    shown = points[-31:]  # a long period keeps its last month here; the sparklines cover all
    for point in shown:
        table.add_row(
            point.day.strftime("%a %Y-%m-%d"),
            f"{point.visitors:,}",
            _bar(point.visitors, top_v, 20),
            f"{point.page_views:,}",
            _bar(point.page_views, top_p, 20),
        )
    lines = Text()
    lines.append("visitors   ", style="bold")
    lines.append(sparkline(visitors), style="cyan")
    lines.append("\npage views ", style="bold")
    lines.append(sparkline(views), style="magenta")
    return Group(table, lines)


def _breakdown(title: str, rows: list[Count], whole: int, limit: int | None) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", width=60)
    table.add_column("", ratio=1, overflow="ellipsis", no_wrap=True)
    table.add_column("count", justify="right")
    table.add_column("share", justify="right", style="dim")
    table.add_column("", style="green", width=12)
    top = rows[0].count if rows else 0
    for row in rows[:limit]:
        table.add_row(
            row.key, f"{row.count:,}", _percent(row.count, whole), _bar(row.count, top, 12)
        )
    if not rows:
        table.add_row(Text("none", style="dim"), "", "", "")
    elif limit is not None and len(rows) > limit:
        table.add_row(Text(f"… {len(rows) - limit:,} more", style="dim"), "", "", "")
    return table


def render_report(report: Report, console: Console, *, limit: int | None = 10) -> None:
    """Print ``report`` for people: cards, the daily chart, then every breakdown.

    Example::

        render_report(read_report(client, site, Period.last("7d")), Console(), limit=5)
    """
    metrics = report.metrics
    period = report.period
    site = report.site
    heading = Text()
    heading.append(site.name or site.domain or site.tracking_id, style="bold")
    if site.domain:
        heading.append(f"  {site.domain}", style="dim")
    heading.append(f"  (tracking id {site.tracking_id})\n", style="dim")
    heading.append(
        f"{period.start:%Y-%m-%d %H:%M} → {period.end:%Y-%m-%d %H:%M} {period.timezone_name}"
    )
    console.print(Panel(heading, title="Skopos report", title_align="left", box=box.HEAVY))
    console.print(_cards(metrics))
    console.print(_daily(metrics.daily))
    wholes = {
        "top_pages": metrics.page_views,
        "errors": metrics.js_errors,
    }
    tables = [
        _breakdown(BREAKDOWN_TITLES[name], rows, wholes.get(name, metrics.visitors), limit)
        for name, rows in metrics.breakdowns().items()
    ]
    console.print(Columns(tables, padding=(0, 2)))
    console.print(
        Text(
            "Numbers follow the Skopos Dashboard's definitions; `--json` for machines,"
            " `--html FILE` for a page.",
            style="dim",
        )
    )

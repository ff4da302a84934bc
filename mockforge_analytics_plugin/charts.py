"""Server-side SVG charts drawn from data: line/area, horizontal bars and the 7 x 24 heatmap.

Every chart is a self-contained ``<svg>`` (no script, no external reference) returned as
``markupsafe.Markup``; all text that reaches it is escaped here. Colours come from CSS classes
(``c0``..``c5``, ``axis``, ``grid``...) and ``currentColor`` so light and dark themes both work.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = [
    "DAY_NAMES",
    "Series",
    "bar_chart",
    "format_value",
    "heatmap",
    "line_chart",
    "nice_ticks",
]

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # day_of_week 0 = Monday (ISO)
_TIME_STEPS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)
_PALETTE = 6  # number of series colour classes defined in app.css


@dataclass(frozen=True, slots=True)
class Series:
    """One named line: (unix seconds, value or None for a gap) points in time order."""

    label: str
    points: Sequence[tuple[float, float | None]]


def format_value(value: float | None, unit: str = "") -> str:
    """Format a number for people: thousands separators, at most 3 significant decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2013"  # en dash: no value
    if float(value).is_integer() and abs(value) < 1e15:
        text = f"{int(value):,}"
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) >= 1 else f"{value:.2g}"
    return f"{text} {unit}".rstrip() if unit and unit != "%" else f"{text}{unit}"


def _short(value: float) -> str:
    """A compact number for small spaces (heatmap cells, tick labels): 950, 1.2k, 3.4M."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}".rstrip("0").rstrip(".") + suffix
    return format_value(value)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2, 2.5, 5 x 10^n steps), at least two."""
    if not math.isfinite(low) or not math.isfinite(high):
        low, high = 0.0, 1.0
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks: list[float] = []
    value = start
    while value < high + step * 0.5 and len(ticks) < 50:
        ticks.append(round(value, 10))
        value += step
    if len(ticks) < 2:
        ticks.append(round(start + step, 10))
    return ticks


def _time_label(ts: float, step: int, span: float) -> str:
    """Tick label in UTC: clock time for short ranges, the date once a range spans days."""
    t = time.gmtime(ts)
    if step >= 86400:
        return time.strftime("%m-%d", t)
    if span > 86400:
        return time.strftime("%m-%d %H:%M", t)
    return time.strftime("%H:%M", t)


def _time_ticks(t0: float, t1: float, max_ticks: int = 6) -> list[tuple[float, str]]:
    """Aligned UTC time ticks within [t0, t1] with their labels."""
    span = max(t1 - t0, 1)
    step = next((s for s in _TIME_STEPS if span / s <= max_ticks), _TIME_STEPS[-1])
    first = math.ceil(t0 / step) * step
    ticks: list[tuple[float, str]] = []
    ts: float = first
    while ts <= t1 and len(ticks) < max_ticks + 1:
        ticks.append((ts, _time_label(ts, step, span)))
        ts += step
    return ticks or [(t0, _time_label(t0, step, span))]


def _title_block(title: str, desc: str, uid: str) -> str:
    """The accessible name and description every chart carries."""
    return f'<title id="{uid}-t">{escape(title)}</title><desc id="{uid}-d">{escape(desc)}</desc>'


def _uid(kind: str, title: str) -> str:
    """A stable id fragment so several charts on one page do not clash."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")[:24]
    return f"{kind}-{slug or 'chart'}"


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    unit: str = "",
    width: int = 480,
    height: int = 250,
    area: bool = False,
    y_label: str | None = None,
) -> Markup:
    """A multi-series time chart with axes, ticks, units, a legend and a hover title per point."""
    uid = _uid("line", title)
    values = [v for s in series for _, v in s.points if v is not None]
    times = [t for s in series for t, _ in s.points]
    if not times:
        return _empty_svg(title, uid, width, height)
    left, right, top, legend_h = 56, 12, 12, 22 * math.ceil(len(series) / 3)
    bottom = 40 + legend_h
    plot_w, plot_h = width - left - right, height - top - bottom
    t0, t1 = min(times), max(times)
    if t1 == t0:
        t0, t1 = t0 - 30, t1 + 30
    ticks = nice_ticks(0.0, max(values) if values else 1.0)
    y_max = ticks[-1] or 1.0

    def x_of(ts: float) -> float:
        return left + (ts - t0) / (t1 - t0) * plot_w

    def y_of(value: float) -> float:
        return top + plot_h - value / y_max * plot_h

    unit_txt = f" ({unit})" if unit else ""
    desc = f"{len(series)} series over time (UTC); y axis {y_label or title}{unit_txt}."
    out = [
        f'<svg class="chart line-chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{uid}-t {uid}-d" xmlns="http://www.w3.org/2000/svg">',
        _title_block(title, desc, uid),
        '<g class="grid">',
    ]
    for tick in ticks:
        y = y_of(tick)
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>')
    out.append('</g><g class="axis y-axis">')
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"/>')
    for tick in ticks:
        out.append(
            f'<text x="{left - 6}" y="{y_of(tick) + 4:.1f}" text-anchor="end">{escape(_short(tick))}</text>'
        )
    out.append(
        f'<text class="axis-label" x="12" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape((y_label or "") + unit_txt)}</text>'
    )
    out.append('</g><g class="axis x-axis">')
    base = top + plot_h
    out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{base}" y2="{base}"/>')
    for ts, label in _time_ticks(t0, t1):
        x = x_of(ts)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}"/>')
        out.append(f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle">{escape(label)}</text>')
    out.append(
        f'<text class="axis-label" x="{left + plot_w}" y="{base + 30}" text-anchor="end">time (UTC)</text>'
    )
    out.append("</g>")
    for i, s in enumerate(series):
        out.append(_series_svg(s, i, unit, x_of, y_of, base, area))
    out.append(_legend(series, left, height - legend_h + 4, plot_w))
    out.append("</svg>")
    return Markup("".join(out))


def _series_svg(
    s: Series,
    i: int,
    unit: str,
    x_of: Callable[[float], float],
    y_of: Callable[[float], float],
    base: float,
    area: bool,
) -> str:
    """One series: its path (broken at gaps), optional area and one titled dot per value."""
    cls = f"c{i % _PALETTE}"
    runs: list[list[tuple[float, float]]] = [[]]
    dots = []
    for ts, value in s.points:
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        x, y = x_of(ts), y_of(value)
        runs[-1].append((x, y))
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))
        tip = f"{s.label} · {when}: {format_value(value, unit)}"
        dots.append(
            f'<circle class="pt {cls}" cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{escape(tip)}</title></circle>'
        )
    parts = [f'<g class="series {cls}" data-series="{escape(s.label)}">']
    for run in runs:
        if not run:
            continue
        d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in run)
        if area and len(run) > 1:
            closing = f"L{run[-1][0]:.1f},{base} L{run[0][0]:.1f},{base} Z"
            parts.append(f'<path class="area {cls}" d="{d} {closing}"/>')
        parts.append(f'<path class="line {cls}" d="{d}"/>')
    parts.extend(dots)
    parts.append("</g>")
    return "".join(parts)


def _legend(series: Sequence[Series], left: float, y: float, plot_w: float) -> str:
    """Swatch + label per series, three per row."""
    out = ['<g class="legend">']
    col_w = plot_w / 3
    for i, s in enumerate(series):
        x = left + (i % 3) * col_w
        row_y = y + (i // 3) * 22
        out.append(
            f'<rect class="swatch c{i % _PALETTE}" x="{x:.1f}" y="{row_y:.1f}" width="12" height="12"/>'
            f'<text x="{x + 18:.1f}" y="{row_y + 10:.1f}">{escape(s.label)}</text>'
        )
    out.append("</g>")
    return "".join(out)


def _empty_svg(title: str, uid: str, width: int, height: int) -> Markup:
    """A chart frame that says there is nothing to draw."""
    return Markup(
        f'<svg class="chart empty" viewBox="0 0 {width} {height // 3}" role="img" '
        f'aria-labelledby="{uid}-t {uid}-d" xmlns="http://www.w3.org/2000/svg">'
        f"{_title_block(title, 'No data in this window.', uid)}"
        f'<text x="{width / 2}" y="{height // 6}" text-anchor="middle">No data in this window</text></svg>'
    )


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    unit: str = "",
    width: int = 480,
    classes: Sequence[str] | None = None,
) -> Markup:
    """Horizontal bars, one per (label, value), with the value and share on hover and in text."""
    uid = _uid("bar", title)
    if not items:
        return _empty_svg(title, uid, width, 180)
    row_h, label_w, value_w = 24, 120, 90
    height = row_h * len(items) + 8
    bar_w = width - label_w - value_w
    total = sum(v for _, v in items) or 1
    top = max(v for _, v in items) or 1
    desc = f"{len(items)} bars; values in {unit or 'counts'}."
    out = [
        f'<svg class="chart bar-chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{uid}-t {uid}-d" xmlns="http://www.w3.org/2000/svg">',
        _title_block(title, desc, uid),
    ]
    for i, (label, value) in enumerate(items):
        y = 4 + i * row_h
        w = max(value / top * bar_w, 1 if value else 0)
        cls = classes[i] if classes and i < len(classes) else f"c{i % _PALETTE}"
        tip = f"{label}: {format_value(value, unit)} ({value / total * 100:.1f}%)"
        shown = label if len(label) <= 18 else label[:17] + "…"
        out.append(
            f'<g class="bar-row"><title>{escape(tip)}</title>'
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">{escape(shown)}</text>'
            f'<rect class="bar {escape(cls)}" x="{label_w}" y="{y + 3}" '
            f'width="{w:.1f}" height="{row_h - 6}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 16}">{escape(format_value(value, unit))}</text></g>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def heatmap(
    cells: Iterable[Mapping[str, object]],
    *,
    title: str = "Requests by hour (UTC) and weekday",
    value_key: str = "request_count",
    unit: str = "requests",
) -> Markup:
    """The 7 x 24 hour-by-weekday grid (row 0 = Monday) with a legend and a value in every cell."""
    uid = _uid("heat", title)
    grid = [[0.0] * 24 for _ in range(7)]
    for cell in cells:
        day, hour = int(cell["day_of_week"]), int(cell["hour"])  # type: ignore[call-overload]
        if 0 <= day < 7 and 0 <= hour < 24:
            grid[day][hour] += float(cell.get(value_key) or 0)  # type: ignore[arg-type]
    peak = max(max(row) for row in grid)
    cw, ch, left, top = 30, 24, 40, 20
    width, height = left + 24 * cw + 4, top + 7 * ch + 44
    desc = f"7 rows (Monday first) by 24 hour columns; peak {format_value(peak)} {unit}."
    out = [
        f'<svg class="chart heatmap" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{uid}-t {uid}-d" xmlns="http://www.w3.org/2000/svg">',
        _title_block(title, desc, uid),
        '<g class="axis">',
    ]
    for hour in range(0, 24, 3):
        hx = left + hour * cw + cw / 2
        out.append(f'<text x="{hx}" y="{top - 6}" text-anchor="middle">{hour:02d}h</text>')
    for day, name in enumerate(DAY_NAMES):
        out.append(f'<text x="{left - 6}" y="{top + day * ch + ch / 2 + 4}" text-anchor="end">{name}</text>')
    out.append("</g>")
    for day in range(7):
        for hour in range(24):
            value = grid[day][hour]
            level = value / peak if peak else 0.0
            x, y = left + hour * cw, top + day * ch
            label = f"{DAY_NAMES[day]} {hour:02d}:00 UTC: {format_value(value)} {unit}"
            text_cls = "cell-text strong" if level > 0.55 else "cell-text"
            out.append(
                f'<g class="cell" aria-label="{escape(label)}"><title>{escape(label)}</title>'
                f'<rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" '
                f'fill-opacity="{0.06 + 0.94 * level:.2f}"/>'
                f'<text class="{text_cls}" x="{x + cw / 2 - 1}" y="{y + ch / 2 + 3}" '
                f'text-anchor="middle">{escape(_short(value)) if value else ""}</text></g>'
            )
    out.append(_heat_legend(left, top + 7 * ch + 14, peak, unit))
    out.append("</svg>")
    return Markup("".join(out))


def _heat_legend(x: float, y: float, peak: float, unit: str) -> str:
    """Five swatches from zero to the peak value."""
    out = ['<g class="legend heat-legend">', f'<text x="{x}" y="{y + 11}">0</text>']
    for i in range(5):
        level = (i + 1) / 5
        out.append(
            f'<rect class="cell-swatch" x="{x + 16 + i * 22}" y="{y}" width="20" height="14" '
            f'fill-opacity="{0.06 + 0.94 * level:.2f}">'
            f"<title>{escape(format_value(peak * level))}</title></rect>"
        )
    end = f"{format_value(peak)} {unit}"
    out.append(f'<text x="{x + 16 + 5 * 22 + 4}" y="{y + 11}">{escape(end)}</text>')
    out.append("</g>")
    return "".join(out)

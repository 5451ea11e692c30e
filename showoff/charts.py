"""Server-rendered SVG charts for the admin pages (the analytics dashboard, the Event pipeline
page): no JavaScript, no CDN, nothing to vendor, readable without a legend hunt.

- Lines that would hide each other are drawn apart: `layout="multiples"` gives each series its
  own small panel on the same time axis (DAU, WAU and MAU; one panel per consumer group), and in
  an overlay every series has its own colour, dash pattern and marker shape, so two lines on top
  of each other stay distinguishable, in print and for colour-blind readers too.
- Counts (`integer=True`) get whole-number ticks (0, 1, 2, never "2.50") and whole values.
- Both axes are titled: the y axis with the unit, the x axis with what a label is (day, time).
- Every point is a hover target with a native tooltip (`<title>`: label, series, value, unit),
  and every chart carries its numbers as a table (`<details>` under it).
- A missing value (None) breaks the line instead of drawing it at zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

COLORS = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4d7c0f")
DASHES = ("", "7 4", "2 3", "10 3 2 3")
MARKERS = ("circle", "square", "triangle", "diamond")
DENSE = 60  # above this many points, markers are invisible hover targets, not drawn


@dataclass
class Chart:
    slug: str
    title: str
    unit: str  # the y axis' unit: "users", "events/s", "seconds"
    labels: list[str]  # one per point, shown on the x axis and in tooltips
    series: dict[str, list[float | None]]  # name -> one value per label
    x_title: str = "day (UTC)"
    x_name: str = "date"  # the CSV header of the labels' column
    integer: bool = False  # counts: whole-number ticks and values
    layout: str = "overlay"  # or "multiples": one small panel per series
    shared_scale: bool = False  # multiples on one y scale (to compare sizes), else each its own
    empty_text: str = "No data in this range."
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[list[Any]]:
        """The chart's numbers as CSV rows (header first)."""
        names = list(self.series)
        out: list[list[Any]] = [[self.x_name, *names]]
        for i, label in enumerate(self.labels):
            out.append([label, *[self.series[n][i] for n in names]])
        return out


def ticks(top: float, *, integer: bool, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least `top`: 0, 1, 2, 3 for counts up to 3; 0, 0.25,
    0.5 ... for fractions. Whole numbers only when `integer`."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0] if integer else [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer or magnitude >= 1 else (1, 2, 2.5, 5, 10)
    step = next(s * magnitude for s in steps if s * magnitude >= raw)
    if integer:
        step = max(1.0, float(math.ceil(step)))
    n = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def _decimals(values: list[float]) -> int:
    for d in range(0, 5):
        if all(abs(round(v, d) - v) < 1e-9 for v in values):
            return d
    return 4


def fmt(value: float | None, *, integer: bool, decimals: int | None = None) -> str:
    if value is None:
        return "–"
    if integer:
        return f"{round(value):,}"
    if decimals is None:
        a = abs(value)
        decimals = 0 if a >= 100 or value == int(value) else 1 if a >= 10 else 2 if a >= 0.1 \
            else 4
    return f"{value:,.{decimals}f}"


class _Panel:
    """One plot area with its axes."""

    def __init__(self, chart: Chart, names: list[str], top: float, *, width: int, height: int,
                 heading: str = ""):
        self.chart, self.names, self.width, self.height = chart, names, width, height
        self.heading = heading
        self.left, self.right = 70, 14
        self.top_pad = 24 if heading else 12
        self.bottom = 44
        self.ticks = ticks(top, integer=chart.integer)
        self.max = self.ticks[-1] or 1
        self.plot_w = width - self.left - self.right
        self.plot_h = height - self.top_pad - self.bottom

    def x(self, i: int) -> float:
        n = len(self.chart.labels)
        return self.left + (self.plot_w * i / (n - 1) if n > 1 else self.plot_w / 2)

    def y(self, v: float) -> float:
        return self.top_pad + self.plot_h * (1 - v / self.max)

    def render(self, styles: dict[str, int]) -> str:
        c = self.chart
        label = f"{c.title}: {self.heading}" if self.heading else c.title
        parts = [
            f'<svg class="chart-panel" data-chart="{escape(c.slug)}" '
            f'data-panel="{escape(self.heading)}" viewBox="0 0 {self.width} {self.height}" '
            f'width="{self.width}" height="{self.height}" role="img" '
            f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
            f"<title>{escape(label)}</title>",
            f'<rect x="{self.left}" y="{self.top_pad}" width="{self.plot_w}" '
            f'height="{self.plot_h}" fill="#fafafa" stroke="#ddd"/>',
        ]
        if self.heading:
            parts.append(f'<text class="panel-title" x="{self.left}" y="15" font-size="12" '
                         f'font-weight="bold" fill="#333">{escape(self.heading)}</text>')
        decimals = 0 if c.integer else _decimals(self.ticks)
        parts.append('<g class="y-axis">')
        for t in self.ticks:
            gy = self.y(t)
            parts.append(f'<line x1="{self.left}" x2="{self.left + self.plot_w}" y1="{gy:.1f}" '
                         f'y2="{gy:.1f}" stroke="#e5e5e5"/>')
            parts.append(f'<text class="tick" x="{self.left - 6}" y="{gy + 4:.1f}" '
                         f'text-anchor="end" font-size="11" fill="#555">'
                         f'{escape(fmt(t, integer=c.integer, decimals=decimals))}</text>')
        cy = self.top_pad + self.plot_h / 2
        parts.append(f'<text class="axis-title" x="14" y="{cy:.1f}" text-anchor="middle" '
                     f'font-size="11" fill="#333" transform="rotate(-90 14 {cy:.1f})">'
                     f"{escape(c.unit)}</text></g>")
        n = len(c.labels)
        parts.append('<g class="x-axis">')
        # about one label per 80 px: "2026-11-27" and "11-27 09:30" need that much
        shown = _label_indexes(n, most=max(2, min(6, self.plot_w // 80)))
        for i in shown:
            anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else \
                "middle"
            parts.append(f'<text class="tick" x="{self.x(i):.1f}" '
                         f'y="{self.top_pad + self.plot_h + 15}" text-anchor="{anchor}" '
                         f'font-size="11" fill="#555">{escape(c.labels[i])}</text>')
        parts.append(f'<text class="axis-title" x="{self.left + self.plot_w / 2:.1f}" '
                     f'y="{self.height - 6}" text-anchor="middle" font-size="11" fill="#333">'
                     f"{escape(c.x_title)}</text></g>")
        for name in self.names:
            parts.append(self._series(name, styles[name]))
        parts.append("</svg>")
        return "".join(parts)

    def _series(self, name: str, style: int) -> str:
        c = self.chart
        color, dash = COLORS[style % len(COLORS)], DASHES[style % len(DASHES)]
        marker = MARKERS[style % len(MARKERS)]
        if len(self.names) == 1:  # alone in its panel: nothing to tell it apart from
            dash, marker = "", "circle"
        values = c.series[name]
        dense = len(values) > DENSE
        out = [f'<g class="series" data-series="{escape(name)}" data-style="{style}">']
        run: list[str] = []
        runs: list[list[str]] = []
        for i, v in enumerate(values):
            if v is None:
                if run:
                    runs.append(run)
                run = []
                continue
            run.append(f"{self.x(i):.1f},{self.y(v):.1f}")
        if run:
            runs.append(run)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        for points in runs:
            if len(points) > 1:
                out.append(f'<polyline class="line" points="{" ".join(points)}" fill="none" '
                           f'stroke="{color}" stroke-width="2"{dash_attr}/>')
        for i, v in enumerate(values):
            if v is None:
                continue
            text = f"{c.labels[i]}: {name} {fmt(v, integer=c.integer)} {c.unit}"
            shape = _marker(marker, self.x(i), self.y(v), 3.5)
            paint = (f'fill="{color}" fill-opacity="0" stroke="none"' if dense
                     else f'fill="{color}" stroke="#fff" stroke-width="1"')
            out.append(f'<{shape} class="point" data-label="{escape(c.labels[i])}" '
                       f'data-value="{v}" {paint}><title>{escape(text)}</title>'
                       f"</{shape.split()[0]}>")
        out.append("</g>")
        return "".join(out)


def _label_indexes(n: int, most: int = 6) -> list[int]:
    """Evenly spaced labels, the last one always shown (without crowding its neighbour)."""
    if n <= 0:
        return []
    stride = max(1, math.ceil(n / most))
    shown = list(range(0, n, stride))
    if shown[-1] != n - 1:
        if n - 1 - shown[-1] < stride / 2 and len(shown) > 1:
            shown[-1] = n - 1
        else:
            shown.append(n - 1)
    return shown


def _marker(kind: str, x: float, y: float, r: float) -> str:
    if kind == "circle":
        return f'circle cx="{x:.1f}" cy="{y:.1f}" r="{r}"'
    if kind == "square":
        return f'rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r}" height="{2 * r}"'
    if kind == "triangle":
        return (f'path d="M{x:.1f},{y - r - 0.5:.1f} L{x + r:.1f},{y + r - 0.5:.1f} '
                f'L{x - r:.1f},{y + r - 0.5:.1f} Z"')
    return (f'path d="M{x:.1f},{y - r - 1:.1f} L{x + r + 1:.1f},{y:.1f} L{x:.1f},{y + r + 1:.1f} '
            f'L{x - r - 1:.1f},{y:.1f} Z"')


def _top(chart: Chart, names: list[str]) -> float:
    return max((v for n in names for v in chart.series[n] if v is not None), default=0.0)


def _legend(chart: Chart, styles: dict[str, int]) -> str:
    items = []
    for name, style in styles.items():
        color, dash = COLORS[style % len(COLORS)], DASHES[style % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        marker = _marker(MARKERS[style % len(MARKERS)], 15, 6, 3.5)
        items.append(
            f'<span class="legend-item" data-series="{escape(name)}">'
            f'<svg width="30" height="12" aria-hidden="true"><line x1="0" x2="30" y1="6" y2="6" '
            f'stroke="{color}" stroke-width="2"{dash_attr}/><{marker} fill="{color}"/></svg>'
            f"{escape(name)}</span>")
    return f'<div class="legend">{"".join(items)}</div>'


def _table(chart: Chart) -> str:
    names = list(chart.series)
    head = "".join(format_html("<th>{} ({})</th>", n, chart.unit) for n in names)
    body = []
    for i, label in enumerate(chart.labels):
        cells = "".join(format_html('<td class="num">{}</td>',
                                    fmt(chart.series[n][i], integer=chart.integer))
                        for n in names)
        body.append(f"<tr><td>{escape(label)}</td>{cells}</tr>")
    return (f'<details class="chart-values"><summary>Values ({len(chart.labels)} points)'
            f'</summary><table><thead><tr><th>{escape(chart.x_title)}</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></details>')


def render(chart: Chart, *, width: int = 720, height: int = 260, panel_height: int = 130,
           panel_width: int | None = None, table: bool = True) -> SafeString:
    """The chart as HTML: a `<figure class="chart">` with one SVG (overlay) or one per series
    (multiples), a legend for overlays, and the values table."""
    names = list(chart.series)
    styles = {name: i for i, name in enumerate(names)}
    parts = [f'<figure class="chart chart-{chart.layout}" data-chart="{escape(chart.slug)}" '
             f'data-unit="{escape(chart.unit)}" data-integer="{str(chart.integer).lower()}">']
    if not names or not chart.labels:
        parts.append(f'<p class="chart-empty">{escape(chart.empty_text)}</p>')
    elif chart.layout == "multiples" and len(names) > 1:
        top = _top(chart, names) if chart.shared_scale else None
        parts.append('<div class="chart-grid">')
        for name in names:
            panel = _Panel(chart, [name], top if top is not None else _top(chart, [name]),
                           width=panel_width or width, height=panel_height, heading=name)
            parts.append(panel.render(styles))
        parts.append("</div>")
    else:
        parts.append(_Panel(chart, names, _top(chart, names), width=width,
                            height=height).render(styles))
        if len(names) > 1:
            parts.append(_legend(chart, styles))
    if names and chart.labels and not any(v is not None for n in names
                                          for v in chart.series[n]):
        parts.append(f'<p class="chart-empty">{escape(chart.empty_text)}</p>')
    for note in chart.notes:
        parts.append(f'<p class="chart-note">{escape(note)}</p>')
    if table and names and chart.labels:
        parts.append(_table(chart))
    parts.append("</figure>")
    return mark_safe("".join(parts))  # noqa: S308 - every value above is escaped


CSS = """
.chart { margin: 0; }
.chart .chart-grid { display: flex; flex-wrap: wrap; gap: 4px 12px; }
.chart .legend { font-size: 12px; margin-top: 4px; }
.chart .legend-item { margin-right: 14px; white-space: nowrap; }
.chart .legend-item svg { vertical-align: middle; margin-right: 4px; }
.chart .point:hover { fill-opacity: 1; r: 5; }
.chart .chart-values { font-size: 12px; margin-top: 4px; }
.chart .chart-values table { max-height: 300px; display: block; overflow-y: auto; }
.chart .chart-values td.num { text-align: right; font-variant-numeric: tabular-nums; }
.chart .chart-empty, .chart .chart-note { color: var(--body-quiet-color, #666); font-size: 12px; }
"""

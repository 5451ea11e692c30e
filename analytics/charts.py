"""Server-rendered SVG line charts for the admin dashboard: no JavaScript, no CDN, nothing to
vendor. Each chart is one `<svg class="analytics-chart">` with a `<polyline>` per series run
(a gap where a value is missing, e.g. a day without performance samples)."""

from __future__ import annotations

import math

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from .selectors import Chart

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 36
COLORS = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2")


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _fmt(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}" if value >= 0.01 else f"{value:.4f}"


def render(chart: Chart) -> SafeString:
    n = len(chart.labels)
    values = [v for series in chart.series.values() for v in series if v is not None]
    top = _nice_max(max(values, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg class="analytics-chart" data-chart="{escape(chart.slug)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(chart.title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" '
        'stroke="#ddd"/>',
    ]
    for frac in (0, 0.5, 1):
        gy = y(top * frac)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}" '
                     'stroke="#e5e5e5"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end" font-size="11" '
                     f'fill="#555">{escape(_fmt(top * frac))}</text>')
    for i in sorted({0, n // 2, n - 1}) if n else []:
        anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
        parts.append(f'<text x="{x(i):.1f}" y="{HEIGHT - 12}" text-anchor="{anchor}" '
                     f'font-size="11" fill="#555">{escape(chart.labels[i])}</text>')
    for index, (name, series) in enumerate(chart.series.items()):
        color = COLORS[index % len(COLORS)]
        run: list[str] = []
        runs: list[list[str]] = []
        for i, v in enumerate(series):
            if v is None:
                if run:
                    runs.append(run)
                run = []
                continue
            run.append(f"{x(i):.1f},{y(v):.1f}")
        if run:
            runs.append(run)
        for points in runs:
            if len(points) == 1:
                cx, cy = points[0].split(",")
                parts.append(f'<circle class="series" data-series="{escape(name)}" cx="{cx}" '
                             f'cy="{cy}" r="3" fill="{color}"/>')
            else:
                parts.append(f'<polyline class="series" data-series="{escape(name)}" '
                             f'points="{" ".join(points)}" fill="none" stroke="{color}" '
                             'stroke-width="2"/>')
    parts.append("</svg>")
    legend = "".join(
        f'<span class="legend-item"><span class="swatch" style="background:'
        f'{COLORS[i % len(COLORS)]}"></span>{escape(name)}</span>'
        for i, name in enumerate(chart.series))
    return mark_safe("".join(parts) + f'<div class="legend">{legend}</div>')  # noqa: S308 - every value above is escaped

"""The decisions chart: an inline SVG of stacked bars, one per day (pure)."""

from __future__ import annotations

import math
from html import escape

from bridge.report.model import CATEGORIES, DayCount
from bridge.report.style import COLOURS
from bridge.report.text_port import TextPort


def _axis(peak: int) -> tuple[int, int]:
    """(step, ticks): a step of 1, 2 or 5 × 10^k and about five whole ticks above zero."""
    if peak <= 5:
        return 1, max(peak, 1)
    raw = peak / 5
    power: int = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return step, math.ceil(peak / step)


def svg_chart(days: tuple[DayCount, ...], text: TextPort, lang: str) -> str:
    """Stacked bars, one per day, one colour per category; hover titles give the counts."""
    width, height = 900, 300
    left, right, top, bottom = 46, 10, 12, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    step, ticks = _axis(max((d.total for d in days), default=0))
    peak = step * ticks
    out = [
        f'<svg id="decisions-chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(text.t("report.chart.aria", lang))}">'
    ]
    for i in range(ticks + 1):
        y = top + plot_h - plot_h * i / ticks
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            f'stroke="{"#9aa5b1" if i == 0 else "#e4e7eb"}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#52606d">{step * i}</text>'
        )
    n = max(len(days), 1)
    slot = plot_w / n
    bar = max(slot * 0.72, 1.0)
    every = max(1, math.ceil(n / 12))
    for i, day in enumerate(days):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        for category in CATEGORIES:
            count = day.counts.get(category, 0)
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            tip = text.t(
                "report.chart.bar",
                lang,
                day=day.day,
                category=text.t(f"report.category.{category}", lang),
                n=count,
            )
            out.append(
                f'<rect class="bar" data-category="{category}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}" fill="{COLOURS[category]}">'
                f"<title>{escape(tip)}</title></rect>"
            )
        if i % every == 0 or i == n - 1:
            label = escape(text.t("report.day", lang, day=day.day))
            out.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                f'font-size="11" fill="#52606d">{label}</text>'
            )
    if not any(d.total for d in days):
        out.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
            f'font-size="14" fill="#52606d">{escape(text.t("report.chart.empty", lang))}</text>'
        )
    out.append("</svg>")
    return "".join(out)

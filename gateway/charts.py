"""Server-rendered SVG charts: no script, no CDN, no inline style (colours come from site.css classes)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

ROW = 26
LABEL_WIDTH = 210
BAR_WIDTH = 380
WIDTH = LABEL_WIDTH + BAR_WIDTH + 70


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def bar_chart(
    rows: Sequence[tuple[str, float]],
    *,
    title: str,
    max_value: float | None = None,
    unit: str = "",
    css: str = "",
) -> Markup:
    """A horizontal bar chart as inline SVG markup; an empty chart says so."""
    height = 34 + max(len(rows), 1) * ROW
    top = max_value if max_value else max((v for _, v in rows), default=0) or 1
    parts = [
        f'<svg class="chart {escape(css)}" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" x="0" y="16">{escape(title)}</text>',
    ]
    if not rows:
        parts.append('<text class="chart-empty" x="0" y="48">—</text>')
    for i, (label, value) in enumerate(rows):
        y = 28 + i * ROW
        w = max(0.0, min(1.0, value / top)) * BAR_WIDTH
        parts.append(
            f'<text class="chart-label" x="{LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">'
            f"{escape(label[:18])}</text>"
        )
        parts.append(
            f'<rect class="chart-track" x="{LABEL_WIDTH}" y="{y + 3}" width="{BAR_WIDTH}" height="16"/>'
        )
        parts.append(
            f'<rect class="chart-bar" x="{LABEL_WIDTH}" y="{y + 3}" width="{w:.1f}" height="16">'
            f"<title>{escape(label)}: {escape(_fmt(value))}{escape(unit)}</title></rect>"
        )
        parts.append(
            f'<text class="chart-value" x="{LABEL_WIDTH + w + 6:.1f}" y="{y + 16}">'
            f"{escape(_fmt(value))}{escape(unit)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def lights(counts: Sequence[tuple[str, int, str]], *, title: str) -> Markup:
    """Traffic lights with counts (green / yellow / red) as inline SVG."""
    width = 120 * max(len(counts), 1)
    parts = [
        f'<svg class="chart lights" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} 110" '
        f'width="{width}" height="110" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for i, (label, count, colour) in enumerate(counts):
        x = 60 + i * 120
        parts.append(f'<circle class="light light-{escape(colour)}" cx="{x}" cy="40" r="30"/>')
        parts.append(f'<text class="light-count" x="{x}" y="48" text-anchor="middle">{count}</text>')
        parts.append(f'<text class="chart-label" x="{x}" y="98" text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))

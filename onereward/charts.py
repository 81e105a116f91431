"""Inline SVG line charts for admin pages (no JavaScript, no chart library)."""
from django.utils.html import format_html, format_html_join

PALETTE = ("#205067", "#c0392b", "#2e8540", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#b7950b")


def line_chart(series: dict[str, list], *, title: str, width: int = 640, height: int = 220) -> str:
    """One polyline per named series of (x, y) points, on shared axes, with a legend. Empty when
    no series has two points."""
    drawn = {name: points for name, points in series.items() if len(points) >= 2}
    if not drawn:
        return ""
    xs = [x for points in drawn.values() for x, _ in points]
    ys = [y for points in drawn.values() for _, y in points]
    x_low, x_high, y_low, y_high = min(xs), max(xs), min(ys), max(ys)
    span_x, span_y = max(x_high - x_low, 1e-9), max(y_high - y_low, 1e-9)
    left, top, bottom = 44, 8, 30
    legend_height = 16 * len(drawn)
    plot_w, plot_h = width - left - 8, height - top - bottom

    def x(value):
        return round(left + (value - x_low) / span_x * plot_w, 1)

    def y(value):
        return round(top + (y_high - value) / span_y * plot_h, 1)

    lines = format_html_join("", '<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"><title>{}</title></polyline>', (
        (PALETTE[i % len(PALETTE)], " ".join(f"{x(a)},{y(b)}" for a, b in points), name)
        for i, (name, points) in enumerate(drawn.items())))
    legend = format_html_join("", '<text x="{}" y="{}" font-size="11" fill="{}">{}</text>', (
        (left, height + 14 + 16 * i, PALETTE[i % len(PALETTE)], name) for i, name in enumerate(drawn)))
    return format_html(
        '<svg class="line-chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{th}" role="img" '
        'aria-label="{title}"><title>{title}</title>'
        '<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ddd"/>{lines}'
        '<text x="2" y="{t1}" font-size="11" fill="#666">{yh}</text><text x="2" y="{yb}" font-size="11" fill="#666">{yl}</text>'
        '<text x="{l}" y="{xb}" font-size="11" fill="#666">{xl}</text>'
        '<text x="{xr}" y="{xb}" font-size="11" fill="#666" text-anchor="end">{xh}</text>{legend}</svg>',
        w=width, th=height + 8 + legend_height, title=title, l=left, t=top, pw=plot_w, ph=plot_h, lines=lines,
        t1=top + 10, yb=top + plot_h, yh=f"{y_high:.3g}", yl=f"{y_low:.3g}", xb=height - 10,
        xl=f"{x_low:g}", xr=width - 8, xh=f"{x_high:g}", legend=legend)

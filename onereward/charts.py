"""Inline SVG charts for admin pages, drawn on the server (no JavaScript, no chart library).

The frame (the <svg> element and its accessible title), linear scales, round tick values, the
x axis with its grid and the marks themselves are written once here; each kind of chart is a short
function over them. Every text and attribute goes through format_html, so names that come from
the database are escaped.
"""
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#205067", "#c0392b", "#2e8540", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#b7950b")
AXIS_COLOUR, LABEL_COLOUR, GRID_COLOUR = "#666", "#333", "#ddd"


# --- the shared parts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """A linear map from data values [low, high] onto pixels [start, end]; end < start for a y axis
    that grows upwards. A domain of zero width maps every value to start instead of failing."""

    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        span = max(self.high - self.low, 1e-9)
        return round(self.start + (value - self.low) / span * (self.end - self.start), 1)


def nice_ticks(low: float, high: float, count: int = 6, min_span: float = 0.0) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart) from at or below `low` to at or
    above `high`, about `count` intervals; at least two ticks, so the range they span is never empty."""
    span = max(high - low, min_span, 1e-9)
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(low / step), max(math.ceil(high / step), math.floor(low / step) + 1)
    # Rounding drops the float noise of k * step, so a tick meant to be 0 is 0.
    return [round(k * step, 12) for k in range(first, last + 1)]


def _attributes(**attributes) -> SafeString:
    # Names take - for _ (stroke_width -> stroke-width); None leaves an attribute out.
    return format_html_join("", ' {}="{}"', ((name.replace("_", "-"), value)
                                             for name, value in attributes.items() if value is not None))


def mark(tag: str, tip: str = "", **attributes) -> SafeString:
    """One SVG element with its attributes; a tip becomes the hover <title>."""
    if not tip:
        return format_html("<{}{}/>", tag, _attributes(**attributes))
    return format_html("<{}{}><title>{}</title></{}>", tag, _attributes(**attributes), tip, tag)


def text(x: float, y: float, content, *, size: int = 11, fill: str | None = AXIS_COLOUR, anchor: str | None = None
         ) -> SafeString:
    return format_html("<text{}>{}</text>", _attributes(x=x, y=y, font_size=size, text_anchor=anchor, fill=fill),
                       content)


def frame(css_class: str, width: float, height: float, title: str, parts: Sequence[str], *, label: str | None = None
          ) -> SafeString:
    """The <svg> element: sized, scalable (viewBox), announced to screen readers by `label` (the title
    when not given) and titled for a hover."""
    return format_html(
        '<svg class="{}" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" role="img" '
        'aria-label="{}"><title>{}</title>{}</svg>',
        css_class, width, height, width, height, label or title, title, mark_safe("".join(parts)))


def x_axis(scale: Scale, ticks: Sequence[float], tick_label: Callable[[float], str], *, top: float, bottom: float,
           stroke: str = GRID_COLOUR) -> list[SafeString]:
    """A vertical grid line per tick from top to bottom, its label under the bottom."""
    return [mark("line", x1=scale(tick), y1=top, x2=scale(tick), y2=bottom, stroke=stroke)
            + text(scale(tick), bottom + 14, tick_label(tick), anchor="middle") for tick in ticks]


def row_label(label_width: float, y: float, label: str) -> SafeString:
    """A row's name, right-aligned against the plot that starts at label_width."""
    return text(label_width - 8, y, label, size=12, fill=LABEL_COLOUR, anchor="end")


def percent(value: float) -> str:
    return f"{value:.0%}"


# --- line chart ----------------------------------------------------------------------------------


def line_chart(series: dict[str, list], *, title: str, width: int = 640, height: int = 220) -> str:
    """One polyline per named series of (x, y) points, on shared axes, with a legend. Empty when
    no series has two points."""
    drawn = {name: points for name, points in series.items() if len(points) >= 2}
    if not drawn:
        return ""
    xs = [x for points in drawn.values() for x, _ in points]
    ys = [y for points in drawn.values() for _, y in points]
    left, top, bottom = 44, 8, 30
    plot_w, plot_h = width - left - 8, height - top - bottom
    x = Scale(min(xs), max(xs), left, left + plot_w)
    y = Scale(min(ys), max(ys), top + plot_h, top)
    parts = [mark("rect", x=left, y=top, width=plot_w, height=plot_h, fill="#fafafa", stroke=GRID_COLOUR)]
    parts += [mark("polyline", tip=name, fill="none", stroke=PALETTE[i % len(PALETTE)], stroke_width=1.5,
                   points=" ".join(f"{x(a)},{y(b)}" for a, b in points))
              for i, (name, points) in enumerate(drawn.items())]
    parts += [text(2, top + 10, f"{y.high:.3g}"), text(2, top + plot_h, f"{y.low:.3g}"),
              text(left, height - 10, f"{x.low:g}"), text(width - 8, height - 10, f"{x.high:g}", anchor="end")]
    parts += [text(left, height + 14 + 16 * i, name, fill=PALETTE[i % len(PALETTE)]) for i, name in enumerate(drawn)]
    return frame("line-chart", width, height + 8 + 16 * len(drawn), title, parts)


# --- horizontal bars -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    label: str
    value: float  # on the chart's domain
    colour: str
    note: str = ""  # written after the bar's end
    tip: str = ""
    faded: bool = False


@dataclass(frozen=True)
class Marker:
    """A dashed vertical line at a value, labelled above the plot (a threshold, a target)."""

    value: float
    label: str
    colour: str


def bar_chart(bars: Sequence[Bar], *, title: str, css_class: str, ticks: Sequence[float],
              tick_label: Callable[[float], str] = percent, marker: Marker | None = None,
              label_width: int = 150, plot_width: int = 440) -> str:
    """One horizontal bar per row from the first tick, a label at its left and a note at its end.
    Empty without bars."""
    if not bars:
        return ""
    bar_h, gap, top = 18, 6, 28
    height = top + len(bars) * (bar_h + gap) + 24
    width = label_width + plot_width + 120
    x = Scale(ticks[0], ticks[-1], label_width, label_width + plot_width)
    parts = x_axis(x, ticks, tick_label, top=top - 6, bottom=height - 20)
    for i, bar in enumerate(bars):
        y = top + i * (bar_h + gap)
        parts += [row_label(label_width, y + bar_h - 5, bar.label),
                  mark("rect", tip=bar.tip, x=label_width, y=y, width=round(x(bar.value) - label_width, 1),
                       height=bar_h, fill=bar.colour, fill_opacity="0.35" if bar.faded else "1"),
                  text(x(bar.value) + 6, y + bar_h - 5, bar.note, fill=LABEL_COLOUR)]
    if marker:
        at = x(marker.value)
        parts += [mark("line", x1=at, y1=top - 4, x2=at, y2=height - 20, stroke=marker.colour, stroke_width=2,
                       stroke_dasharray="5 4"),
                  text(at, top - 12, marker.label, fill=marker.colour, anchor="middle")]
    return frame(css_class, width, height, title, parts)


# --- small multiples of grouped columns ----------------------------------------------------------


@dataclass(frozen=True)
class ColumnPanel:
    title: str
    subtitle: str
    values: Sequence[Sequence[float]]  # per series, one value per column (all series the same length)


def column_panels(panels: Sequence[ColumnPanel], *, series: Sequence[tuple[str, str]], title: str, css_class: str,
                  label: str | None = None, note: str = "", reference: float | None = None, floor: float = 0.0,
                  tip: str = "{column}: {series} {value:.2f}", per_row: int = 4, panel_width: int = 230,
                  panel_height: int = 130) -> str:
    """Small multiples, `per_row` to a line: per panel, a group of columns (one per named, coloured
    series) at each position 1..n, from 0 up to the panel's largest value or `floor`, whichever is
    higher; `reference` is a dashed line across. A legend of the series and `note` head the chart.
    `tip` is formatted with column (1-based), series and value. Empty without panels."""
    if not panels:
        return ""
    legend = 24
    lines = (len(panels) + per_row - 1) // per_row
    width, height = panel_width * min(per_row, len(panels)), legend + panel_height * lines
    parts = []
    for i, (name, colour) in enumerate(series):
        parts += [mark("rect", x=54 * i, y=4, width=10, height=10, fill=colour),
                  text(54 * i + 14, 13, name, fill=None)]
    if note:
        parts.append(text(54 * len(series) + 4, 13, note, fill="#555"))
    for i, panel in enumerate(panels):
        x0, y0 = (i % per_row) * panel_width, legend + (i // per_row) * panel_height
        parts += _column_panel(panel, x0, y0, panel_width - 10, panel_height, series, reference, floor, tip)
    return frame(css_class, width, height, title, parts, label=label)


def _column_panel(panel: ColumnPanel, x0: float, y0: float, width: float, height: float,
                  series: Sequence[tuple[str, str]], reference: float | None, floor: float, tip: str) -> list[str]:
    n = len(panel.values[0])
    y = Scale(0.0, max(floor, *(v for values in panel.values for v in values)), y0 + height - 18, y0 + 20)
    slot = (width - 20) / n
    bar = max(3.0, slot / len(series) - 3)
    parts = [text(x0, y0 + 12, format_html('{} <tspan fill="#777">{}</tspan>', panel.title, panel.subtitle), size=12,
                  fill=LABEL_COLOUR),
             mark("line", x1=x0 + 10, y1=y.start, x2=x0 + width - 10, y2=y.start, stroke="#999")]
    for column in range(n):
        left = x0 + 10 + column * slot + slot / 2 - bar * len(series) / 2
        for k, ((name, colour), values) in enumerate(zip(series, panel.values)):
            value = values[column]
            parts.append(mark("rect", tip=tip.format(column=column + 1, series=name, value=value),
                              x=round(left + k * bar, 1), y=y(value), width=round(bar, 1),
                              height=round(y.start - y(value), 1), fill=colour))
        parts.append(text(round(left + bar * len(series) / 2, 1), y.start + 12, column + 1, size=10, anchor="middle"))
    if reference is not None:
        parts.append(mark("line", x1=x0 + 10, y1=y(reference), x2=x0 + width - 10, y2=y(reference), stroke="#555",
                          stroke_dasharray="3 3"))
    return parts


# --- intervals (forest plot) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    label: str
    value: float
    low: float | None  # None: no interval, the dot alone
    high: float | None
    tip: str = ""


def interval_plot(rows: Sequence[Interval], *, title: str, css_class: str, axis_label: str, reference: float = 0.0,
                  tick_label: Callable[[float], str] = str, min_span: float = 0.0, point_colour: str = PALETTE[0],
                  bar_colour: str = "#79aec8", reference_colour: str = "#999", label_width: int = 170,
                  plot_width: int = 460) -> str:
    """One line per row, in the given order: the value as a dot and its interval as a bar, on an axis
    of round ticks that covers every value, interval and the reference (a dashed line). Empty without rows."""
    if not rows:
        return ""
    row_h, top = 22, 10
    bottom = top + len(rows) * row_h
    height, width = bottom + 34, label_width + plot_width + 20
    values = [v for row in rows for v in (row.value, row.low, row.high) if v is not None] + [reference]
    ticks = nice_ticks(min(values), max(values), min_span=min_span)
    x = Scale(ticks[0], ticks[-1], label_width, label_width + plot_width)
    parts = x_axis(x, ticks, tick_label, top=top, bottom=bottom, stroke="#eee")
    parts += [mark("line", x1=x(reference), y1=top, x2=x(reference), y2=bottom, stroke=reference_colour,
                   stroke_dasharray="4 3"),
              text(label_width + plot_width / 2, bottom + 30, axis_label, anchor="middle")]
    for i, row in enumerate(rows):
        y = top + i * row_h + row_h / 2
        parts.append(row_label(label_width, y + 4, row.label))
        if row.low is not None and row.high is not None:
            parts.append(mark("line", tip=row.tip, x1=x(row.low), y1=y, x2=x(row.high), y2=y, stroke=bar_colour,
                              stroke_width=3))
        parts.append(mark("circle", tip=row.tip, cx=x(row.value), cy=y, r=5, fill=point_colour))
    return frame(css_class, width, height, title, parts)

"""The admin pages' SVG charts: scales, ticks and the marks each chart kind draws."""
import re
import xml.etree.ElementTree as ET

from onereward import charts

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_scale_maps_the_domain_onto_pixels_both_ways():
    x = charts.Scale(10, 20, 100, 300)
    assert (x(10), x(15), x(20)) == (100, 200, 300)
    y = charts.Scale(0, 4, 250, 50)  # upwards: larger values higher on the page
    assert (y(0), y(1), y(4)) == (250, 200, 50)
    assert charts.Scale(3, 3, 40, 80)(3) == 40  # a one-value domain does not divide by zero


def test_nice_ticks_are_round_and_cover_the_values():
    assert charts.nice_ticks(0, 1, count=4) == [0, 0.25, 0.5, 0.75, 1.0]
    assert charts.nice_ticks(-0.37, 0.8) == [-0.4, -0.2, 0, 0.2, 0.4, 0.6, 0.8]
    assert charts.nice_ticks(-0.05, 0.03, min_span=0.2) == [-0.05, 0, 0.05]
    assert charts.nice_ticks(0, 0, min_span=0.2) == [0, 0.05]  # never a single tick


def test_line_chart_draws_a_polyline_per_series_with_two_points():
    assert charts.line_chart({"loss": [(0, 1.0)]}, title="Loss") == ""
    svg = parse(charts.line_chart({"loss": [(0, 1.0), (10, 0.0)], "one point": [(5, 0.5)]}, title="Loss <by> step",
                                  width=640, height=220))
    assert svg.get("class") == "line-chart" and svg.get("aria-label") == "Loss <by> step"
    (line,) = svg.iter(f"{SVG}polyline")
    # Plot from x 44 to 632 and y 8 (top, 1.0) to 190 (bottom, 0.0).
    assert line.get("points") == "44.0,8.0 632.0,190.0" and line.find(f"{SVG}title").text == "loss"


def test_bar_chart_bars_grow_with_the_value_and_mark_the_threshold():
    bars = [charts.Bar("ann <1>", 0.5, "#111", note="50%", tip="half"), charts.Bar("ann2", 1.0, "#222", faded=True)]
    svg = parse(charts.bar_chart(bars, title="Accuracy", css_class="qc-chart", ticks=(0, 0.5, 1.0),
                                 marker=charts.Marker(0.75, "threshold 75%", "#c00"), label_width=100, plot_width=400))
    half, full = svg.iter(f"{SVG}rect")
    assert (half.get("x"), half.get("width"), full.get("width")) == ("100", "200.0", "400.0")
    assert full.get("fill-opacity") == "0.35" and half.find(f"{SVG}title").text == "half"
    dashed = [line for line in svg.iter(f"{SVG}line") if line.get("stroke-dasharray")]
    assert [line.get("x1") for line in dashed] == ["400.0"]
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert {"0%", "50%", "100%", "ann <1>", "threshold 75%"} <= set(texts)
    assert charts.bar_chart([], title="x", css_class="qc-chart", ticks=(0, 1)) == ""


def test_column_panels_heights_are_proportional_to_the_values():
    panel = charts.ColumnPanel("alice", "(8 picks)", values=[[3.0, 1.0], [0.0, 2.0]])
    svg = parse(charts.column_panels([panel], series=(("best", "#0a0"), ("worst", "#a00")), title="Positions",
                                     css_class="qc-chart", reference=1.0, floor=2.0,
                                     tip="position {column}: {series}"))
    columns = [r for r in svg.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert [r.find(f"{SVG}title").text for r in columns] == [
        "position 1: best", "position 1: worst", "position 2: best", "position 2: worst"]
    heights = [float(r.get("height")) for r in columns]
    # The axis reaches the largest value, 3: heights in proportion 3 : 0 : 1 : 2.
    assert heights[1] == 0 and abs(heights[0] - 3 * heights[2]) < 0.2 and abs(heights[3] - 2 * heights[2]) < 0.2


def test_interval_plot_places_dots_and_intervals_on_one_axis():
    rows = [charts.Interval("A", 0.5, 0.0, 1.0, "a"), charts.Interval("B", -1.0, None, None, "b")]
    svg = parse(charts.interval_plot(rows, title="Scores", css_class="lb-chart", axis_label="score", label_width=100,
                                     plot_width=300))
    ticks = [t.text for t in svg.iter(f"{SVG}text") if re.fullmatch(r"-?[\d.]+", t.text or "")]
    assert ticks[0] == "-1.0" and ticks[-1] == "1.0"
    dots = {c.find(f"{SVG}title").text: float(c.get("cx")) for c in svg.iter(f"{SVG}circle")}
    assert dots == {"a": 325.0, "b": 100.0}
    (interval,) = [line for line in svg.iter(f"{SVG}line") if line.get("stroke-width") == "3"]
    assert (interval.get("x1"), interval.get("x2")) == ("250.0", "400.0")
    only_zero = charts.interval_plot([charts.Interval("A", 0.0, None, None)], title="x", css_class="lb-chart",
                                     axis_label="score", min_span=0.2)
    assert "<circle" in only_zero

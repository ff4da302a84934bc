"""Charts: SVG from data, with axes, legends, titles per point, cells and escaping."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from mockforge_analytics_plugin.charts import (
    Series,
    bar_chart,
    format_value,
    heatmap,
    line_chart,
    nice_ticks,
)

SVG = "{http://www.w3.org/2000/svg}"
T0 = 1_764_288_000  # 2025-11-28 00:00 UTC


def _parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def test_line_chart_has_axes_legend_and_one_titled_dot_per_value():
    a = Series("http", [(T0 + 60 * i, float(i * 10)) for i in range(5)])
    b = Series("websocket", [(T0 + 60 * i, None if i == 2 else 1.0) for i in range(5)])
    root = _parse(line_chart([a, b], title="Requests", unit="req/s", y_label="rate"))
    assert root.find(f"{SVG}title").text == "Requests"
    dots = root.findall(f".//{SVG}circle")
    assert len(dots) == 5 + 4  # the None is a gap, not a dot
    tips = [d.find(f"{SVG}title").text for d in dots]
    assert "http · 2025-11-28 00:04 UTC: 40 req/s" in tips
    # b is broken into two runs around the gap
    b_group = root.find(f".//{SVG}g[@data-series='websocket']")
    assert len(b_group.findall(f"{SVG}path")) == 2
    legend = root.find(f".//{SVG}g[@class='legend']")
    assert [t.text for t in legend.findall(f"{SVG}text")] == ["http", "websocket"]
    x_labels = [t.text for t in root.find(f".//{SVG}g[@class='axis x-axis']").findall(f"{SVG}text")]
    assert "00:00" in x_labels and "time (UTC)" in x_labels
    y_labels = [t.text for t in root.find(f".//{SVG}g[@class='axis y-axis']").findall(f"{SVG}text")]
    assert y_labels[0] == "0" and "40" in y_labels and "rate (req/s)" in y_labels


def test_line_chart_escapes_series_labels():
    evil = "<script>alert(1)</script>"
    out = str(line_chart([Series(evil, [(T0, 1.0)])], title="x<y"))
    assert "<script>" not in out
    assert "&lt;script&gt;" in out
    _parse(out)  # still well-formed


def test_line_chart_empty_says_no_data():
    out = str(line_chart([], title="Latency"))
    assert "No data in this window" in out


def test_area_chart_draws_area_paths():
    root = _parse(line_chart([Series("p95", [(T0, 1.0), (T0 + 60, 2.0)])], title="L", area=True))
    assert len(root.findall(f".//{SVG}path[@class='area c0']")) == 1


def test_bar_chart_rows_values_and_shares():
    root = _parse(bar_chart([("200", 75), ("404", 20), ("500", 5)], title="Status codes"))
    rows = root.findall(f".//{SVG}g[@class='bar-row']")
    assert len(rows) == 3
    assert rows[0].find(f"{SVG}title").text == "200: 75 (75.0%)"
    assert rows[2].find(f"{SVG}title").text == "500: 5 (5.0%)"
    widths = [float(r.find(f"{SVG}rect").get("width")) for r in rows]
    assert widths[0] > widths[1] > widths[2] > 0


def test_heatmap_has_168_cells_monday_first_with_values_and_legend():
    cells = [
        {"day_of_week": 0, "hour": 9, "request_count": 30},
        {"day_of_week": 0, "hour": 9, "request_count": 12},  # second date, same slot: summed
        {"day_of_week": 6, "hour": 23, "request_count": 1500},
    ]
    root = _parse(heatmap(cells))
    groups = root.findall(f".//{SVG}g[@class='cell']")
    assert len(groups) == 168
    labels = [g.get("aria-label") for g in groups]
    assert labels[9] == "Mon 09:00 UTC: 42 requests"
    assert labels[167] == "Sun 23:00 UTC: 1,500 requests"
    assert groups[9].find(f"{SVG}text").text == "42"
    assert groups[167].find(f"{SVG}text").text == "1.5k"
    assert groups[0].find(f"{SVG}text").text is None  # empty cells show no number
    legend = root.find(f".//{SVG}g[@class='legend heat-legend']")
    assert len(legend.findall(f"{SVG}rect")) == 5


def test_nice_ticks_and_format():
    assert nice_ticks(0, 93) == [0, 25, 50, 75, 100]
    assert nice_ticks(0, 0) == [0, 0.25, 0.5, 0.75, 1.0]  # an empty range still gets an axis
    assert format_value(1234567) == "1,234,567"
    assert format_value(12.345, "ms") == "12.3 ms"
    assert format_value(0.5, "%") == "0.5%"
    assert format_value(None) == "\u2013"


def test_no_external_references():
    out = str(line_chart([Series("a", [(T0, 1.0), (T0 + 3600 * 30, 5.0)])], title="t")) + str(heatmap([]))
    assert not re.search(r"(href|src)=", out)

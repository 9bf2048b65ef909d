"""The line chart: `render_chart`'s layout as plain text and styles (no terminal), the
widget in a pilot app, and one SVG snapshot at 80x24."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence

import pytest
from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from tracker.tui.chart import (
    LineChart,
    Mark,
    Series,
    compact_number,
    render_chart,
    seconds_label,
)

BRAILLE = range(0x2801, 0x2900)


def _lines(
    width: int,
    height: int,
    series: Sequence[Series],
    marks: Sequence[Mark] = (),
    **kwargs: object,
) -> list[Text]:
    lines = render_chart(width, height, series, marks, **kwargs)  # type: ignore[arg-type]
    assert len(lines) == height
    assert [line.cell_len for line in lines] == [width] * height
    return lines


def _plot(line: Text) -> str:
    """The plot cells of a line: what follows the y axis."""
    plain = line.plain
    return plain[min(i for i in (plain.find("┤"), plain.find("│")) if i >= 0) + 1 :]


def _braille_columns(line: str) -> list[int]:
    return [i for i, char in enumerate(line) if ord(char) in BRAILLE]


def _style_at(line: Text, column: int) -> Style:
    """The combined style of one cell (the spans covering it, over the line's own)."""
    style = Style.parse(line.style) if isinstance(line.style, str) else line.style
    for span in line.spans:
        if span.start <= column < span.end:
            span_style = span.style
            style += Style.parse(span_style) if isinstance(span_style, str) else span_style
    return style


def _ramp(n: int = 30) -> list[tuple[float, float]]:
    return [(float(i), 100.0 + 10.0 * i) for i in range(n)]


# -- render_chart -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height"), [(36, 3), (36, 4), (60, 5), (76, 5), (56, 8), (20, 12), (5, 6)]
)
def test_every_size_gives_exact_lines(width: int, height: int) -> None:
    series = [Series("p50", _ramp()), Series("p99", [(x, y * 2) for x, y in _ramp()])]
    _lines(width, height, series, [Mark(5, 9, "change"), Mark(20, None, "!1")], title="t")


def test_degenerate_sizes() -> None:
    assert render_chart(0, 3, [Series("a", _ramp())]) == [Text(), Text(), Text()]
    assert render_chart(10, 0, [Series("a", _ramp())]) == []
    [only] = _lines(10, 1, [Series("a", _ramp())], title="latency")
    assert only.plain == "latency   "


def test_y_ticks_are_right_aligned_and_ordered_max_mid_min() -> None:
    lines = _lines(40, 7, [Series("p50", _ramp())], y_format=lambda v: f"{v:.0f}ms")
    plot = [line.plain for line in lines[1:-1]]
    ticks = [(row, line.split("┤")[0]) for row, line in enumerate(plot) if "┤" in line]
    assert [row for row, _ in ticks] == [0, 2, 4]
    values = [float(label.strip().removesuffix("ms")) for _, label in ticks]
    assert values == sorted(values, reverse=True)
    assert values[0] == 390  # the max of the data
    gutter = max(len(label) for _, label in ticks)
    assert all(len(label) == gutter for _, label in ticks)  # padded to the widest
    assert all(line[gutter] in "┤│" for line in plot)  # the axis line
    assert lines[-1].plain[gutter] == "└"


def test_y_axis_starts_at_zero_only_when_the_data_comes_near_it() -> None:
    near = _lines(30, 6, [Series("a", [(0, 1.0), (1, 50.0)])])
    assert near[-2].plain.split("┤")[0].strip() == "0"
    far = _lines(30, 6, [Series("a", [(0, 800.0), (1, 1200.0)])])
    assert far[-2].plain.split("┤")[0].strip() == "800"


def test_x_labels_first_last_and_between_when_there_is_room() -> None:
    points = [(float(x), 1.0 + x % 3) for x in range(0, 61)]
    wide = _lines(60, 5, [Series("a", points)], x_format=seconds_label)[-1].plain
    labels = [part for part in wide.split("└")[1].split("─") if part]
    assert labels[0] == "0s"
    assert labels[-1] == "60s"
    assert 3 <= len(labels) <= 4
    assert [int(label[:-1]) for label in labels] == sorted(int(label[:-1]) for label in labels)
    assert wide.endswith("60s")  # the newest x at the right edge
    narrow = _lines(10, 5, [Series("a", points)], x_format=seconds_label)[-1].plain
    assert [part for part in narrow.split("└")[1].split("─") if part] == ["0s", "60s"]


def test_title_colours_series_named_in_it_and_legends_the_others() -> None:
    series = [Series("p50", _ramp(), "cyan"), Series("p99", _ramp(), "magenta")]
    [head, *_] = _lines(60, 5, series, title="latency  p50 812ms")
    assert head.plain.startswith("latency  p50 812ms")
    assert _style_at(head, head.plain.index("p50")).color.name == "cyan"  # type: ignore[union-attr]
    assert "━ p99" in head.plain
    legend_at = head.plain.index("━ p99")
    assert _style_at(head, legend_at).color.name == "magenta"  # type: ignore[union-attr]
    single = _lines(60, 5, [Series("p50", _ramp())], title="latency")[0].plain
    assert "━" not in single  # one series needs no legend


def test_lines_are_braille_segments_not_only_dots() -> None:
    # Two points at opposite corners: the segment between them fills every column.
    lines = _lines(30, 6, [Series("a", [(0, 0.0), (10, 100.0)])])
    plot = [_plot(line) for line in lines[1:-1]]
    columns = {col for row in plot for col in _braille_columns(row)}
    assert columns == set(range(len(plot[0])))


def test_two_series_share_a_chart_in_their_colours() -> None:
    low = Series("p50", [(float(i), 10.0) for i in range(20)], "cyan")
    high = Series("p99", [(float(i), 100.0) for i in range(20)], "magenta")
    lines = _lines(30, 6, [low, high])
    top, bottom = lines[1], lines[-2]
    assert _style_at(top, _braille_columns(top.plain)[0]).color.name == "magenta"  # type: ignore[union-attr]
    assert _style_at(bottom, _braille_columns(bottom.plain)[0]).color.name == "cyan"  # type: ignore[union-attr]


def test_default_palette_by_position() -> None:
    a, b = Series("a", [(0, 1.0), (1, 1.0)]), Series("b", [(0, 9.0), (1, 9.0)])
    lines = _lines(30, 6, [a, b])
    colours = {
        _style_at(line, col).color.name  # type: ignore[union-attr]
        for line in lines[1:-1]
        for col in _braille_columns(line.plain)
    }
    assert len(colours) == 2


def test_a_spike_survives_downsampling() -> None:
    # 5000 points into 30 dot columns: one point in 5000 is high, and must still reach
    # the top row (an average or every n-th point would lose it).
    points = [(float(i), 10.0 + (1500.0 if i == 3777 else 0.0)) for i in range(5000)]
    lines = _lines(20, 6, [Series("a", points)])
    assert lines[1].plain.split("┤")[0].strip() == "1.5k"
    assert _braille_columns(lines[1].plain)


def test_newest_point_is_at_the_right_edge() -> None:
    # Few points: they span the x range, so the newest is in the last column.
    lines = _lines(40, 5, [Series("a", [(0, 1.0), (1, 2.0), (2, 3.0)])])
    assert any(line.plain.endswith(tuple(map(chr, BRAILLE))) for line in lines[1:-1])


def test_nan_and_inf_are_skipped() -> None:
    points = [(0, 1.0), (1, math.nan), (2, math.inf), (3, 2.0), (math.nan, 5.0)]
    lines = _lines(30, 5, [Series("a", points)])
    assert lines[1].plain.split("┤")[0].strip() == "2"
    odd_marks = [Mark(math.nan, None, "nan"), Mark(1, math.inf, "inf"), Mark(-math.inf)]
    assert _lines(30, 5, [Series("a", points)], odd_marks)[-1].plain.endswith("3s")
    only_bad = _lines(30, 5, [Series("a", [(0, math.nan), (1, -math.inf)])], title="x")
    assert "no data yet" in "".join(line.plain for line in only_bad)


def test_band_shades_its_columns_and_labels_the_top_row() -> None:
    points = [(float(i), float(i % 5)) for i in range(41)]
    lines = _lines(44, 6, [Series("a", points)], [Mark(10, 20, "change", "yellow")])
    gutter = lines[1].plain.index("┤") + 1
    plot_w = 44 - gutter
    shaded = {
        col
        for col in range(plot_w)
        if all(_style_at(line, gutter + col).bgcolor is not None for line in lines[1:-1])
    }
    # x 0..40 over plot_w columns: the band covers about a quarter, starting a quarter in.
    assert shaded == set(range(min(shaded), max(shaded) + 1))
    assert abs(min(shaded) - plot_w / 4) <= 1
    assert abs(max(shaded) - plot_w / 2) <= 1
    assert all(_style_at(lines[-1], col).bgcolor is None for col in range(44))
    assert lines[1].plain[gutter + min(shaded) :].startswith("change")


def test_marker_draws_a_vertical_line_with_its_label() -> None:
    points = [(float(i), 1.0) for i in range(41)]  # flat, on the top row only
    lines = _lines(44, 6, [Series("a", points)], [Mark(20, None, "!1", "red")])
    gutter = lines[1].plain.index("┤") + 1
    columns = [line.plain.index("│", gutter) for line in lines[2:-1] if "│" in line.plain[gutter:]]
    assert len(columns) == len(lines[2:-1]) and len(set(columns)) == 1
    assert _style_at(lines[2], columns[0]).color.name == "red"  # type: ignore[union-attr]
    assert lines[1].plain[columns[0] + 1 :].startswith("!1")


def test_marks_outside_the_x_range_are_clipped() -> None:
    points = [(float(i), float(i)) for i in range(10, 21)]
    lines = _lines(30, 5, [Series("a", points)], [Mark(25, None, "late"), Mark(30, 40, "x")])
    text = "\n".join(line.plain for line in lines)
    assert "late" not in text
    assert all(_style_at(line, col).bgcolor is None for line in lines for col in range(30))


def test_no_data_shows_the_title_and_a_centred_message() -> None:
    lines = _lines(30, 5, [], title="errors")
    assert lines[0].plain.rstrip() == "errors"
    [row] = [line.plain for line in lines if line.plain.strip() and line is not lines[0]]
    assert row.strip() == "no data yet"
    assert abs(row.index("n") - (30 - len("no data yet")) // 2) <= 1
    waiting = _lines(30, 2, [Series("a", [])], title="t", empty_message="waiting")
    assert waiting[1].plain.strip() == "waiting"


def test_constant_series_does_not_divide_by_zero() -> None:
    for value in (0.0, 5.0, -3.0):
        lines = _lines(30, 5, [Series("a", [(float(i), value) for i in range(10)])])
        assert _braille_columns("".join(line.plain for line in lines[1:-1]))
    spark = _lines(30, 3, [Series("a", [(0, 2.0), (1, 2.0)])])
    assert set(spark[1].plain.strip()) <= set("▁▂▃▄▅▆▇█")
    single = _lines(30, 5, [Series("a", [(7, 3.0)])])
    assert single[-1].plain.endswith("7s")


def test_low_charts_are_a_title_and_a_sparkline_of_the_first_series() -> None:
    rising = Series("a", [(float(i), float(i)) for i in range(8)])
    flat = Series("b", [(float(i), 100.0) for i in range(8)])
    lines = _lines(8, 3, [rising, flat], title="tiny")
    assert lines[0].plain == "tiny    "
    assert lines[1].plain == "▁▂▃▄▅▆▇█"
    assert lines[2].plain.strip() == ""
    two = _lines(40, 2, [Series("empty", []), rising])
    assert set(two[1].plain.strip()) <= set("▁▂▃▄▅▆▇█")  # the first series with data


def test_formatters() -> None:
    assert [compact_number(v) for v in (0, 0.35, 1.5, 12.5, 812, 1234, 45e6, -2500)] == [
        "0",
        "0.35",
        "1.5",
        "12.5",
        "812",
        "1.2k",
        "45M",
        "-2.5k",
    ]
    assert [seconds_label(v) for v in (0, 12.4, 119, 125)] == ["0s", "12s", "119s", "2m05s"]


# -- the widget -------------------------------------------------------------------------

P50 = [(float(i), 780.0 + 40.0 * math.sin(i / 4)) for i in range(60)]
P99 = [
    (float(i), 1150.0 + 120.0 * math.sin(i / 6) + (700.0 if i == 41 else 0.0)) for i in range(60)
]


class ChartApp(App[None]):
    CSS = "LineChart { height: 8; }"

    def compose(self) -> ComposeResult:
        yield LineChart("latency  p50 812ms  p99 1.2s", id="latency")
        yield LineChart("errors", id="errors")

    def on_mount(self) -> None:
        self.query_one("#latency", LineChart).set_data(
            [Series("p50", P50), Series("p99", P99)],
            [Mark(20, 32, "change"), Mark(45, None, "!1", "red")],
        )


def test_widget_renders_ticks_and_toggles_highlight() -> None:
    async def main() -> None:
        app = ChartApp()
        async with app.run_test(size=(70, 20)) as pilot:
            chart = app.query_one("#latency", LineChart)
            await pilot.pause()
            screen = "\n".join("".join(seg.text for seg in chart.render_line(y)) for y in range(8))
            assert "latency  p50 812ms" in screen
            assert f"{compact_number(max(y for _, y in P99))}┤" in screen
            assert "0s" in screen and "59s" in screen
            assert "no data yet" in "".join(
                seg.text
                for y in range(8)
                for seg in app.query_one("#errors", LineChart).render_line(y)
            )

            before = chart.render_line(0)
            assert chart.render_line(0) is before  # cached: nothing changed
            chart.set_data(chart.series, chart.marks)  # the same data again: still cached
            assert chart.render_line(0) is before

            chart.highlighted = True
            await pilot.pause()
            assert chart.has_class("-highlighted")
            [title, *_] = list(chart.render_line(0))
            warning = Style.parse(app.theme_variables["warning"]).color
            assert title.style is not None and title.style.color == warning
            assert next(iter(before)).style.color != warning  # type: ignore[union-attr]
            chart.highlighted = False
            await pilot.pause()
            assert not chart.has_class("-highlighted")

            chart.title = "latency  p50 900ms"
            await pilot.pause()
            assert "p50 900ms" in "".join(seg.text for seg in chart.render_line(0))

    asyncio.run(main())


def test_snapshot_two_series_and_a_band_at_80x24(snap_compare: Callable[..., bool]) -> None:
    """Two series (p50, p99 with one spike), a band and a marker, one highlighted empty chart."""

    async def highlight(pilot: Pilot[None]) -> None:
        pilot.app.query_one("#errors", LineChart).highlighted = True
        await pilot.pause()

    assert snap_compare(ChartApp(), terminal_size=(80, 24), run_before=highlight)

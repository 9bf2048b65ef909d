"""The layout of a terminal line chart with axes: `render_chart` turns series and marks into
Rich `Text` lines, exactly `height` lines of `width` cells.

Used by `tracker.tui.chart.LineChart` (the live screen's and the history screen's charts).
Plain data in, text out, no Textual: the layout is tested without a terminal. Lines are
Unicode braille (2x4 dots a cell), so two series such as p50 and p99 can share one chart;
marks shade a band (a finding, a change between runs) or draw a vertical marker.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.color import Color as RichColor
from rich.style import Style
from rich.text import Text

#: Line colours for series that name none, by position.
PALETTE = ("cyan", "bright_magenta", "green", "bright_blue", "bright_red", "bright_white")

_SPARK = "▁▂▃▄▅▆▇█"
#: Braille dot bits by [dot row][dot column] within a cell (Unicode's dot numbering is not
#: row-major: dots 7 and 8 were added below the original six).
_BRAILLE_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
_BRAILLE_BASE = 0x2800
#: How strongly a band's colour shows through the background: enough to see the band, little
#: enough that the lines drawn over it keep their contrast.
_BAND_ALPHA = 0.22
#: Below this many plot cells across, axes cost more than they tell: draw a sparkline.
_MIN_PLOT_WIDTH = 4

Formatter = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    """One line: `points` are (x, y) with x ascending (seconds into a run, or a run index)."""

    label: str
    points: Sequence[tuple[float, float]]
    style: str = ""


@dataclass(frozen=True)
class Mark:
    """A vertical marker at `start` (`end` None) or a shaded band from `start` to `end`."""

    start: float
    end: float | None = None
    label: str = ""
    style: str = "yellow"


def compact_number(value: float) -> str:
    """A y tick for a narrow gutter: `0.35`, `12.5`, `812`, `1.2k`, `45M`."""
    size = abs(value)
    if size == 0 or not math.isfinite(value):
        return "0" if size == 0 else str(value)
    for unit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= unit:
            scaled = value / unit
            text = f"{scaled:.1f}" if abs(scaled) < 10 else f"{scaled:.0f}"
            return _strip_zeros(text) + suffix
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return _strip_zeros(f"{value:.1f}")
    if size >= 1:
        return _strip_zeros(f"{value:.2f}")
    return f"{value:.2g}"


def seconds_label(x: float) -> str:
    """An x tick for seconds into a run: `12s`, then `2m05s` past two minutes."""
    whole = round(x)
    if abs(whole) < 120:
        return f"{whole}s"
    minutes, seconds = divmod(whole, 60)
    return f"{minutes}m{seconds:02d}s"


def _strip_zeros(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


# -- layout -----------------------------------------------------------------------------


def render_chart(
    width: int,
    height: int,
    series: Sequence[Series],
    marks: Sequence[Mark] = (),
    *,
    y_format: Formatter = compact_number,
    x_format: Formatter = seconds_label,
    title: str = "",
    empty_message: str = "no data yet",
    title_style: Style | str = "bold",
    axis_style: Style | str = "dim",
    tick_style: Style | str = "dim",
    message_style: Style | str = "dim italic",
    background: str = "black",
) -> list[Text]:
    """Lay a chart out in `height` lines of exactly `width` cells.

    Row 0 is the title (series named in it are coloured; others get a legend entry), then
    the plot with y ticks in a left gutter, then the x axis with its labels on the line.
    Lower than 4 rows (or too narrow for a gutter) it is the title and a one-line sparkline
    of the first series with data. `background` is what bands are blended over.
    """
    if width <= 0 or height <= 0:
        return [Text() for _ in range(max(height, 0))]
    styles = [parse_style(s.style or PALETTE[i % len(PALETTE)]) for i, s in enumerate(series)]
    clean = [_finite_points(s.points) for s in series]
    marks = [m for m in marks if _finite_mark(m)]
    tick_st, axis_st, msg_st = (
        parse_style(tick_style),
        parse_style(axis_style),
        parse_style(message_style),
    )
    head = _title_line(width, title, series, styles, parse_style(title_style))
    lines = [head] + [Text(" " * width) for _ in range(height - 1)]
    if height == 1:
        return lines

    ys = [y for points in clean for _, y in points]
    if not ys:
        row = 1 if height < 4 else 1 + (height - 2) // 2
        lines[row] = _centred(empty_message, width, msg_st)
        return lines

    xs = [x for points in clean for x, _ in points]
    # From the earliest point or mark to the newest point: live charts scroll, so the
    # newest data sits at the right edge; marks past it are clipped.
    x_hi = max(xs)
    x_lo = min([min(xs), *(m.start if m.end is None else min(m.start, m.end) for m in marks)])
    lo, hi = _y_range(min(ys), max(ys))

    plot_rows = height - 2
    tick_rows = _tick_rows(plot_rows)
    ticks = {row: y_format(_row_value(row, plot_rows, lo, hi)) for row in tick_rows}
    # A gutter wider than a third of the chart leaves too little plot; long labels are cut.
    gutter = min(max(cell_len(t) for t in ticks.values()), width // 3)
    plot_w = width - gutter - 1
    if height < 4 or plot_w < _MIN_PLOT_WIDTH:
        first = next(points for points in clean if points)
        index = next(i for i, points in enumerate(clean) if points)
        bg = RichColor.parse(background)
        lines[1] = _sparkline(width, first, styles[index], marks, x_lo, x_hi, bg)
        return lines

    xmap = _XMap(x_lo, x_hi, plot_w * 2)
    canvas = _Canvas(plot_w, plot_rows, lo, hi)
    for index, points in enumerate(clean):
        canvas.draw(index, points, xmap)
    band, markers, labels = _place_marks(marks, xmap, x_hi, plot_w, RichColor.parse(background))

    for row in range(plot_rows):
        line = Text()
        tick = ticks.get(row)
        if tick is not None:
            line.append(_fit(tick, gutter).rjust(gutter), tick_st)
            line.append("┤", axis_st)
        else:
            line.append(" " * gutter)
            line.append("│", axis_st)
        cells = canvas.row(row, styles, markers)
        if row == 0:
            for col, text, style in labels:
                for offset, char in enumerate(text):
                    cells[col + offset] = (char, style)
        _append_cells(line, cells, band)
        lines[1 + row] = line

    axis = Text(" " * gutter)
    axis.append("└", axis_st)
    axis_cells = ["─"] * plot_w
    label_spans = _x_labels(plot_w, x_lo, x_hi, x_format)
    for start, text in label_spans:
        axis_cells[start : start + len(text)] = list(text)
    _append_runs(axis, axis_cells, label_spans, axis_st, tick_st)
    lines[-1] = axis
    return [_exact(line, width) for line in lines]


def parse_style(style: Style | str) -> Style:
    return style if isinstance(style, Style) else Style.parse(style)


def _finite_points(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]


def _finite_mark(mark: Mark) -> bool:
    # A NaN or infinite bound has no column, and would drag the x range to infinity.
    return math.isfinite(mark.start) and (mark.end is None or math.isfinite(mark.end))


def _y_range(lo: float, hi: float) -> tuple[float, float]:
    """The y axis's bottom and top: the data's, with 0 at the bottom when the data comes
    near it anyway (a floor at 0 then reads as an absolute scale at little cost); a flat
    series gets a range with it at the top so nothing divides by zero."""
    if lo == hi:
        if lo > 0:
            return 0.0, lo
        if lo < 0:
            return lo, 0.0
        return 0.0, 1.0
    if lo >= 0 and lo <= 0.25 * hi:
        return 0.0, hi
    return lo, hi


def _tick_rows(plot_rows: int) -> list[int]:
    if plot_rows >= 3:
        return [0, (plot_rows - 1) // 2, plot_rows - 1]
    return [0, plot_rows - 1] if plot_rows == 2 else [0]


def _row_value(row: int, plot_rows: int, lo: float, hi: float) -> float:
    """The value a tick on `row` stands for: the top dot for the top row (the data's
    maximum), the bottom dot for the bottom row; a middle row gets the roundest number
    among the values its dots stand for, so the label is true to where lines are drawn
    and still reads at a glance (`1500ms`, not `1387ms`)."""
    if row == 0:
        return hi
    if row == plot_rows - 1:
        return lo
    per_dot = (hi - lo) / (plot_rows * 4 - 1)
    top = hi - row * 4 * per_dot
    return _roundest(top - 3 * per_dot, top)


def _roundest(a: float, b: float) -> float:
    """The multiple of the coarsest 1-2-5 step inside [a, b], nearest its middle."""
    step = 10.0 ** math.ceil(math.log10(b - a))
    while step > (b - a) * 1e-6:
        for factor in (1.0, 0.5, 0.2):
            size = step * factor
            first, last = math.ceil(a / size), math.floor(b / size)
            if first <= last:
                middle = round((a + b) / 2 / size)
                return min(max(middle, first), last) * size
        step /= 10
    return (a + b) / 2


class _XMap:
    """x to dot column: the range's left edge to column 0, the newest x to the last column."""

    def __init__(self, lo: float, hi: float, columns: int) -> None:
        self.lo, self.columns = lo, columns
        self.scale = (columns - 1) / (hi - lo) if hi > lo else 0.0

    def dot(self, x: float) -> int:
        if self.scale == 0.0:
            return self.columns - 1  # one x only: it is the newest, so at the right edge
        return min(max(round((x - self.lo) * self.scale), 0), self.columns - 1)


class _Canvas:
    """Braille dots for the plot area, with the series that last set each cell."""

    def __init__(self, width: int, rows: int, lo: float, hi: float) -> None:
        self.width, self.rows, self.lo = width, rows, lo
        self.dot_rows = rows * 4
        self.scale = (self.dot_rows - 1) / (hi - lo)
        self.bits = [0] * (width * rows)
        self.owner = [-1] * (width * rows)

    def draw(self, index: int, points: list[tuple[float, float]], xmap: _XMap) -> None:
        # More points than dot columns: keep each column's maximum, because the spikes are
        # what a latency chart is for and an average or a sample would hide them.
        tops: dict[int, float] = {}
        for x, y in points:
            col = xmap.dot(x)
            if col not in tops or y > tops[col]:
                tops[col] = y
        previous: tuple[int, int] | None = None
        for col in sorted(tops):
            row = self._dot_row(tops[col])
            if previous is None:
                self._set(col, row, index)
            else:
                self._segment(previous, (col, row), index)
            previous = (col, row)

    def _dot_row(self, y: float) -> int:
        row = round((y - self.lo) * self.scale)
        return self.dot_rows - 1 - min(max(row, 0), self.dot_rows - 1)

    def _segment(self, a: tuple[int, int], b: tuple[int, int], index: int) -> None:
        # Steps along the longer axis so a steep segment stays unbroken; the columns are
        # distinct and ascending, so the total work is bounded by the dot grid.
        (x0, y0), (x1, y1) = a, b
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(1, steps + 1):
            self._set(x0 + round((x1 - x0) * i / steps), y0 + round((y1 - y0) * i / steps), index)

    def _set(self, x: int, y: int, index: int) -> None:
        cell = (y >> 2) * self.width + (x >> 1)
        self.bits[cell] |= _BRAILLE_BITS[y & 3][x & 1]
        self.owner[cell] = index

    def row(
        self, row: int, styles: list[Style], markers: list[Style | None]
    ) -> list[tuple[str, Style | None]]:
        start = row * self.width
        cells: list[tuple[str, Style | None]] = []
        for col in range(self.width):
            bits = self.bits[start + col]
            if bits:
                cells.append((chr(_BRAILLE_BASE + bits), styles[self.owner[start + col]]))
            elif markers[col] is not None:
                cells.append(("│", markers[col]))
            else:
                cells.append((" ", None))
        return cells


def _place_marks(
    marks: Sequence[Mark], xmap: _XMap, x_hi: float, plot_w: int, background: RichColor
) -> tuple[list[Style | None], list[Style | None], list[tuple[int, str, Style]]]:
    """Per plot column: band shading and marker style; and the labels for the top row
    as (column, text, style). Marks outside the x range are left out."""
    band: list[Style | None] = [None] * plot_w
    markers: list[Style | None] = [None] * plot_w
    labels: list[tuple[int, str, Style]] = []
    x_lo = xmap.lo
    for mark in marks:
        style = parse_style(mark.style)
        start, end = mark.start, mark.end
        if end is not None and end < start:
            start, end = end, start
        if start > x_hi or (end if end is not None else start) < x_lo:
            continue
        first = xmap.dot(start) // 2
        if end is None:
            markers[first] = style
            label_col = first + 1
        else:
            shade = _band_style(style, background)
            for col in range(first, xmap.dot(end) // 2 + 1):
                band[col] = shade
            label_col = first
        text = _fit(mark.label, plot_w)
        if text:
            if label_col + len(text) > plot_w:  # no room right of it: put it on the left
                label_col = max(first - len(text), 0) if end is None else plot_w - len(text)
            labels.append((label_col, text, style + Style(bold=True)))
    return band, markers, labels


def _band_style(style: Style, background: RichColor) -> Style:
    """A background for a band: the mark's own background if it names one, else its
    colour faded into the chart's background (Rich styles cannot be translucent)."""
    if style.bgcolor is not None:
        return Style(bgcolor=style.bgcolor)
    colour = style.color or RichColor.parse("yellow")
    top, bottom = colour.get_truecolor(), background.get_truecolor(foreground=False)
    mixed = tuple(round(b + (t - b) * _BAND_ALPHA) for t, b in zip(top, bottom, strict=True))
    return Style(bgcolor=RichColor.from_rgb(*mixed))


def _x_labels(plot_w: int, lo: float, hi: float, x_format: Formatter) -> list[tuple[int, str]]:
    """(start column, text) for 4, 3 or 2 evenly spread x labels, the most that fit with
    two cells between them and differ; the first is flush left, the last flush right."""
    if hi <= lo:
        text = _fit(x_format(hi), plot_w)
        return [(plot_w - len(text), text)]
    for count in (4, 3, 2):
        spans: list[tuple[int, str]] = []
        for i in range(count):
            fraction = i / (count - 1)
            text = x_format(lo + fraction * (hi - lo))
            centre = fraction * (plot_w - 1)
            start = min(max(round(centre - (len(text) - 1) / 2), 0), plot_w - len(text))
            crowded = spans and start < spans[-1][0] + len(spans[-1][1]) + 2
            # Two equal labels (a short range rounded by x_format) would read as a gap.
            if start < 0 or crowded or (spans and text == spans[-1][1]):
                break
            spans.append((start, text))
        else:
            return spans
    text = _fit(x_format(hi), plot_w)
    return [(plot_w - len(text), text)]


def _title_line(
    width: int, title: str, series: Sequence[Series], styles: list[Style], title_style: Style
) -> Text:
    """The title, then a legend: with several series, a label already in the title is
    coloured there (the caller puts latest values next to labels) instead of repeated."""
    line = Text(title, style=title_style)
    legend = Text()
    if len(series) > 1:
        for s, style in zip(series, styles, strict=True):
            if not s.label:
                continue
            found = re.search(rf"(?<!\w){re.escape(s.label)}(?!\w)", title)
            if found:
                line.stylize(style + Style(bold=True), found.start(), found.end())
            else:
                legend.append("  ━ ", style)
                legend.append(s.label, style)
    if legend and line.cell_len + legend.cell_len > width:
        # The legend is what tells the lines apart: cut the title for it, while some is left.
        room = width - legend.cell_len
        if room >= 8:
            line.truncate(room, overflow="ellipsis")
        else:
            legend = Text()
    line.append_text(legend)
    return _exact(line, width)


def _sparkline(
    width: int,
    points: list[tuple[float, float]],
    style: Style,
    marks: Sequence[Mark],
    x_lo: float,
    x_hi: float,
    background: RichColor,
) -> Text:
    """One row of block heights: each column's maximum (as in the plot), columns between
    points filled by interpolation so few points still read as a line."""
    xmap = _XMap(x_lo, x_hi, width)
    tops: dict[int, float] = {}
    for x, y in points:
        col = xmap.dot(x)
        if col not in tops or y > tops[col]:
            tops[col] = y
    # From zero for a non-negative quantity: a sparkline has no tick labels, and without
    # them a range of 49.9..50.0 MiB would read as RSS jumping from nothing to full.
    low = min(tops.values())
    lo, hi = _y_range(min(low, 0.0) if low >= 0 else low, max(tops.values()))
    levels = len(_SPARK) - 1
    chars = [" "] * width
    columns = sorted(tops)
    for a, b in zip(columns, columns[1:] + columns[-1:], strict=True):
        for col in range(a, max(b, a + 1)):
            y = tops[a] + (tops[b] - tops[a]) * (col - a) / (b - a) if b > a else tops[a]
            chars[col] = _SPARK[min(max(round((y - lo) / (hi - lo) * levels), 0), levels)]
    band, markers, _ = _place_marks(marks, _XMap(x_lo, x_hi, width * 2), x_hi, width, background)
    cells: list[tuple[str, Style | None]] = []
    for col, char in enumerate(chars):
        marker = markers[col]
        if marker is None:
            cells.append((char, style))
        else:  # a finding's column takes its colour; with no bar there, a line
            cells.append(("│" if char == " " else char, marker))
    line = Text()
    _append_cells(line, cells, band)
    return _exact(line, width)


def _append_cells(
    line: Text, cells: list[tuple[str, Style | None]], band: list[Style | None]
) -> None:
    """Append cells as runs of one style each (one span a run, not a cell)."""
    run: list[str] = []
    run_style: Style | None = None
    for col, (char, style) in enumerate(cells):
        shade = band[col]
        full = style if shade is None else (shade if style is None else style + shade)
        if run and full != run_style:
            line.append("".join(run), run_style)
            run = []
        run.append(char)
        run_style = full
    if run:
        line.append("".join(run), run_style)


def _append_runs(
    line: Text,
    cells: list[str],
    spans: list[tuple[int, str]],
    axis_style: Style,
    label_style: Style,
) -> None:
    at = 0
    for start, text in spans:
        line.append("".join(cells[at:start]), axis_style)
        line.append(text, label_style)
        at = start + len(text)
    line.append("".join(cells[at:]), axis_style)


def _centred(message: str, width: int, style: Style) -> Text:
    text = _fit(message, width)
    pad = (width - cell_len(text)) // 2
    return _exact(Text(" " * pad) + Text(text, style), width)


def _fit(text: str, width: int) -> str:
    """Cut `text` to `width` cells; cells, not characters, so wide glyphs cannot overflow."""
    if cell_len(text) <= width:
        return text
    cut = Text(text)
    cut.truncate(width, overflow="ellipsis")
    return cut.plain


def _exact(line: Text, width: int) -> Text:
    line.truncate(width, overflow="ellipsis", pad=True)
    return line


# -- widget -----------------------------------------------------------------------------

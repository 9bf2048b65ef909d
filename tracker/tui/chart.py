"""`LineChart`: a Textual widget that draws `chart_layout.render_chart` and caches it.

The live screen (`tracker.tui.live`) draws one per service and probe series, redrawn once a
second, and the history screen draws one per metric over runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from tracker.tui.chart_layout import (
    Formatter,
    Mark,
    Series,
    compact_number,
    parse_style,
    render_chart,
    seconds_label,
)

__all__ = ["Formatter", "LineChart", "Mark", "Series", "compact_number", "render_chart",
           "seconds_label"]  # fmt: skip


class LineChart(Widget):
    """A `render_chart` chart as a widget: `set_data` replaces what it shows.

    It implements `render_line` with cached `Strip`s rather than `render()`: a dashboard
    repaints a dozen charts every second (and on every scroll), and the strips for an
    unchanged (size, data, title, style) are returned as they are, without re-running the
    layout or Textual's visual pipeline; only a new key lays the chart out again.
    """

    DEFAULT_CSS = """
    LineChart {
        height: 6;
        & > .linechart--title { text-style: bold; }
        & > .linechart--axis { color: $foreground-muted; }
        & > .linechart--tick { color: $foreground-muted; }
        & > .linechart--message { color: $foreground-muted; text-style: italic; }
        &.-highlighted > .linechart--title { color: $warning; }
        &.-highlighted > .linechart--axis { color: $warning; }
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "linechart--title",
        "linechart--axis",
        "linechart--tick",
        "linechart--message",
    }

    #: A finding touches this chart: title and axes turn the theme's warning colour.
    highlighted: reactive[bool] = reactive(False)
    #: The top row, e.g. "latency  p50 812ms  p99 1.2s"; series labels in it are coloured.
    title: reactive[str] = reactive("")

    def __init__(
        self,
        title: str = "",
        *,
        y_format: Formatter = compact_number,
        x_format: Formatter = seconds_label,
        empty_message: str = "no data yet",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.set_reactive(LineChart.title, title)
        self.y_format, self.x_format = y_format, x_format
        self.empty_message = empty_message
        self._series: tuple[Series, ...] = ()
        self._marks: tuple[Mark, ...] = ()
        self._version = 0
        self._style_epoch = 0
        self._cache_key: tuple[object, ...] | None = None
        self._strips: list[Strip] = []

    @property
    def series(self) -> tuple[Series, ...]:
        return self._series

    @property
    def marks(self) -> tuple[Mark, ...]:
        return self._marks

    def set_data(self, series: Sequence[Series], marks: Sequence[Mark] = ()) -> None:
        """Show `series` and `marks` instead of what was shown; a no-op when they are equal.

        The points are copied: callers pass live deques that keep growing, and the chart
        must draw what it was given (and compare it with the next call) at paint time.
        """
        copied = tuple(Series(s.label, tuple(s.points), s.style) for s in series)
        new_marks = tuple(marks)
        if copied == self._series and new_marks == self._marks:
            return
        self._series, self._marks = copied, new_marks
        self._version += 1
        self.refresh()

    def watch_highlighted(self, highlighted: bool) -> None:
        self.set_class(highlighted, "-highlighted")

    def render_line(self, y: int) -> Strip:
        strips = self._lines()
        if 0 <= y < len(strips):
            return strips[y]
        return Strip.blank(self.size.width, self.visual_style.rich_style)

    def notify_style_update(self) -> None:
        # CSS changed (a theme, the -highlighted class): the cached strips hold old colours.
        super().notify_style_update()
        self._style_epoch += 1

    def _lines(self) -> list[Strip]:
        width, height = self.size
        # Checked once per row painted: the key is cheap; the styles are resolved only when
        # the chart is laid out again (profiling showed the lookups dominating otherwise).
        key = (width, height, self._version, self.title, self._style_epoch)
        if key == self._cache_key:
            return self._strips
        component = self.get_component_rich_style
        styles = (
            component("linechart--title"),
            component("linechart--axis"),
            component("linechart--tick"),
            component("linechart--message"),
        )
        base = self.visual_style.rich_style
        title_style, axis_style, tick_style, message_style = styles
        background = self.visual_style.background
        lines = render_chart(
            width,
            height,
            self._series,
            self._marks,
            y_format=self.y_format,
            x_format=self.x_format,
            title=self.title,
            empty_message=self.empty_message,
            title_style=title_style,
            axis_style=axis_style,
            tick_style=tick_style,
            message_style=message_style,
            background=background.hex6 if background is not None else "black",
        )
        console = self.app.console
        # Text.render leaves out the line's own style (Rich applies it in __rich_console__).
        self._strips = [
            Strip(line.render(console), width).apply_style(base + parse_style(line.style))
            for line in lines
        ]
        self._cache_key = key
        return self._strips

"""One scenario's screen: its runs (every status, newest first) next to trend charts of
its key metrics, change points marked on them and listed below; two runs picked here
open the compare screen.

Pushed by `tracker.tui.history_app` (from the scenario list, or first for
`history --scenario` and under the compare screen of `compare`). The data comes from
`tracker.tui.history_data.load_scenario`, read in a thread worker: a season of nightly
runs is a few hundred rows to decode and a change-point search per metric, which must
not stall the keys.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tracker.analysis.compare import Comparison
from tracker.errors import PerfsleuthError
from tracker.tui.chart import LineChart, Mark, Series
from tracker.tui.compare_view import CompareScreen
from tracker.tui.history_data import (
    CHANGE_STYLES,
    TREND_METRICS,
    ScenarioData,
    Source,
    change_line,
    change_state,
    compare_pair,
    load_scenario,
)
from tracker.tui.loading import stop_loading
from tracker.units import format_ms

STARTED_FORMAT = "%Y-%m-%d %H:%M"
_CHANGE_ORDER = ("alert", "minor", "better", "accepted")


class ScenarioLoaded(Message):
    def __init__(self, data: ScenarioData) -> None:
        super().__init__()
        self.data = data


class LoadFailed(Message):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class RunTable(DataTable[str | Text]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select_cursor", "Compare")]


class ScenarioScreen(Screen[None]):
    """One scenario: its runs, its trends, its change points; two runs -> compare."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("space", "mark", "Mark baseline"),
        Binding("b", "compare_default", "Vs baseline"),
    ]

    def __init__(self, source: Source, key: str) -> None:
        super().__init__()
        self.source = source
        self.key = key
        self.data: ScenarioData | None = None
        self.marked: int | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"scenario {self.key[:8]}", id="title")
        with Horizontal(id="body"):
            yield RunTable(id="runs", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="trends"):
                for metric, title, fmt in TREND_METRICS:
                    yield LineChart(
                        title,
                        y_format=fmt,
                        id=f"trend-{metric.replace('.', '-')}",
                        classes="trend",
                    )
        yield Static(id="changes")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(RunTable)
        table.add_column(" ", key="mark")
        table.add_columns("id", "started (UTC)", "status", "tag", "p50", "p99", "req/s", "finds")
        table.loading = True
        for chart in self.query(LineChart):
            chart.display = False
        self._load()

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        try:
            data = load_scenario(self.source.store, self.key, self.source.limit)
            self.post_message(ScenarioLoaded(data))
        except PerfsleuthError as exc:
            self.post_message(LoadFailed(str(exc)))

    def on_scenario_loaded(self, message: ScenarioLoaded) -> None:
        self.data = data = message.data
        table = self.query_one(RunTable)
        stop_loading(table)
        for row in data.runs:
            status = row.status if row.status == "completed" else Text(row.status, "yellow")
            table.add_row(
                "",
                str(row.id),
                row.started.strftime(STARTED_FORMAT),
                status,
                Text(row.tag or ""),
                format_ms(row.p50_ms),
                format_ms(row.p99_ms),
                "-" if row.throughput_rps is None else f"{row.throughput_rps:.1f}",
                Text(str(row.findings), "yellow") if row.findings else "0",
                key=str(row.id),
            )
        self.query_one("#title", Static).update(self._title())
        self.query_one("#changes", Static).update(self._changes())
        self._draw_charts()
        table.focus()

    def on_load_failed(self, message: LoadFailed) -> None:
        stop_loading(self.query_one(RunTable))
        self.notify(message.reason, title="history", severity="error")

    # -- keys --------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss()

    def action_mark(self) -> None:
        run_id = self._selected()
        if run_id is None:
            return
        table = self.query_one(RunTable)
        if self.marked is not None:
            table.update_cell(str(self.marked), "mark", "")
        self.marked = None if self.marked == run_id else run_id
        if self.marked is not None:
            table.update_cell(str(run_id), "mark", Text("B", "bold cyan"))
            self.notify(
                f"run {run_id} is the baseline: enter on another run compares it",
                title="baseline",
            )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.data is None or event.row_key.value is None:
            return
        candidate = int(event.row_key.value)
        if self.marked is None:
            self.notify(
                "mark a baseline run with space first, or press b to compare with "
                f"{self.source.baseline}",
                severity="warning",
            )
        elif self.marked == candidate:
            self.notify("this run is the marked baseline; pick another run", severity="warning")
        else:
            self._compare(candidate, str(self.marked))

    def action_compare_default(self) -> None:
        candidate = self._selected()
        if candidate is not None:
            self._compare(candidate, self.source.baseline)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._draw_charts()

    # -- helpers -------------------------------------------------------------------------

    def _selected(self) -> int | None:
        table = self.query_one(RunTable)
        if self.data is None or not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return None if key is None else int(key)

    def _compare(self, candidate: int, baseline: str) -> None:
        source = self.source

        def compute() -> Comparison:
            return compare_pair(source, str(candidate), baseline)

        self.app.push_screen(CompareScreen(compute, f"run {candidate} vs {baseline}"))

    def _run_label(self, x: float) -> str:
        ids = self.data.run_ids if self.data is not None else []
        return f"#{ids[min(max(round(x), 0), len(ids) - 1)]}" if ids else ""

    def _title(self) -> Text:
        assert self.data is not None
        history = self.data.history
        alerts = sum(c.alerts for c in history.changes)
        text = Text.assemble(
            ("scenario ", "dim"),
            (history.scenario or "?", "bold"),
            f" ({self.key[:8]})  ",
            f"{len(history.runs)} completed runs" if history.runs else "no completed runs",
        )
        if history.runs:
            text.append(f" {history.runs[0].id}..{history.runs[-1].id}")
        if alerts:
            text.append(f"   {alerts} alert{'s' * (alerts > 1)}", "bold red")
        return text

    def _changes(self) -> Text:
        assert self.data is not None
        changes = self.data.history.changes
        if not changes:
            return Text("no change points", style="dim")
        text = Text()
        # Most pressing first: on a short terminal the list is cut after two lines.
        for change in sorted(changes, key=lambda c: _CHANGE_ORDER.index(change_state(c))):
            state = change_state(change)
            text.append("● ", CHANGE_STYLES[state])
            text.append(change_line(change), "dim" if state == "accepted" else "")
            text.append("\n")
        text.rstrip()
        return text

    def _draw_charts(self) -> None:
        if self.data is None:
            return
        ids = self.data.run_ids
        selected = self._selected()
        cursor = ids.index(selected) if selected in ids else None
        shown = {t.metric: t for t in self.data.trends}
        for metric, _, fmt in TREND_METRICS:
            chart = self.query_one(f"#trend-{metric.replace('.', '-')}", LineChart)
            trend = shown.get(metric)
            chart.display = trend is not None
            if trend is None:
                continue
            marks = [
                Mark(x, label=f"{c.change_pct:+.0f}%", style=CHANGE_STYLES[change_state(c)])
                for x, c in trend.changes
            ]
            if cursor is not None:
                # Unlabelled: the change labels own the top row; the line shows the run.
                marks.append(Mark(float(cursor), style="cyan"))
            chart.x_format = self._run_label
            chart.title = f"{trend.title}  {fmt(trend.points[-1][1])}"
            chart.highlighted = any(c.alerts for _, c in trend.changes)
            chart.set_data([Series(trend.title, trend.points)], marks)

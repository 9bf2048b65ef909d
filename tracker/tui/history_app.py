"""The history app: stored scenarios, then one scenario's runs and trends
(`tracker.tui.scenario_view`), then two runs side by side (`tracker.tui.compare_view`).

Used by `perfsleuth history` and `perfsleuth compare` on a terminal, through
`tracker.cli.screens`. The scenario list is read in a thread worker, as every screen here
reads the store: the newest thousand runs with their summaries take a moment to decode.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tracker.analysis.compare import Comparison
from tracker.errors import PerfsleuthError
from tracker.tui.compare_view import CompareScreen
from tracker.tui.history_data import ScenarioRow, Source, list_scenarios
from tracker.tui.loading import stop_loading
from tracker.tui.scenario_view import STARTED_FORMAT, LoadFailed, ScenarioScreen


class ScenariosLoaded(Message):
    def __init__(self, rows: list[ScenarioRow]) -> None:
        super().__init__()
        self.rows = rows


class ScenarioTable(DataTable[str | Text]):
    # DataTable hides its `enter`; here it is the way in, so the Footer shows it.
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select_cursor", "Open")]


class ScenarioListScreen(Screen[None]):
    """Every scenario identity among the newest runs; `enter` opens one."""

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source

    def compose(self) -> ComposeResult:
        yield Static("scenarios, the most recently run first", id="title")
        yield ScenarioTable(id="scenarios", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(ScenarioTable)
        table.add_columns("scenario", "key", "runs", "last run", "started (UTC)")
        table.loading = True
        self._load()

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        try:
            self.post_message(ScenariosLoaded(list_scenarios(self.source.store)))
        except PerfsleuthError as exc:
            self.post_message(LoadFailed(str(exc)))

    def on_scenarios_loaded(self, message: ScenariosLoaded) -> None:
        table = self.query_one(ScenarioTable)
        stop_loading(table)
        for row in message.rows:
            table.add_row(
                Text(row.name),  # not markup, whatever the name holds
                row.key[:8],
                str(row.runs),
                str(row.last_run_id),
                row.last_started.strftime(STARTED_FORMAT),
                key=row.key,
            )
        if not message.rows:
            self.query_one("#title", Static).update(
                f"no runs stored yet in {self.source.store.location}; "
                "start one with `perfsleuth run`"
            )

    def on_load_failed(self, message: LoadFailed) -> None:
        stop_loading(self.query_one(ScenarioTable))
        self.notify(message.reason, title="history", severity="error")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.push_screen(ScenarioScreen(self.source, event.row_key.value))


class HistoryApp(App[None]):
    """`perfsleuth history` / `compare` on a terminal: scenarios -> runs -> comparison."""

    CSS_PATH = "history.tcss"
    TITLE = "perfsleuth history"
    # Its Footer entry would push the screen's own keys out of 80 columns, and every
    # action here has a key.
    ENABLE_COMMAND_PALETTE = False
    # Below 110 columns the charts go under the runs table rather than beside it.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]  # noqa: RUF012
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        # Leaving a read-only screen loses nothing: Ctrl-C leaves, as a shell user expects.
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Keys"),
    ]

    def __init__(
        self,
        source: Source,
        *,
        scenario_key: str | None = None,
        comparison: Comparison | None = None,
    ) -> None:
        """Start on the scenario list, on `scenario_key`'s runs, or on `comparison`
        (escape from it leads to its scenario's runs, then to the list)."""
        super().__init__()
        self.source = source
        self._start_key = scenario_key
        self._comparison = comparison

    def on_mount(self) -> None:
        self.push_screen(ScenarioListScreen(self.source))
        if self._start_key is not None:
            self.push_screen(ScenarioScreen(self.source, self._start_key))
        if (comparison := self._comparison) is not None:
            what = f"run {comparison.run_id} vs {comparison.baseline_spec}"
            self.push_screen(CompareScreen(lambda: comparison, what))

    def action_help(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

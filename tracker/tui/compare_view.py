"""The compare screen: a run against its baseline, side by side, with the verdict, the
likely causes and their evidence.

Pushed by the history screens (`tracker.tui.history_app`) for two runs picked there, and
first on the stack for `perfsleuth compare` on a terminal. It shows a `Comparison`'s JSON
document (docs/json.md, the compare document), formatted by the same helpers as
`compare --format text`, so the screen and the text report always agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tracker.analysis.compare import Comparison
from tracker.errors import PerfsleuthError
from tracker.reports.compare_text import (
    VERDICT_SYMBOL,
    baseline_label,
    change_point_text,
    change_text,
    interval_text,
    metric_value,
    render_text,
    shown_metrics,
)
from tracker.tui.loading import stop_loading

#: Verdict -> Rich style, for the header badge and the table's verdict cells.
VERDICT_STYLES = {
    "regressed": "bold red",
    "improved": "bold green",
    "unchanged": "",
    "inconclusive": "bold yellow",
}
#: Longest metric name shown whole; longer probe names are cut so the values stay in view.
METRIC_WIDTH = 22
_BADGE_STYLES = {
    "regressed": "bold white on red",
    "improved": "bold black on green",
    "unchanged": "bold black on grey70",
    "inconclusive": "bold black on yellow",
}


class ComparisonReady(Message):
    """The worker finished comparing."""

    def __init__(self, comparison: Comparison) -> None:
        super().__init__()
        self.comparison = comparison


class ComparisonFailed(Message):
    """The comparison could not be made (e.g. the baseline run failed): why, in words."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def verdict_line(doc: dict[str, Any]) -> str:
    """The report's first line (`run 9 (name) vs last:5 (runs 4, 5): REGRESSED`), which
    `compare` prints when the user leaves the screen."""
    return render_text(doc).split("\n", 1)[0]


def header_text(doc: dict[str, Any]) -> Text:
    verdict = doc["verdict"]
    return Text.assemble(
        (f" {verdict.upper()} ", _BADGE_STYLES[verdict]),
        "  run ",
        (str(doc["run_id"]), "bold"),
        f" ({doc['scenario']}) vs {baseline_label(doc)}",
        (f"   intervals at {doc['ci_level'] * 100:.1f}%", "dim"),
    )


def metric_rows(doc: dict[str, Any]) -> list[tuple[Text, ...]]:
    """Gating metrics, then probe metrics that changed, as the text report lists them."""
    rows: list[tuple[Text, ...]] = []
    for m in shown_metrics(doc, True) + shown_metrics(doc, False):
        verdict = m["verdict"]
        # The verdict's symbol leads the row: at 80 columns the verdict column is past
        # the right edge, the symbol and its colour are not. Probes read dim, unprefixed.
        name = m["name"] if m["gating"] else m["name"].removeprefix("probes.")
        rows.append(
            (
                Text.assemble(
                    (f"{VERDICT_SYMBOL[verdict]} ", VERDICT_STYLES[verdict]),
                    (_cut(name, METRIC_WIDTH), "" if m["gating"] else "dim"),
                ),
                Text(metric_value(m["baseline"], m["unit"])),
                Text(metric_value(m["candidate"], m["unit"])),
                Text(change_text(m), style=VERDICT_STYLES[verdict]),
                Text(interval_text(m)),  # a Text: DataTable would read "[...]" as markup
                Text(f"{VERDICT_SYMBOL[verdict]} {verdict}", style=VERDICT_STYLES[verdict]),
            )
        )
    return rows


def explanation(doc: dict[str, Any]) -> Text:
    """Causes with their evidence, history change points, environment, warnings, notes."""
    text = Text()
    if not doc["causes"]:
        text.append("no likely cause among the probes", style="dim")
        text.append("\n")
    for i, cause in enumerate(doc["causes"], start=1):
        text.append(f"{i}. {cause['cause']}", style="bold")
        text.append(f"  score {cause['score']:.2f}\n")
        for line in cause["evidence"]:
            text.append(f"   - {line}\n")
    for cp in doc.get("change_points") or []:
        text.append("history: ", style="bold red")
        text.append(f"{change_point_text(cp)}\n")
    for change in doc["environment_changes"]:
        text.append(
            f"changed: {change['key']}: {', '.join(change['baseline'])} -> {change['candidate']}\n",
            style="yellow",
        )
    for warning in doc["warnings"]:
        text.append("warning: ", style="bold yellow")
        text.append(f"{warning}\n")
    for note in doc["notes"]:
        text.append(f"note: {note}\n", style="dim")
    text.rstrip()
    return text


class CompareScreen(Screen[None]):
    """One comparison; `compute` runs in a thread (it may read every window of a group)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, compute: Callable[[], Comparison], what: str) -> None:
        """`what`: the comparison in words while it is being made, e.g. `run 9 vs 4`."""
        super().__init__()
        self._compute = compute
        self._what = what
        self.comparison: Comparison | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text(f"comparing {self._what}…"), id="verdict")
        yield DataTable[Text](id="metrics", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="explain"):
            yield Static(id="causes")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("metric", "baseline", "this run", "change", "CI", "verdict")
        table.loading = True
        self._run()

    @work(thread=True, exclusive=True)
    def _run(self) -> None:
        try:
            self.post_message(ComparisonReady(self._compute()))
        except PerfsleuthError as exc:
            self.post_message(ComparisonFailed(str(exc)))

    def on_comparison_ready(self, message: ComparisonReady) -> None:
        self.comparison = message.comparison
        doc = message.comparison.to_json()
        table = self.query_one(DataTable)
        stop_loading(table)
        for row in metric_rows(doc):
            table.add_row(*row)
        self.query_one("#verdict", Static).update(header_text(doc))
        self.query_one("#causes", Static).update(explanation(doc))
        table.focus()

    def on_comparison_failed(self, message: ComparisonFailed) -> None:
        stop_loading(self.query_one(DataTable))
        self.query_one("#verdict", Static).update(
            Text.assemble((" CANNOT COMPARE ", "bold white on red"), f"  {self._what}")
        )
        self.query_one("#causes", Static).update(Text(message.reason, style="red"))
        self.notify(message.reason, title="compare", severity="error")

    def action_back(self) -> None:
        self.dismiss()

"""The live screen: latency, throughput and errors over time, probe sparklines, and each
degradation as it is flagged, fed once a second from the run's own thread.

The run (driver, probes, store) never waits for the screen: `LiveFeed` hands each closed
window over with `post_message` (thread-safe, non-blocking) and the app folds it into
`LiveState` and redraws on its own loop, at most once per window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Sparkline, Static

from tracker.analysis.detect import Degradation
from tracker.metrics import Window
from tracker.tui.state import PROBE_PANELS, LiveState
from tracker.units import format_ms, format_value

#: The service charts: (series, label, how a value reads).
SERVICE_CHARTS = (
    ("latency_p50", "latency p50", format_ms),
    ("latency_p99", "latency p99", format_ms),
    ("throughput", "throughput", lambda v: f"{v:.1f} req/s"),
    ("errors", "errors", lambda v: f"{v:.1f}/s"),
)
LLM_CHARTS = (
    ("ttft_p50", "TTFT p50", format_ms),
    ("itl_p50", "ITL p50", format_ms),
    ("tokens_per_s", "tokens", lambda v: f"{v:.0f}/s"),
)
_LLM_KEYS = frozenset(key for key, *_ in LLM_CHARTS)


class WindowClosed(Message):
    def __init__(self, window: Window, probes: dict[str, float]) -> None:
        super().__init__()
        self.window, self.probes = window, probes


class Flagged(Message):
    def __init__(self, degradation: Degradation) -> None:
        super().__init__()
        self.degradation = degradation


class Noted(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class Chart(Vertical):
    """A labelled sparkline with its latest value."""

    def __init__(self, key: str, label: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="chart")
        self.key, self.label = key, label

    def compose(self) -> ComposeResult:
        yield Static(self.label, classes="chart-label")
        yield Sparkline([], summary_function=max)

    def show(self, data: list[float], value: str) -> None:
        self.query_one(Static).update(f"{self.label}  [b]{value}[/b]")
        self.query_one(Sparkline).data = data


class LiveApp(App[None]):
    """`perfsleuth run/demo/attach` on a terminal. `q` ends the run (it is stored)."""

    CSS_PATH = "app.tcss"
    TITLE = "perfsleuth"
    # Narrower than 100 columns or shorter than 30 rows, the probe column and the
    # findings collapse (see app.tcss); at 80x24 the service charts stay.
    # (Textual declares these as instance attributes, hence no ClassVar.)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]  # noqa: RUF012
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("q", "quit_run", "Quit (run is kept)"),
        Binding("ctrl+c", "quit_run", "Quit", show=False, priority=True),
        Binding("p", "pause", "Pause view"),
        Binding("f", "toggle_panel('#findings')", "Findings"),
        Binding("s", "toggle_panel('#probes')", "Probes"),
        Binding("question_mark", "help", "Keys"),
    ]

    def __init__(
        self,
        state: LiveState,
        on_quit: Callable[[], None] | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """`on_quit`: ask the run to stop (from `q`); `on_ready`: start feeding (called
        once the app runs: `post_message` from another thread is only safe from then on)."""
        super().__init__()
        self.state = state
        self.paused = False
        self._on_quit = on_quit
        self._on_ready = on_ready
        self._quitting = False

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        with Horizontal(id="body"):
            with VerticalScroll(id="service"):
                for key, label, _ in SERVICE_CHARTS + LLM_CHARTS:
                    yield Chart(key, label, id=f"chart-{key}")
            with VerticalScroll(id="probes"):
                for i, panel in enumerate(PROBE_PANELS):
                    yield Chart("", panel.label, id=f"probe-{i}")
        yield Static("no degradation so far", id="findings")
        yield Footer()

    def on_mount(self) -> None:
        self._redraw()
        if self._on_ready is not None:
            self._on_ready()

    # -- messages from the run's thread ------------------------------------------------

    def on_window_closed(self, message: WindowClosed) -> None:
        self.state.add_window(message.window, message.probes)
        if not self.paused:
            self._redraw()

    def on_flagged(self, message: Flagged) -> None:
        self.state.add_degradation(message.degradation)
        line = self.state.finding_line(message.degradation)
        self.notify(line, title="degradation", severity="warning", timeout=8)
        self._redraw_findings()

    def on_noted(self, message: Noted) -> None:
        self.state.add_note(message.text)
        self._redraw_header()

    # -- keys ------------------------------------------------------------------------------

    def action_quit_run(self) -> None:
        """Ask the run to stop (it finishes storing), then leave; a second press leaves."""
        if self._quitting or self._on_quit is None:
            self.exit()
            return
        self._quitting = True
        self._on_quit()
        self.state.add_note("stopping: finishing the run and storing it (q again to leave now)")
        self._redraw_header()

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self._redraw()
        self._redraw_header()

    def action_toggle_panel(self, selector: str) -> None:
        widget = self.query_one(selector)
        widget.display = not widget.display

    def action_help(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    # -- drawing -----------------------------------------------------------------------------

    def _redraw(self) -> None:
        with self.batch_update():
            self._redraw_header()
            self._redraw_charts()
            self._redraw_findings()

    def _redraw_header(self) -> None:
        s = self.state
        phase = "warm-up" if s.warmup else "draining" if s.draining else "measuring"
        if self.paused:
            phase += ", view paused (p)"
        lag = s.schedule_lag_p99_ms
        driver = "driver: -" if lag is None else f"driver lag p99 {format_ms(lag)}"
        if lag is not None and lag > 10.0:
            driver = f"[b red]DRIVER SATURATED[/]: schedule lag p99 {format_ms(lag)}"
        note = f"\n» {s.notes[-1]}" if s.notes else ""
        self.query_one("#header", Static).update(
            f"[b]{s.scenario}[/b]  {s.target}  {s.load}\n"
            f"{s.elapsed_s:.0f}s / {s.total_s:.0f}s ({phase})  {driver}{note}"
        )

    def _redraw_charts(self) -> None:
        s = self.state
        for key, _, fmt in SERVICE_CHARTS + LLM_CHARTS:
            chart = self.query_one(f"#chart-{key}", Chart)
            data = s.series.get(key)
            if key in _LLM_KEYS:
                chart.display = data is not None  # streamed LLM runs only
            chart.show(list(data or []), fmt(data[-1]) if data else "-")
        for i, panel in enumerate(PROBE_PANELS):
            chart = self.query_one(f"#probe-{i}", Chart)
            metric = s.panel_metric(panel)
            if metric is None:
                chart.show([], "no GPU" if panel.label.startswith("GPU") else "not sampled")
                continue
            values = s.probes[metric]
            chart.show(list(values), format_value(values[-1], panel.unit))

    def _redraw_findings(self) -> None:
        found = self.state.findings
        text = (
            "\n".join(f"[b yellow]![/] {self.state.finding_line(d)}" for d in found[-5:])
            if found
            else "no degradation so far"
        )
        self.query_one("#findings", Static).update(text)


class LiveFeed:
    """The runner's live view (the `ProgressPrinter` interface) for the app: called on the
    run's threads, it only posts messages."""

    def __init__(self, app: LiveApp) -> None:
        self.app = app

    def window(self, window: Window, probes: dict[str, float]) -> None:
        self.app.post_message(WindowClosed(window, dict(probes)))

    def note(self, message: str) -> None:
        self.app.post_message(Noted(message))

    def degradation(self, d: Degradation) -> None:
        self.app.post_message(Flagged(d))

"""The live screen: latency, throughput and errors over time, probe charts, each degradation
with its cause as it is flagged, and the target's hottest functions, fed once a second from
the run's own threads.

Shown by the screen's own process (`tracker.tui.screen_process`) for `run`, `demo` and
`attach` on a terminal; the run goes on in perfsleuth's process and never waits for it.
What the run reports arrives over a socket; `LiveFeed` hands it to the app with
`post_message` (thread-safe, non-blocking), and the app folds it into `LiveState` and
redraws on its own loop, at most once per refresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar

from rich.markup import escape
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from probes.stacks.profile import FunctionTime
from tracker.records import FindingRecord
from tracker.records.window import Window
from tracker.tui.chart import LineChart, Mark, Series
from tracker.tui.finding_screen import FindingScreen
from tracker.tui.state import PROBE_PANELS, LiveState, WindowPoints
from tracker.units import format_ms, format_value

#: The service charts: id, title, and the series each draws as (state series, legend, style).
SERVICE_CHARTS: tuple[tuple[str, str, tuple[tuple[str, str, str], ...]], ...] = (
    ("latency", "latency", (("latency_p50", "p50", "cyan"), ("latency_p99", "p99", "magenta"))),
    ("throughput", "throughput", (("throughput", "ok/s", "green"), ("errors", "err/s", "red"))),
    ("ttft", "TTFT", (("ttft_p50", "p50", "cyan"),)),
    ("itl", "ITL", (("itl_p50", "p50", "cyan"),)),
    ("tokens", "tokens/s", (("tokens_per_s", "tokens/s", "green"),)),
    # Asynchronous tasks: latency above is the whole wait; these are parts of it.
    (
        "tasks",
        "task parts",
        (("task_queue_p50", "queue p50", "yellow"), ("task_submit_p50", "submit p50", "cyan")),
    ),
)
_LLM_CHARTS = frozenset({"ttft", "itl", "tokens"})
#: CSS classes that show a chart only for runs that have its data (app.tcss).
_KIND = {**dict.fromkeys(_LLM_CHARTS, "llm-chart"), "tasks": "task-chart"}
#: Charts that give way on a short terminal (tokens/s follows throughput, ITL follows TTFT).
_MINOR_CHARTS = frozenset({"itl", "tokens"})
_MS_SERIES = frozenset(
    {"latency_p50", "latency_p99", "ttft_p50", "itl_p50", "task_queue_p50", "task_submit_p50"}
)
#: Schedule lag p99 past which the driver itself adds latency (the run JSON's `saturated`).
SATURATED_LAG_MS = 10.0


class WindowClosed(Message):
    def __init__(self, points: WindowPoints, probes: dict[str, float]) -> None:
        super().__init__()
        self.points, self.probes = points, probes


class ProbesRead(Message):
    """Probe readings without a window (`attach`: no load)."""

    def __init__(self, t_s: float, probes: dict[str, float]) -> None:
        super().__init__()
        self.t_s, self.probes = t_s, probes


class Found(Message):
    def __init__(self, finding: FindingRecord) -> None:
        super().__init__()
        self.finding = finding


class Noted(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class StacksTaken(Message):
    def __init__(self, end_s: float, duration_s: float, top: list[FunctionTime]) -> None:
        super().__init__()
        self.end_s, self.duration_s, self.top = end_s, duration_s, top


def _value(name: str, value: float) -> str:
    return format_ms(value) if name in _MS_SERIES else f"{value:.3g}"


def _marks(findings: Iterable[FindingRecord]) -> list[Mark]:
    return [Mark(f.start_s, f.end_s, f"!{i}") for i, f in enumerate(findings, 1)]


class LiveApp(App[None]):
    """`perfsleuth run/demo/attach` on a terminal. `q` ends the run (it is stored)."""

    CSS_PATH = "app.tcss"
    TITLE = "perfsleuth"
    AUTO_FOCUS = "#findings"
    # Narrower than 100 columns or shorter than 30 rows, the probe column, the stack panel
    # and the findings collapse (see app.tcss); at 80x24 the service charts stay.
    # (Textual declares these as instance attributes, hence no ClassVar.)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]  # noqa: RUF012
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("q", "quit_run", "Quit (run is kept)"),
        Binding("ctrl+c", "quit_run", "Quit", show=False, priority=True),
        Binding("p", "pause", "Pause view"),
        Binding("o", "open_finding", "Open finding"),
        Binding("f", "toggle_panel('#findings')", "Findings"),
        Binding("s", "toggle_panel('#probes')", "Probes"),
        Binding("t", "toggle_panel('#stacks')", "Top functions"),
        Binding("question_mark", "help", "Keys"),
    ]

    def __init__(
        self,
        state: LiveState,
        on_quit: Callable[[], None] | None = None,
        on_ready: Callable[[], None] | None = None,
        refresh_s: float = 1.0,
    ) -> None:
        """`on_quit`: ask the run to stop (from `q`); `on_ready`: start feeding (called
        once the app runs: `post_message` from another thread is only safe from then on);
        `refresh_s`: how often the screen redraws what arrived."""
        super().__init__()
        self.state = state
        self.paused = False
        self.refresh_s = refresh_s
        self._dirty = False
        self._shown: dict[str, object] = {}  # what each text panel shows, to skip no-ops
        self._on_quit = on_quit
        self._on_ready = on_ready
        self._quitting = False

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        with Horizontal(id="body"):
            with Vertical(id="service"):
                for key, title, _ in SERVICE_CHARTS:
                    kind = _KIND.get(key, "")
                    minor = "minor-chart" if key in _MINOR_CHARTS else ""
                    yield LineChart(
                        title, id=f"chart-{key}", classes=f"service-chart {kind} {minor}"
                    )
            with VerticalScroll(id="probes"):
                for i, panel in enumerate(PROBE_PANELS):
                    # An empty panel says why in its title ("no GPU"), not in the plot.
                    yield LineChart(
                        panel.label, id=f"probe-{i}", classes="probe-chart", empty_message=""
                    )
        with Horizontal(id="bottom"):
            yield OptionList(id="findings")
            yield Static(id="stacks")
        yield Footer()

    def on_mount(self) -> None:
        self._redraw()
        # Messages only fold data in; the screen is drawn on this clock. Windows arrive once
        # a second, but workers' windows, probe readings, findings and stack windows come
        # on their own beats: one redraw per tick draws them all (and a slower refresh
        # spares a slow SSH link).
        self.set_interval(self.refresh_s, self._tick)
        if self._on_ready is not None:
            self._on_ready()

    # -- messages from the run's threads -------------------------------------------------

    def on_window_closed(self, message: WindowClosed) -> None:
        self.state.add_points(message.points, message.probes)
        self._dirty = True

    def on_probes_read(self, message: ProbesRead) -> None:
        self.state.add_probes(message.t_s, message.probes)
        self._dirty = True

    def on_found(self, message: Found) -> None:
        if self.state.add_finding(message.finding):
            line = self.state.finding_line(message.finding)
            self.notify(line, title="degradation", severity="warning", timeout=8)
        self._dirty = True

    def on_noted(self, message: Noted) -> None:
        self.state.add_note(message.text)
        self._dirty = True

    def on_stacks_taken(self, message: StacksTaken) -> None:
        self.state.add_stacks(message.end_s, message.duration_s, message.top)
        self._dirty = True

    def _tick(self) -> None:
        if self._dirty and not self.paused:
            self._dirty = False
            self._redraw()

    def on_option_list_option_selected(self, message: OptionList.OptionSelected) -> None:
        self._open(message.option_index)

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
            self._dirty = False
            self._redraw()
        self._redraw_header()

    def action_open_finding(self) -> None:
        """The finding under the cursor, else the newest."""
        index = self.query_one("#findings", OptionList).highlighted
        self._open(index if index is not None else len(self.state.found) - 1)

    def action_toggle_panel(self, selector: str) -> None:
        widget = self.query_one(selector)
        widget.display = not widget.display

    def action_help(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def _open(self, index: int) -> None:
        findings = self.state.findings
        if 0 <= index < len(findings) and not isinstance(self.screen, FindingScreen):
            self.push_screen(FindingScreen(findings[index], live=True))

    # -- drawing -----------------------------------------------------------------------------

    def _redraw(self) -> None:
        with self.batch_update():
            self._redraw_header()
            self._redraw_charts()
            self._redraw_findings()
            self._redraw_stacks()

    def _redraw_header(self) -> None:
        s = self.state
        phase = "warm-up" if s.warmup else "draining" if s.draining else "measuring"
        if self.paused:
            phase += ", view paused (p)"
        lag = s.schedule_lag_p99_ms
        driver = "" if lag is None else f"  driver lag p99 {format_ms(lag)}"
        if lag is not None and lag > SATURATED_LAG_MS:
            driver = f"  [b red]DRIVER SATURATED[/]: schedule lag p99 {format_ms(lag)}"
        clock = f"{s.elapsed_s:.0f}s / {s.total_s:.0f}s" if s.total_s else f"{s.elapsed_s:.0f}s"
        note = f"\n» {escape(s.notes[-1])}" if s.notes else ""
        self._update(
            "#header",
            f"[b]{escape(s.scenario)}[/b]  {escape(s.target)}  {escape(s.load)}\n"
            f"{clock} ({phase}){driver}{note}",
        )

    def _redraw_charts(self) -> None:
        s = self.state
        self.screen.set_class(s.is_llm(), "-llm")  # the LLM charts show (app.tcss)
        self.screen.set_class(s.has_tasks(), "-tasks")
        flagged = s.flagged_charts()
        marks = _marks(s.found.values())
        for key, title, lines in SERVICE_CHARTS:
            chart = self.query_one(f"#chart-{key}", LineChart)
            shown = [(name, label, style) for name, label, style in lines if name in s.series]
            latest = "  ".join(
                f"{label} {_value(name, s.series[name][-1][1])}" for name, label, _ in shown
            )
            if key == "latency" and s.has_tasks():
                title = "task latency (submitted -> done)"
            chart.title = f"{title}  {latest}" if latest else title
            chart.highlighted = key in flagged
            chart.set_data(
                [Series(label, list(s.series[name]), style) for name, label, style in shown],
                marks,
            )
        for i, panel in enumerate(PROBE_PANELS):
            chart = self.query_one(f"#probe-{i}", LineChart)
            metric = s.panel_metric(panel)
            if metric is None:
                gone = "no GPU" if panel.label.startswith("GPU") else "not sampled"
                chart.title = f"{panel.label}  {gone}" if s.probes else panel.label
                chart.set_data([])
                continue
            values = s.probes[metric]
            chart.title = f"{panel.label}  {format_value(values[-1][1], panel.unit)}"
            chart.highlighted = panel.label in flagged
            chart.set_data([Series(panel.label, list(values))], marks)

    def _redraw_findings(self) -> None:
        panel = self.query_one("#findings", OptionList)
        findings = self.state.findings
        if not findings:
            if panel.option_count != 1 or panel.get_option_at_index(0).id != "none":
                panel.clear_options()
                panel.add_option(Option("no degradation so far", id="none", disabled=True))
            return
        lines = tuple(
            f"[b yellow]!{i}[/] {escape(self.state.finding_line(f))}"
            for i, f in enumerate(findings, 1)
        )
        if self._shown.get("#findings") == lines:
            return  # rebuilding the list would reset the reader's scroll for nothing
        self._shown["#findings"] = lines
        highlighted = panel.highlighted
        panel.clear_options()
        panel.add_options(Option(line) for line in lines)
        panel.highlighted = highlighted if highlighted is not None else len(findings) - 1

    def _redraw_stacks(self) -> None:
        view = self.state.stacks
        if view is None:
            self._update(
                "#stacks", "[b]top functions[/b]\n[dim]no stack samples (Python: py-spy)[/dim]"
            )
            return
        rows = [f"{f.self_pct:5.1f}%  {escape(f.function)}" for f in view.top[:6] if f.self_samples]
        self._update(
            "#stacks",
            f"[b]top functions[/b] [dim](self time, {view.duration_s:.1f}s to "
            f"{view.end_s:.0f}s)[/dim]\n" + ("\n".join(rows) or "[dim]idle[/dim]"),
        )

    def _update(self, selector: str, text: str) -> None:
        """Set a text panel, unless it already shows `text` (an update re-lays it out)."""
        if self._shown.get(selector) != text:
            self._shown[selector] = text
            self.query_one(selector, Static).update(text)


class LiveFeed:
    """The runner's live view (`tracker.recording.progress.ProgressView`) for the app: called on the
    run's threads, it only posts messages."""

    def __init__(self, app: LiveApp) -> None:
        self.app = app

    def window(self, window: Window, probes: dict[str, float]) -> None:
        self.points(WindowPoints.of(window), probes)

    def points(self, points: WindowPoints, probes: dict[str, float]) -> None:
        """A window as the run's side of the screen sends it (`ScreenFeed`)."""
        self.app.post_message(WindowClosed(points, dict(probes)))

    def probes(self, t_s: float, probes: dict[str, float]) -> None:
        """An attach's readings, as they come: the run's side (`ScreenFeed`) already sends
        one a second, the screen's refresh rate."""
        self.app.post_message(ProbesRead(t_s, dict(probes)))

    def note(self, message: str) -> None:
        self.app.post_message(Noted(message))

    def finding(self, finding: FindingRecord) -> None:
        self.app.post_message(Found(finding))

    def stacks(self, end_s: float, duration_s: float, top: list[FunctionTime]) -> None:
        self.app.post_message(StacksTaken(end_s, duration_s, top))

"""The history and compare screens with Textual's pilot, over a real SQLite store of
deterministic runs (fixed start times, fixed summaries): scenario list -> runs and trend
charts -> two runs compared; the layout at 80x24 and 120x40 as SVG snapshots; and the
`history` / `compare` commands' output and exit codes with and without the screen."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import perfsleuth
from click.testing import CliRunner
from rich.text import Text
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import DataTable, Static
from textual.widgets._footer import FooterKey

from tracker.analysis.compare import Options
from tracker.cli import cli
from tracker.documents.stored_run import load_run
from tracker.records import FindingRecord
from tracker.regressions.baseline import compare_stored, parse_spec
from tracker.store import Store
from tracker.tui.chart import LineChart
from tracker.tui.compare_view import CompareScreen
from tracker.tui.history_app import HistoryApp, ScenarioListScreen, ScenarioScreen
from tracker.tui.history_data import Source, list_scenarios, load_scenario
from tracker.tui.loading import stop_loading
from tracker.tui.scenario_view import RunTable

NIGHTLY_KEY = "nightlykey000001"
SMOKE_KEY = "smokekey00000002"
START = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
#: Nights of the nightly scenario; from night STEP on, p50 is 25% and p99 40% slower,
#: throughput 10% lower, and the target is preempted far more often (contention).
NIGHTS = 16
STEP = 8


def _summary(p50: float, p99: float, rps: float, switches: float, delay: float) -> dict[str, Any]:
    return {
        "latency_ms": {"p50": p50, "p99": p99},
        "throughput_rps": rps,
        "requests": {"error_rate": 0.0},
        "driver": {"saturated": False},
        "metrics": {
            "latency_ms.p50": [p50, p50 * 0.004, 4000],
            "latency_ms.p99": [p99, p99 * 0.01, 4000],
            "throughput_rps": [rps, rps * 0.002],
            "error_rate": [0.0, 0.0],
            "probes.cpu.ctx_switches_involuntary_per_s": [switches, switches * 0.02],
            "probes.cpu.run_delay_ms_per_s": [delay, delay * 0.03],
        },
    }


def _store_run(
    store: Store, name: str, key: str, night: int, summary: dict[str, Any] | None
) -> int:
    run_id = store.create_run(
        scenario=name,
        scenario_key=key,
        scenario_json={"load": {"model": "open", "rate": 20.0}},
        environment={"cpu_model": "test", "cpu_count": 2},
        tag="nightly" if key == NIGHTLY_KEY else None,
        started_at=START + timedelta(days=night),
    )
    status = "completed" if summary is not None else "failed"
    store.finish_run(run_id, status=status, duration_s=60.0, summary=summary)
    return run_id


def build_store(path: Path) -> str:
    """Two scenarios: `smoke` (3 runs, ids 1-3) and `nightly` (ids 4-20: 16 completed
    nights with a step at night 8, one failed night, one run with a finding). The
    throughput drop is accepted (`history ack`), the latency rise is not."""
    url = f"sqlite:///{path}"
    store = Store.open(url)
    rng = random.Random(7)
    for night in range(3):
        _store_run(store, "smoke", SMOKE_KEY, night - 10, _summary(12.0, 30.0, 5.0, 100.0, 1.0))
    step_run = 0
    for night in range(NIGHTS):
        if night == 11:
            _store_run(store, "nightly", NIGHTLY_KEY, night, None)  # the target was down
        after = night >= STEP
        noise = 1 + rng.uniform(-0.01, 0.01)
        run_id = _store_run(
            store,
            "nightly",
            NIGHTLY_KEY,
            night,
            _summary(
                (50.0 * (1.25 if after else 1.0)) * noise,
                (120.0 * (1.4 if after else 1.0)) * noise,
                (20.0 * (0.9 if after else 1.0)) / noise,
                900.0 if after else 200.0,
                30.0 if after else 2.0,
            ),
        )
        if night == STEP:
            step_run = run_id
        if night == 13:
            store.replace_findings(
                run_id,
                [
                    FindingRecord(
                        20.0,
                        40.0,
                        "latency_p99",
                        85.0,
                        "contention",
                        [{"cause": "contention", "score": 0.9}],
                        0.9,
                        ["involuntary ctx switches 4.5x"],
                    )
                ],
            )
    store.acknowledge(NIGHTLY_KEY, "throughput_rps", step_run, "new batching")
    store.close()
    return url


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_store(tmp_path_factory.mktemp("history") / "history.db")


@pytest.fixture
def source(db_url: str) -> Source:
    return Source(Store.open(db_url))


async def settle(pilot: Pilot[Any]) -> None:
    """Let the loading workers finish and their messages land (a screen pushed by one
    starts another): until three rounds in a row find no worker running. A fixed four
    rounds once left a busy CI machine's snapshot without its loaded table."""
    idle = 0
    for _ in range(200):  # bounded: each round waits for the workers and the queue
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        idle = 0 if any(w.is_running for w in pilot.app.workers) else idle + 1
        if idle >= 3:
            return


def drive(
    app: App[Any], size: tuple[int, int], body: Callable[[Pilot[Any]], Awaitable[None]]
) -> None:
    async def main() -> None:
        async with app.run_test(size=size, notifications=True) as pilot:
            await settle(pilot)
            await body(pilot)

    asyncio.run(main())


def _cells(table: DataTable[Any], column: int) -> list[str]:
    return [str(table.get_row_at(i)[column]) for i in range(table.row_count)]


def _static(app: App[Any], selector: str) -> str:
    widget = app.screen.query_one(selector, Static)
    content = widget.render()
    return content.plain if isinstance(content, Text) else str(content)


# -- plain data -----------------------------------------------------------------------


def test_the_data_behind_the_screens(source: Source) -> None:
    scenarios = list_scenarios(source.store)
    assert [(s.name, s.runs) for s in scenarios] == [("nightly", 17), ("smoke", 3)]
    data = load_scenario(source.store, NIGHTLY_KEY)
    assert [r.id for r in data.runs][:3] == [20, 19, 18]  # newest first, every status
    assert [r.status for r in data.runs].count("failed") == 1
    assert sum(r.findings for r in data.runs) == 1
    assert data.run_ids == [r.id for r in data.history.runs]  # completed, oldest first
    trends = {t.metric: t for t in data.trends}
    assert set(trends) == {"latency_ms.p50", "latency_ms.p99", "throughput_rps"}  # no TTFT
    p99 = trends["latency_ms.p99"]
    assert p99.points[0][0] == 0.0 and len(p99.points) == NIGHTS
    (x, change), *_ = p99.changes
    assert x == STEP and change.alerts
    (_, throughput), *_ = trends["throughput_rps"].changes
    assert throughput.acknowledged and not throughput.alerts


# -- pilot ----------------------------------------------------------------------------


def test_scenario_list_then_runs_and_trend_charts(source: Source) -> None:
    app = HistoryApp(source)

    async def body(pilot: Pilot[Any]) -> None:
        assert isinstance(app.screen, ScenarioListScreen)
        table = app.screen.query_one(DataTable)
        assert _cells(table, 0) == ["nightly", "smoke"]
        assert _cells(table, 1) == [NIGHTLY_KEY[:8], SMOKE_KEY[:8]]
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ScenarioScreen) and screen.key == NIGHTLY_KEY
        runs = screen.query_one("#runs", DataTable)
        assert runs.row_count == 17
        assert _cells(runs, 1)[:2] == ["20", "19"]
        assert "failed" in _cells(runs, 3)
        assert "2026-03-16 02:00" in _cells(runs, 2)
        title = _static(app, "#title")
        assert "nightly" in title and "16 completed runs" in title
        assert "2 alerts" in title  # p50 and p99; the throughput drop was accepted
        changes = _static(app, "#changes")
        assert "latency_ms.p99 at run" in changes and "ALERT" in changes
        assert "accepted: new batching" in changes
        charts = {c.id: c for c in screen.query(LineChart)}
        p99 = charts["trend-latency_ms-p99"]
        assert p99.display and p99.highlighted  # an alerting change point
        assert not charts["trend-llm-ttft_ms-p50"].display  # not an LLM scenario
        assert len(p99.series[0].points) == NIGHTS
        styles = {m.style for m in p99.marks}
        assert "red" in styles and "cyan" in styles  # the alert, and the selected run
        throughput = charts["trend-throughput_rps"]
        assert not throughput.highlighted and "grey50" in {m.style for m in throughput.marks}
        assert screen.data is not None and p99.x_format(0.0) == f"#{screen.data.run_ids[0]}"
        await pilot.press("escape")
        assert isinstance(app.screen, ScenarioListScreen)
        await pilot.press("q")
        assert not app.is_running

    drive(app, (120, 40), body)


def test_mark_a_baseline_then_enter_compares_two_runs(source: Source) -> None:
    app = HistoryApp(source, scenario_key=NIGHTLY_KEY)

    async def body(pilot: Pilot[Any]) -> None:
        screen = app.screen
        assert isinstance(screen, ScenarioScreen)
        await pilot.press("enter")  # nothing marked yet: says how
        assert any("mark a baseline" in n.message for n in app._notifications)
        runs = screen.query_one("#runs", DataTable)
        ids = _cells(runs, 1)
        runs.move_cursor(row=ids.index("6"))
        await pilot.press("space")
        assert screen.marked == 6 and str(runs.get_row_at(ids.index("6"))[0]) == "B"
        runs.move_cursor(row=0)  # run 20, after the step
        await pilot.press("enter")
        await settle(pilot)
        compare = app.screen
        assert isinstance(compare, CompareScreen) and compare.comparison is not None
        assert compare.comparison.verdict == "regressed"
        assert compare.comparison.baseline_ids == [6]
        header = _static(app, "#verdict")
        assert "REGRESSED" in header and "run 20" in header and "vs 6" in header
        metrics = compare.query_one("#metrics", DataTable)
        rows = {str(row[0]): row for row in map(metrics.get_row_at, range(metrics.row_count))}
        p50 = rows["▲ latency_ms.p50"]  # the verdict's symbol leads the row
        assert str(p50[5]) == "▲ regressed" and str(p50[3]).startswith("+2")  # about +25%
        assert "▲ cpu.run_delay_ms_per_s" in rows and "= error_rate" in rows
        causes = _static(app, "#causes")
        assert "1. contention" in causes and "involuntary context switches" in causes
        await pilot.press("escape")
        assert app.screen is screen and screen.marked == 6
        await pilot.press("q")
        assert not app.is_running

    drive(app, (120, 40), body)


def test_b_compares_with_the_default_baseline_and_errors_are_shown(source: Source) -> None:
    app = HistoryApp(source, scenario_key=NIGHTLY_KEY)

    async def body(pilot: Pilot[Any]) -> None:
        await pilot.press("b")  # run 20 vs last:5: the five before it crept too...
        await settle(pilot)
        compare = app.screen
        assert isinstance(compare, CompareScreen) and compare.comparison is not None
        # ...but the unaccepted change point in its history still fails it.
        assert compare.comparison.verdict == "regressed"
        assert compare.comparison.change_points
        assert "history: latency_ms" in _static(app, "#causes")
        await pilot.press("escape")
        runs = app.screen.query_one("#runs", DataTable)
        failed = _cells(runs, 3).index("failed")
        runs.move_cursor(row=failed)
        await pilot.press("space")
        runs.move_cursor(row=0)
        await pilot.press("enter")
        await settle(pilot)
        assert "CANNOT COMPARE" in _static(app, "#verdict")
        assert "is failed" in _static(app, "#causes")

    drive(app, (120, 40), body)


def test_help_toggles_and_every_binding_is_in_the_footer(source: Source) -> None:
    app = HistoryApp(source, scenario_key=NIGHTLY_KEY)

    async def body(pilot: Pilot[Any]) -> None:
        shown = {b.binding.key for b in app.screen.active_bindings.values() if b.binding.show}
        assert {"q", "question_mark", "escape", "space", "b", "enter"} <= shown
        await pilot.press("question_mark")
        assert app.screen.query("HelpPanel")
        await pilot.press("question_mark")
        assert not app.screen.query("HelpPanel")

    drive(app, (120, 40), body)


def test_a_table_focused_while_loading_gets_its_keys_in_the_footer(source: Source) -> None:
    """The runs table can take focus (auto-focus) before its data arrives; Textual hides a
    loading widget's bindings, so the footer must be redrawn when loading ends."""
    app = HistoryApp(source, scenario_key=NIGHTLY_KEY)

    def footer_actions() -> set[str]:
        return {key.action for key in app.screen.query(FooterKey)}

    async def body(pilot: Pilot[Any]) -> None:
        table = app.screen.query_one(RunTable)
        table.loading = True
        app.screen.refresh_bindings()  # as the table's auto-focus during loading did
        await settle(pilot)
        assert table.has_focus
        assert "select_cursor" not in footer_actions()
        stop_loading(table)
        await settle(pilot)
        assert "select_cursor" in footer_actions()

    drive(app, (120, 40), body)


# -- snapshots ------------------------------------------------------------------------


def _scenario_app(db_url: str) -> HistoryApp:
    return HistoryApp(Source(Store.open(db_url)), scenario_key=NIGHTLY_KEY)


def _compare_app(db_url: str) -> HistoryApp:
    store = Store.open(db_url)
    comparison = compare_stored(store, load_run(store, "20"), parse_spec("6"), Options())
    return HistoryApp(Source(store), scenario_key=NIGHTLY_KEY, comparison=comparison)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snapshot_history_screen(snap_compare: Any, db_url: str, size: tuple[int, int]) -> None:
    assert snap_compare(_scenario_app(db_url), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snapshot_compare_screen(snap_compare: Any, db_url: str, size: tuple[int, int]) -> None:
    assert snap_compare(_compare_app(db_url), terminal_size=size, run_before=settle)


def test_snapshot_scenario_list(snap_compare: Any, db_url: str) -> None:
    app = HistoryApp(Source(Store.open(db_url)))
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


# -- the commands -----------------------------------------------------------------------


def _headless_quit(monkeypatch: pytest.MonkeyPatch, seen: list[str]) -> None:
    """Make `interactive()` true and run the real app headless, leaving with `q` once
    loaded; `seen` gets the class name of the screen it was on."""

    async def leave(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        seen.append(type(pilot.app.screen).__name__)
        await pilot.press("q")

    def run(self: HistoryApp) -> None:
        App.run(self, headless=True, size=(120, 40), auto_pilot=leave)

    monkeypatch.setattr("tracker.cli.terminal.interactive", lambda: True)
    monkeypatch.setattr(HistoryApp, "run", run)


def test_compare_on_the_screen_prints_the_verdict_and_keeps_the_exit_code(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    plain = runner.invoke(cli, ["compare", "20", "--baseline", "6", "--db", db_url])
    assert plain.exit_code == 1 and plain.output.startswith("run 20 (nightly) vs 6 (run 6): ")
    seen: list[str] = []
    _headless_quit(monkeypatch, seen)
    shown = runner.invoke(cli, ["compare", "20", "--baseline", "6", "--db", db_url])
    assert seen == ["CompareScreen"]
    assert shown.exit_code == 1, shown.output
    assert shown.output == plain.output.splitlines()[0] + "\n"
    # Anything but a text report on stdout never opens the screen.
    for extra in (["--no-tui"], ["--format", "json"], ["--out", "-"]):
        again = runner.invoke(cli, ["compare", "20", "--baseline", "6", "--db", db_url, *extra])
        assert again.exit_code == 1 and len(again.output.splitlines()) > 1, extra
    assert seen == ["CompareScreen"]
    unchanged = runner.invoke(cli, ["compare", "5", "--baseline", "4", "--db", db_url])
    assert unchanged.exit_code == 0, unchanged.output
    assert seen[-1] == "CompareScreen" and unchanged.output.rstrip().endswith("UNCHANGED")
    bad = runner.invoke(cli, ["compare", "20", "--baseline", "nope", "--db", db_url])
    assert bad.exit_code != 0 and len(seen) == 2  # refused before any screen


def test_history_on_the_screen_keeps_fail_on_change(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    plain = runner.invoke(cli, ["history", "--scenario", "nightly", "--fail-on-change",
                                "--db", db_url])  # fmt: skip
    assert plain.exit_code == 1 and "ALERT" in plain.output
    seen: list[str] = []
    _headless_quit(monkeypatch, seen)
    shown = runner.invoke(cli, ["history", "--scenario", "nightly", "--fail-on-change",
                                "--db", db_url])  # fmt: skip
    assert seen == ["ScenarioScreen"] and shown.exit_code == 1
    assert shown.output.startswith("scenario nightly (nightlyk): ALERT: latency_ms.p")
    listed = runner.invoke(cli, ["history", "--db", db_url])
    assert listed.exit_code == 0 and listed.output == "" and seen[-1] == "ScenarioListScreen"
    for extra in (["--no-tui"], ["--json"]):
        text = runner.invoke(cli, ["history", "--db", db_url, *extra])
        assert text.exit_code == 0 and "nightly" in text.output, extra
    assert len(seen) == 2


def test_without_a_terminal_history_prints_what_no_tui_prints(db_url: str, tmp_path: Path) -> None:
    # A subprocess, as CI runs it: stdout is a pipe, not a terminal.
    for args in (["history"], ["history", "--scenario", "nightly"]):
        piped = perfsleuth(*args, "--db", db_url, cwd=tmp_path)
        flagged = perfsleuth(*args, "--no-tui", "--db", db_url, cwd=tmp_path)
        assert piped.returncode == flagged.returncode == 0, piped.stderr
        assert piped.stdout == flagged.stdout and "nightly" in piped.stdout
    compared = perfsleuth("compare", "20", "--baseline", "6", "--db", db_url, cwd=tmp_path)
    assert compared.returncode == 1 and "likely cause: contention" in compared.stdout

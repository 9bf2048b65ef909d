"""What the run tells its live views, without a screen: plain progress lines for findings,
stop requests from another thread, and where a launched command's output goes."""

from __future__ import annotations

import io
import sys
import threading
import time
from pathlib import Path

from support.live_data import window

from probes.runtimes import close_probes, launch_with_gc_probes
from tracker.cli.terminal import target_log
from tracker.recording.control import RunControl
from tracker.recording.progress import ProgressPrinter
from tracker.records import FindingRecord


def _finding(cause: str, confidence: float) -> FindingRecord:
    return FindingRecord(
        start_s=9.0, end_s=12.0, metric="latency_p50", change_pct=36.0, cause=cause,
        causes=[], confidence=confidence, evidence=[], flagged_at_s=11.0,
    )  # fmt: skip


def test_plain_progress_prints_a_finding_again_only_when_its_cause_changes() -> None:
    out = io.StringIO()
    printer = ProgressPrinter(20.0, out)
    printer.finding(_finding("unexplained", 0.0))
    printer.finding(_finding("contention", 0.6))
    printer.finding(_finding("contention", 0.8))  # firmer, same cause: no new line
    printer.close()  # lines are written by the printer's own thread
    assert out.getvalue().splitlines() == [
        "  » degradation: latency p50 +36% since 9s: cause not clear yet",
        "  » degradation: latency p50 +36% since 9s: contention (confidence 0.60)",
    ]


class _StuckStream(io.StringIO):
    """stderr piped to a reader that does not read: writes wait until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait(10)
        return super().write(text)


def test_plain_progress_never_holds_up_the_driver_s_loop() -> None:
    stream = _StuckStream()
    printer = ProgressPrinter(20.0, stream)
    returned = threading.Event()

    def on_the_loop() -> None:
        for i in range(3):
            printer.window(window(i, 800.0), {"mem.rss_mb": 120.0})
        returned.set()

    threading.Thread(target=on_the_loop).start()
    # The calls return while the first write is still stuck (and no line is lost).
    assert returned.wait(5) and stream.getvalue() == ""
    stream.release.set()
    printer.close()
    lines = stream.getvalue().splitlines()
    assert [line.split("]")[0] for line in lines] == ["[   1s/20s", "[   2s/20s", "[   3s/20s"]
    assert all("p50  800ms" in line and "rss   120MB" in line for line in lines), lines


def test_a_stop_request_before_the_run_binds_is_kept_and_one_after_is_delivered() -> None:
    control = RunControl()
    stopped = threading.Event()
    control.request_stop()  # `q` pressed while the run is still starting
    control.bind(stopped.set)
    assert stopped.is_set()
    stopped.clear()
    other = threading.Thread(target=control.request_stop)
    other.start()
    other.join()
    assert stopped.is_set()
    control.bind(None)
    control.request_stop()  # after the run: kept for nobody, harmless


def test_under_the_live_screen_a_launched_command_writes_to_a_log_file() -> None:
    assert target_log(False) is None  # plain lines: it keeps the terminal
    log = target_log(True)
    assert log is not None
    code = "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"
    launched = launch_with_gc_probes([sys.executable, "-c", code], output=log)
    try:
        deadline = time.monotonic() + 20
        while launched.target.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not launched.target.alive
    finally:
        launched.target.terminate()
        close_probes(launched.probes)
        log.close()
    text = Path(log.name).read_text(encoding="utf-8")
    Path(log.name).unlink()
    assert "to stdout" in text and "to stderr" in text

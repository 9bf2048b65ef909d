"""The live screen around real runs: in-process against the example server (headless), and
`perfsleuth demo` on a real pseudo-terminal: live charts and probes, the injected fault as a
finding with its cause, then `q` and the run kept."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import psutil
import pytest
from support.llm_server import running_llm_server

from probes import Target
from tracker.recording.attach import execute_attach
from tracker.recording.control import RunControl
from tracker.recording.recording import RunResult
from tracker.recording.runner import execute_run
from tracker.scenario import LoadSpec, RequestSpec, Scenario
from tracker.store import Store
from tracker.tui.screen_link import ScreenFeed, run_live
from tracker.tui.state import LiveState


def test_a_real_run_feeds_the_screen_and_is_stored(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'live.db'}")
    with running_llm_server() as server:
        body = {"prompt": "hi", "max_tokens": 8, "stream": True}
        request = RequestSpec(method="POST", path="/v1/completions", stream="sse", body=body)
        scenario = Scenario(
            name="live",
            base_url=server.url,
            requests=(request,),
            load=LoadSpec(model="open", duration_s=4.0, rate=5.0),
        )
        state = LiveState("live", server.url, 4.0, "open 5 req/s")
        result = run_live(
            state,
            lambda feed, control: execute_run(scenario, store, progress=feed, control=control),
            headless=True,
            size=(120, 40),
        )
    assert result.status == "completed"
    assert state.elapsed_s > 3.5 and len(state.series["latency_p50"]) >= 3  # last one partial
    assert state.is_llm() and state.probes  # probe readings reached the screen
    assert store.get_run(result.run_id).status == "completed"


def _screens(parent: int | None = None) -> list[psutil.Process]:
    """The screen processes that `parent` (default: this one) started."""
    return [
        p
        for p in psutil.Process(parent).children()
        if "tracker.tui.screen_process" in " ".join(p.cmdline())
    ]


def test_the_screen_draws_from_a_process_of_its_own_nicer_than_the_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    nice, switch = os.getpriority(os.PRIO_PROCESS, 0), sys.getswitchinterval()
    seen: dict[str, object] = {}

    def work(feed: ScreenFeed, control: RunControl) -> str:
        screens = _screens()
        seen["screens"] = len(screens)
        seen["screen nice"] = screens[0].nice() if screens else None
        seen["run in main thread"] = threading.current_thread() is threading.main_thread()
        seen["run nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen["switch"] = sys.getswitchinterval()
        print("said by the run while the screen drew")
        return "stored"

    state = LiveState("yield", "http://127.0.0.1:1", 1.0, "open 1 req/s")
    assert run_live(state, work, headless=True, size=(80, 24)) == "stored"
    # The redraw holds no GIL the run needs, and on a shared core the kernel runs the run
    # first; the run's own thread keeps its priority and the interpreter its settings.
    assert seen == {
        "screens": 1,
        "screen nice": min(nice + 10, 19),
        "run in main thread": True,
        "run nice": nice,
        "switch": switch,
    }
    assert _screens() == []  # gone with the run
    # What the run printed meanwhile was held off the screen, and written after it.
    assert "said by the run while the screen drew" in capsys.readouterr().err


def test_a_screen_that_cannot_start_leaves_the_run_to_plain_progress(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the screen's process dies at once

    def work(feed: ScreenFeed, control: RunControl) -> str:
        raise AssertionError("the screen never showed: the run goes without it")

    state = LiveState("plain", "http://127.0.0.1:1", 1.0, "open 1 req/s")
    assert run_live(state, work, headless=True, plain=lambda: "plain run") == "plain run"
    assert "the live screen could not start; plain progress instead" in capsys.readouterr().err


def test_an_attach_feeds_the_probe_panels_and_q_ends_it_as_completed(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'attach.db'}")
    code = "import time\nend = time.time() + 60\nwhile time.time() < end: sum(range(20000))"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        target = Target.from_pid(child.pid)
        state = LiveState("attach", f"pid {child.pid}", 0.0, "probes only, no load")

        def work(feed: ScreenFeed, control: RunControl) -> RunResult:
            # `q` from the screen is `control.request_stop()`; here it comes after 2.5 s.
            threading.Timer(2.5, control.request_stop).start()
            return execute_attach(
                target, store, duration_s=None, interval_s=0.25, view=feed, control=control
            )

        result = run_live(state, work, headless=True, size=(120, 40))
    finally:
        child.kill()
        child.wait()
    assert result.status == "completed"  # an open-ended attach ends this way
    assert 1.5 < state.elapsed_s < 4.0
    cpu = state.probes.get("cpu.process_pct")
    assert cpu is not None and len(cpu) >= 2 and cpu[-1][1] > 10  # a busy loop, seen live
    assert store.get_run(result.run_id).status == "completed"


def _read_until(fd: int, needle: bytes, timeout_s: float, into: bytearray) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                return needle in into
            if not chunk:
                return needle in into
            into.extend(chunk)
            if needle in into:
                return True
    return needle in into


def _take_the_terminal(hangup: signal.Handlers = signal.SIG_DFL) -> None:
    # In the child, after setsid(): the pty becomes its controlling terminal, as a login
    # shell's is, so that closing the master side hangs it up (SIGHUP) for real; and
    # SIGHUP acts as in a terminal, whatever this test runs under (nohup ignores it).
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    signal.signal(signal.SIGHUP, hangup)


def _on_a_terminal(
    args: list[str], cwd: Path, hangup: signal.Handlers = signal.SIG_DFL
) -> tuple[subprocess.Popen[bytes], int]:
    """`python -m tracker ARGS` on a new 120x40 pseudo-terminal, its controlling terminal;
    the process and the terminal's master side, to read what it draws and type into it."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # rows, cols
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracker", *args],
        stdin=child, stdout=child, stderr=child, cwd=cwd, env=env, start_new_session=True,
        preexec_fn=lambda: _take_the_terminal(hangup),
    )  # fmt: skip
    os.close(child)
    return proc, main


def _drain_until_exit(
    proc: subprocess.Popen[bytes], main: int, screen: bytearray, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        _read_until(main, b"\x00never", 0.2, screen)


@pytest.mark.timeout(90)
def test_demo_on_a_terminal_shows_the_screen_and_q_keeps_the_run(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    args = ["demo", "--duration", "20s", "--db", f"sqlite:///{db}"]
    proc, main = _on_a_terminal(args, tmp_path)
    screen = bytearray()
    try:
        # The live screen draws the service charts and probe panels once the load runs ...
        assert _read_until(main, b"6s / 20s", 40, screen), bytes(screen[-2000:])
        for drawn in (b"latency", b"p99", b"invol. switches", b"run delay", b"ms/s"):
            assert drawn in screen, (drawn, bytes(screen[-2000:]))
        # ... and the CPU fault switched on at 10 s appears as a finding with its cause
        # while the run goes (the run ends at 20 s: q must come before).
        assert _read_until(main, b": contention (confidence", 12, screen), bytes(screen[-3000:])
        pressed = time.monotonic()
        os.write(main, b"q")
        # The run stops, stores itself and the app leaves within 5 s.
        _drain_until_exit(proc, main, screen, 10)
        took = time.monotonic() - pressed
        assert proc.poll() is not None, "still running 10 s after q"
        assert took <= 5.0, took
        print(f"q to exit: {took:.2f} s")
    finally:
        if proc.poll() is None:
            # SIGTERM, not SIGKILL: the demo then stops the example server it launched (in
            # a session of its own, a kill of the demo would leave it and its fault running).
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait(timeout=10)
        os.close(main)
    text = screen.decode(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert proc.returncode == 130, (proc.returncode, text[-3000:])  # stopped early, as Ctrl-C
    con = sqlite3.connect(db)
    (status,) = con.execute("select status from runs").fetchone()
    assert status == "interrupted"
    (windows,) = con.execute("select count(*) from windows").fetchone()
    assert windows >= 5


def _streaming_run_args(url: str, db: Path) -> list[str]:
    """`run` of 30 s at 5 streamed completions/s: stopped early by the tests that use it."""
    body = '{"prompt": "hi", "max_tokens": 8, "stream": true}'
    args = ["run", "--url", f"{url}/v1/completions", "--stream", "sse", "--body", body]
    return [*args, "--rate", "5", "--duration", "30s", "--db", f"sqlite:///{db}"]


@pytest.mark.timeout(90)
def test_sigterm_to_the_whole_group_stores_the_run_and_gives_the_terminal_back(
    tmp_path: Path,
) -> None:
    # CI cancelling a job signals the whole process group, the screen's process included:
    # the run is stopped and stored, and the screen still leaves the terminal as it found it.
    db = tmp_path / "term.db"
    with running_llm_server() as server:
        proc, main = _on_a_terminal(_streaming_run_args(server.url, db), tmp_path)
        screen = bytearray()
        try:
            assert _read_until(main, b"3s / 30s", 40, screen), bytes(screen[-2000:])
            os.killpg(proc.pid, signal.SIGTERM)
            _drain_until_exit(proc, main, screen, 20)
            _read_until(main, b"\x00never", 0.5, screen)  # what it wrote last
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            os.close(main)
    text = screen.decode(errors="replace")
    assert proc.returncode == 130, (proc.returncode, text[-3000:])
    assert "Traceback" not in text, text[-3000:]
    # The alternate screen was left before the summary was printed on the terminal.
    left = text.rfind("\x1b[?1049l")
    assert left != -1 and left < text.rfind("interrupted"), text[-3000:]
    con = sqlite3.connect(db)
    (status,) = con.execute("select status from runs").fetchone()
    assert status == "interrupted"


@pytest.mark.timeout(90)
def test_a_terminal_hung_up_mid_run_stores_the_run(tmp_path: Path) -> None:
    # The SSH connection drops or the window is closed: the kernel hangs up the terminal
    # and sends SIGHUP; the screen's process goes, and the run must still be stored.
    db = tmp_path / "hup.db"
    with running_llm_server() as server:
        proc, main = _on_a_terminal(_streaming_run_args(server.url, db), tmp_path)
        screen = bytearray()
        try:
            assert _read_until(main, b"3s / 30s", 40, screen), bytes(screen[-2000:])
        except BaseException:
            os.close(main)
            proc.kill()
            proc.wait(timeout=10)
            raise
        hung_up = time.monotonic()
        os.close(main)  # the last open master side: the terminal hangs up
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        took = time.monotonic() - hung_up
    assert proc.returncode == 130, proc.returncode
    assert took < 15, took
    con = sqlite3.connect(db)
    status, error = con.execute("select status, error from runs").fetchone()
    assert (status, error) == ("interrupted", None)
    (windows,) = con.execute("select count(*) from windows").fetchone()
    assert windows >= 3


@pytest.mark.timeout(90)
def test_under_nohup_a_hung_up_terminal_ends_the_screen_not_the_run(tmp_path: Path) -> None:
    # SIGHUP ignored (nohup): the run goes on to its end and is stored as completed; the
    # screen's process, with no terminal left to draw on, leaves rather than spin on EIO.
    db = tmp_path / "nohup.db"
    with running_llm_server() as server:
        args = _streaming_run_args(server.url, db)
        args[args.index("--duration") + 1] = "8s"
        proc, main = _on_a_terminal(args, tmp_path, hangup=signal.SIG_IGN)
        screen = bytearray()
        try:
            assert _read_until(main, b"3s / 8s", 40, screen), bytes(screen[-2000:])
            screens = _screens(proc.pid)
            assert len(screens) == 1
            os.close(main)
            proc.wait(timeout=40)
            psutil.wait_procs(screens, timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert proc.returncode == 0
    assert not any(s.is_running() for s in screens)
    con = sqlite3.connect(db)
    assert con.execute("select status from runs").fetchone() == ("completed",)

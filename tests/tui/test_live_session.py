"""The live screen around real runs: in-process against the example server (headless), and
`perfsleuth demo` on a real pseudo-terminal: live charts and probes, the injected fault as a
finding with its cause, then `q` and the run kept."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
from support.llm_server import running_llm_server

from probes import Target
from tracker.attach import execute_attach
from tracker.runner import RunControl, RunResult, execute_run
from tracker.scenario import LoadSpec, RequestSpec, Scenario
from tracker.store import Store
from tracker.tui.live import LiveFeed
from tracker.tui.session import run_live
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


def test_the_screen_yields_to_the_run_while_it_goes() -> None:
    screen = threading.get_native_id()  # the app runs in this (the main) thread
    nice, switch = os.getpriority(os.PRIO_PROCESS, screen), sys.getswitchinterval()
    seen: dict[str, float] = {}

    def work(feed: LiveFeed, control: RunControl) -> str:
        seen["screen"] = os.getpriority(os.PRIO_PROCESS, screen)
        seen["run"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen["switch"] = sys.getswitchinterval()
        return "stored"

    state = LiveState("yield", "http://127.0.0.1:1", 1.0, "open 1 req/s")
    assert run_live(state, work, headless=True, size=(80, 24)) == "stored"
    # The screen's thread nicer than the run's (which keeps the nice it started with), the
    # GIL handed over within 0.1 ms; both as before once the screen is gone.
    assert seen == {"screen": min(nice + 10, 19), "run": nice, "switch": pytest.approx(1e-4)}
    assert sys.getswitchinterval() == switch
    if os.geteuid() == 0:  # only a privileged process may raise a priority back
        assert os.getpriority(os.PRIO_PROCESS, screen) == nice


def test_an_attach_feeds_the_probe_panels_and_q_ends_it_as_completed(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'attach.db'}")
    code = "import time\nend = time.time() + 60\nwhile time.time() < end: sum(range(20000))"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        target = Target.from_pid(child.pid)
        state = LiveState("attach", f"pid {child.pid}", 0.0, "probes only, no load")

        def work(feed: LiveFeed, control: RunControl) -> RunResult:
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


@pytest.mark.timeout(90)
def test_demo_on_a_terminal_shows_the_screen_and_q_keeps_the_run(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # rows, cols
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracker", "demo", "--duration", "20s", "--db", f"sqlite:///{db}"],
        stdin=child, stdout=child, stderr=child, cwd=tmp_path, env=env,
        start_new_session=True,
    )  # fmt: skip
    os.close(child)
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
        while proc.poll() is None and time.monotonic() - pressed < 10:
            _read_until(main, b"\x00never", 0.2, screen)
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

"""The live screen around real runs: in-process against the example server (headless), and
`perfsleuth demo` on a real pseudo-terminal, quit with `q` and the run kept."""

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
import time
from pathlib import Path

import pytest
from support.llm_server import running_llm_server

from tracker.runner import execute_run
from tracker.scenario import LoadSpec, RequestSpec, Scenario
from tracker.store import Store
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
        [sys.executable, "-m", "tracker", "demo", "--duration", "30s", "--db", f"sqlite:///{db}"],
        stdin=child, stdout=child, stderr=child, cwd=tmp_path, env=env,
        start_new_session=True,
    )  # fmt: skip
    os.close(child)
    screen = bytearray()
    try:
        # The live screen draws the service charts once the load runs.
        assert _read_until(main, b"latency p50", 40, screen), bytes(screen[-2000:])
        assert _read_until(main, b"6s / 30s", 20, screen), bytes(screen[-2000:])
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

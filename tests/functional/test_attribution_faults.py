"""Attribution end to end on faults the demo does not inject: real `perfsleuth run --attach`
against the example server, with the fault switched on at half time from outside.

The small, CI-sized part of the fault matrix (`benchmarks/attribution_matrix.py` runs the
full one, at two strengths and five trials each): CPU hogs and disk writers that are *not*
in the target's process tree, an attached Python server's GC (no in-process agent: the GC
time is py-spy's estimate), and a rate step above the server's capacity with no fault.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from support.agent import TOKEN, running_agent
from support.filesystems import on_tmpfs
from support.hogs import cpu_hogs, fsync_writer
from support.llm_server import REPO_ROOT, running_llm_server

# Each injects a fault and checks what perfsleuth names: no other test's load beside it.
pytestmark = pytest.mark.alone

DURATION_S = 14
HALF_S = DURATION_S // 2
RATE = 4.0
BODY = {"model": "sim", "prompt": "Why do services slow down under load?", "max_tokens": 32,
        "stream": True}  # fmt: skip
_PROGRESS = re.compile(r"^\[\s*(\d+)s/")

Fault = Callable[[], contextlib.AbstractContextManager[Any]]


def _flags(url: str, duration_s: int = DURATION_S) -> list[str]:
    return ["--url", url + "/v1/completions", "--stream", "sse", "--body", json.dumps(BODY),
            "--rate", f"{RATE:g}", "--duration", f"{duration_s}s", "--warmup", "2s"]  # fmt: skip


def _favour(pid: int) -> None:
    """nice -19 for each thread of `pid` (as root; otherwise nothing changes), so that the
    experiment's own processes keep their CPU on a busy machine. Unfavoured, two CPU hogs
    elsewhere kept the server's threads waiting ~850 ms/s before any fault, and the test's
    own hogs then added too little to read as contention (4 runs in 4: "overload" or no
    cause). The same as the CPU probe's tests do."""
    with contextlib.suppress(psutil.Error, PermissionError):
        for thread in psutil.Process(pid).threads():
            os.setpriority(os.PRIO_PROCESS, thread.id, -19)


def _nice_child() -> None:
    with contextlib.suppress(PermissionError):
        os.nice(-19)  # perfsleuth too (and so py-spy), before it starts any thread


def _run(
    tmp_path: Path,
    pid: int,
    load: list[str],
    fault: Fault,
    duration_s: int = DURATION_S,
    fault_at_s: int = HALF_S,
    observe: list[str] | None = None,
) -> dict[str, Any]:
    """`perfsleuth run ... --attach PID` (or the `observe` flags instead); `fault` is
    entered when the progress line of `fault_at_s` arrives (windows close on time) and
    left at the load's end. The target, perfsleuth and the fault's own processes run at
    nice -19 (`_favour`)."""
    _favour(pid)
    out = tmp_path / "run.json"
    cmd = [sys.executable, "-m", "tracker", "run", *load, *(observe or ["--attach", str(pid)]),
           "--json", str(out), "--db", f"sqlite:///{tmp_path / 'attr.db'}", "--no-tui"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=_nice_child, env={**os.environ, "PERFSLEUTH_AGENT_TOKEN": TOKEN},
    )  # fmt: skip
    lines: list[str] = []
    try:
        with contextlib.ExitStack() as on:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if (m := _PROGRESS.match(line)) is None:
                    continue
                elapsed = int(m.group(1))
                if elapsed == fault_at_s:
                    for helper in getattr(on.enter_context(fault()), "pids", []):
                        _favour(helper)
                elif elapsed >= duration_s:
                    on.close()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    output = "".join(lines)
    assert proc.returncode == 0, output[-3000:]
    assert "Traceback" not in output
    return dict(json.loads(out.read_text()))


def _named(doc: dict[str, Any], half_s: int = HALF_S) -> dict[str, Any]:
    """The finding about the fault: it overlaps the fault's interval and was flagged after
    the fault began (one raised before cannot be about it)."""
    about = [f for f in doc["findings"] if f["end_s"] > half_s and f["flagged_at_s"] >= half_s]
    assert about, _text(doc)
    return dict(about[0])


def _text(doc: dict[str, Any]) -> str:
    """The findings as people read them, for a failing assertion."""
    return (
        "\n".join(
            f"{f['start_s']}-{f['end_s']} s flagged {f['flagged_at_s']}: {f['cause']} {f['causes']}"
            + "".join(f"\n  {e}" for e in f["evidence"])
            for f in doc["findings"]
        )
        or "no findings"
    )


@contextlib.contextmanager
def _disk_dir() -> Iterator[str]:
    # fsync costs nothing on tmpfs: write beside the checkout, which is on a real disk.
    base = None if not on_tmpfs(tempfile.gettempdir()) else str(REPO_ROOT)
    with tempfile.TemporaryDirectory(prefix="perfsleuth-io-", dir=base) as where:
        yield where


@pytest.mark.timeout(150)
def test_an_agents_samples_name_the_cause_as_local_ones_do(tmp_path):
    # The server watched from "another host": an agent in its own process, its clock
    # 1000 s off; the driver's host has no target. The same hogs, the same cause.
    hogs = (os.cpu_count() or 1) + 1
    with running_llm_server() as server, running_agent(
        str(server.pid), cwd=tmp_path, preexec_fn=_nice_child,
        env={"PERFSLEUTH_AGENT_TEST_CLOCK_SKEW_S": "1000"},
    ) as agent:  # fmt: skip
        doc = _run(
            tmp_path, server.pid, _flags(server.url), lambda: cpu_hogs(hogs, max_s=30),
            observe=["--agent", agent.url],
        )  # fmt: skip
    assert doc["probes_hosts"][0]["agent"] == agent.url
    finding = _named(doc)
    assert finding["cause"] == "contention", _text(doc)


@pytest.mark.timeout(150)
def test_cpu_hogs_outside_the_target_are_contention(tmp_path):
    hogs = (os.cpu_count() or 1) + 1  # one more than the cores, whatever the machine
    with running_llm_server() as server:
        doc = _run(tmp_path, server.pid, _flags(server.url), lambda: cpu_hogs(hogs, max_s=30))
    finding = _named(doc)
    assert finding["cause"] == "contention", _text(doc)
    assert any("run delay" in e or "context switches" in e for e in finding["evidence"])


@pytest.mark.timeout(150)
def test_disk_writers_outside_the_target_are_io(tmp_path):
    # The server fsyncs on its request path all along (its io fault at a quarter strength,
    # on before the load): a service that never touches the disk cannot be slowed by it.
    with _disk_dir() as where, running_llm_server(env={"TMPDIR": where}) as server:
        on = httpx.post(server.url + "/admin/fault", json={"fault": "io", "strength": 0.25})
        assert on.status_code == 200
        doc = _run(
            tmp_path,
            server.pid,
            _flags(server.url),
            lambda: fsync_writer(where, writers=2, chunk_bytes=1 << 20, max_s=30),
        )
    # The io probes of an attached target see the server's own fsync'd writes all along ...
    probes = doc["probes"]
    assert probes["proc.io_write_syscalls_per_s"]["mean"] > 50, probes
    assert probes["proc.io_write_mb_per_s"]["mean"] > 0.2, probes
    assert probes.get("disk.write_iops", {"mean": 100})["mean"] > 20, probes
    # ... and name the outside writers' flood as the cause: first, or tied for first (the
    # writers' own CPU raises run delay too; with both at the top score the order between
    # them says nothing).
    finding = _named(doc)
    top = max(c["score"] for c in finding["causes"])
    assert {"cause": "io", "score": top} in finding["causes"], _text(doc)
    assert not any("target write" in e for e in finding["evidence"][:3])  # seen from the host


@pytest.mark.timeout(300)
def test_an_attached_python_servers_gc_is_memory(tmp_path):
    fault_at = 14
    for attempt in (1, 2):
        with running_llm_server() as server:

            @contextlib.contextmanager
            def gc_fault() -> Iterator[None]:
                body = {"fault": "gc", "strength": 2}
                assert httpx.post(server.url + "/admin/fault", json=body).status_code == 200
                yield
                httpx.post(server.url + "/admin/fault", json={"fault": "none"})

            # py-spy's GC estimate comes in 5 s windows, the first ends 5-7 s into the run:
            # a fault at 14 s leaves it a steady state to rise from (the latency detection
            # itself does not wait for it).
            load = _flags(server.url, 24)
            (where := tmp_path / f"try{attempt}").mkdir()
            doc = _run(where, server.pid, load, gc_fault, duration_s=24, fault_at_s=fault_at)
        if "gc.pause_ms_per_s_estimate" not in doc["probes"]:
            pytest.skip("the interpreter has no GC symbols for py-spy (a stripped python)")
        overlapping = [f for f in doc["findings"] if f["end_s"] > fault_at]
        if any(f["flagged_at_s"] >= fault_at for f in overlapping) or not overlapping:
            break
        # The fault's time fell inside an event raised before it: something else slowed
        # the server first (on a busy CI machine its TTFT doubled from 8 s, and the event
        # flagged at 11 s ran on through the fault). Such an event is judged against the
        # seconds before its start, too few for the GC estimate (one value per 5 s) to
        # count, so the run had no steady state for this test to judge: it is run again.
        print(f"try {attempt}: an event raised before the fault covers it\n{_text(doc)}")
    finding = _named(doc, half_s=fault_at)
    assert finding["cause"] == "memory", _text(doc)
    # The estimate itself rose (this also covers the probe: >= 5 ms/s, 1.3x and 3 sigma).
    assert any("GC pause time (estimated)" in e for e in finding["evidence"])


@pytest.mark.timeout(150)
def test_a_rate_above_capacity_is_overload(tmp_path):
    # From 4 req/s to 16 (the server completes ~8-10 req/s of these): no fault at all.
    with running_llm_server() as server:
        scenario, half = tmp_path / "overload.toml", f"{HALF_S}s"
        scenario.write_text(
            f"""\
name = "overload"
url = "{server.url}"

[load]
model = "open"
warmup = "2s"
throttle = [{{ jump = {RATE:g} }}, {{ hold = "{half}" }}, {{ jump = 16 }}, {{ hold = "{half}" }}]

[[requests]]
method = "POST"
path = "/v1/completions"
stream = "sse"
timeout = "30s"
json = {{ model = "sim", prompt = "Why do services slow down?", max_tokens = 32, stream = true }}
"""
        )
        doc = _run(tmp_path, server.pid, [str(scenario)], contextlib.nullcontext)
    finding = _named(doc)
    assert finding["cause"] == "overload", _text(doc)
    assert any("offered load rose" in e or "unanswered" in e for e in finding["evidence"])

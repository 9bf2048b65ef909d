"""TUI overhead: does the live screen slow the driver down, and what does it cost in CPU?

Target (live-screen issue): schedule lag p99 with the TUI on within 1.1x of off, and the
TUI's CPU under 5% of a core.

The example LLM server (examples/llm_server.py, tuned lighter than the demo's so that it
serves --rate streamed requests without saturating; pinned to the first CPU) gets the
demo's request (POST /v1/completions, 32 tokens, "stream": true) from a real
`perfsleuth run --url ... --stream sse --rate R --duration D --json F --db sqlite:///TMP`
(pinned to the last CPU), started under a pseudo-terminal (stdin, stdout and stderr the
pty's slave, its controlling terminal, TERM=xterm-256color, --size columns x rows): with
the live screen, and with `--no-tui`, alternating on/off in every repeat so that drift hits
both. A thread drains the pty's master all the time (the screen would block on its writes
otherwise) and counts the bytes drawn; it stands for the terminal, so it is pinned with the
server, off perfsleuth's CPU.

Per run: `driver.schedule_lag_ms.p99` and the throughput from the run JSON, the run's
status from its store, and the CPU of the perfsleuth process and its children (psutil:
user + system, polled every 0.2 s until it exits; the live screen draws from a child
process of its own, `tracker.tui.screen_process`, which the per-thread list shows as
"child processes") as % of one core, over its whole life (start-up and summary included)
and over the run itself (`started_at` + `duration_s` of the run JSON). Per thread (psutil
`threads()`), named by one `py-spy dump --nonblocking` at mid-run: in both modes the main
thread is the run (the driver's event loop). The "screen" figure is the screen's process
over the run. From the run's stored one-second windows: the second in which the worst lag
fell, and the lag p99 from second 2 on (the screen's start-up left out), to tell a
start-up spike from a cost paid every second.

Verdicts: the pooled schedule lag p99 (every send of every run of a mode, from the runs'
stored lag histograms) with the TUI / without <= 1.1, with a 95% bootstrap interval that
resamples whole runs. A run's own p99 comes from ~800 sends, i.e. its 8 worst, and moved
0.5-2x between runs of the same mode on this shared VM; pooled, ~8,000 sends a mode set
it. The median of the per-repeat ratios and the ratio from second 2 on are printed (with
verdicts) beside it. The TUI's CPU =
median process CPU % (on) - median (off) < 5% of a core (the screen process's CPU over
the run is printed as a second estimate, and so is the CPU the screen adds outside the
run: its process's start-up and Textual's import, which the whole-life figure spreads
over the run's wall time, so shorter runs read higher).

    benchmarks/.venv/bin/python benchmarks/tui_overhead.py   # 3 x 2 runs of 20 s (3 x 3 --control)
    benchmarks/.venv/bin/python benchmarks/tui_overhead.py --quick        # ~1 min smoke run
    ... --no-pin --step-cost wait       # perfsleuth with a core to spare (the server waits)
    ... --control 19                    # and --no-tui beside a process burning 19 ms/s
    ... --control 16 --control-bursts 10  # the same CPU in 10 bursts a second

The control tells the screen's cost from the cost of any CPU work on the driver's core:
its process draws nothing, it only burns as much CPU as the screen's process, at its nice.

Always exits 0: benchmarks report, they do not gate.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import random
import re
import select
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from _peers import fmt, header, median, run_main, table, verdict
from _support import (
    BODY,
    add_driver_args,
    die_with_parent,
    example_server,
    find_perfsleuth,
    pin_prefix,
    split_cpus,
    stop_process,
)

from tracker.records.window import SCHEDULE_LAG, Histogram
from tracker.store import Store

LAG_RATIO = 1.1
TUI_CPU_PCT = 5.0
POLL_S = 0.2

# Lighter steps and wider batches than the demo's defaults (--max-batch 16, --step-ms 18,
# --per-seq-ms 2: ~10 req/s of 32 tokens at most), so 40 req/s (and more) stream without queueing.
SERVER_FLAGS = ("--max-batch", "64", "--step-ms", "4", "--per-seq-ms", "0.2")
STEADY_FROM_S = 2.0  # the steady-state lag leaves out the run's first seconds (start-up)


def _pty_preexec() -> None:
    # After setsid (start_new_session): the pty (fd 0) becomes the controlling terminal,
    # as in a shell; and the child goes when this script dies.
    with contextlib.suppress(OSError):
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    die_with_parent()


# -- perfsleuth under a pseudo-terminal ------------------------------------------------------


class PtyDrain:
    """Reads a pty master until told to stop; keeps (time, bytes) per read and a tail.

    It stands for the terminal: like the rest of this process it runs on the server's CPU
    when pinning (see `main`).
    """

    def __init__(self, master: int) -> None:
        self.master = master
        self.reads: list[tuple[float, int]] = []
        self.tail = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pty-drain", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if not ready:
                if self._stop.is_set():
                    return  # told to stop, and nothing came for 0.1 s
                continue
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:  # EIO: no process holds the slave any more
                return
            if not data:
                return
            self.reads.append((time.time(), len(data)))
            self.tail += data
            del self.tail[:-8192]

    def finish(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def total(self) -> int:
        return sum(n for _, n in self.reads)

    def between(self, t0: float, t1: float) -> int:
        return sum(n for t, n in self.reads if t0 <= t < t1)

    def text_tail(self, chars: int = 600) -> str:
        text = self.tail.decode(errors="replace")
        text = re.sub(r"\x1b\[[0-9;?<>=$]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>78]", "", text)
        return text[-chars:].strip()


@dataclass
class Series:
    """Cumulative CPU seconds sampled over time; read at any instant by interpolation."""

    points: list[tuple[float, float]] = field(default_factory=list)

    def at(self, t: float) -> float:
        pts = self.points
        if not pts or t <= pts[0][0]:
            return 0.0  # not alive yet (a thread seen later was created later)
        if t >= pts[-1][0]:
            return pts[-1][1]
        lo, hi = 0, len(pts) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if pts[mid][0] <= t:
                lo = mid
            else:
                hi = mid
        (t0, v0), (t1, v1) = pts[lo], pts[hi]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1

    def rate_pct(self, t0: float, t1: float) -> float:
        return 100.0 * (self.at(t1) - self.at(t0)) / (t1 - t0) if t1 > t0 else math.nan

    @property
    def last(self) -> float:
        return self.points[-1][1] if self.points else 0.0


@dataclass
class Run:
    tui: bool
    repeat: int
    returncode: int | None = None
    status: str = "?"
    wall_s: float = math.nan
    lag_p99: float = math.nan
    throughput: float = math.nan
    latency_p50: float = math.nan  # uncorrected, ms: the server's side of the picture
    lag_steady_p99: float = math.nan  # schedule lag p99 from second STEADY_FROM_S on
    lag_max: float = math.nan
    lag_max_at_s: float = math.nan  # the second of the run in which the worst lag fell
    # The run's schedule lag histogram (its non-warm-up windows, as the run JSON's p99) as
    # (value ms, count) buckets: pooled over the runs of a mode for the pooled p99.
    lag_buckets: list[tuple[float, int]] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    cpu_s: float = math.nan  # CPU seconds over the process life
    outside_s: float = math.nan  # of which outside the run (start-up, summary, storing)
    life_cpu_pct: float = math.nan  # whole process life, % of one core
    run_cpu_pct: float = math.nan  # from started_at over duration_s
    main_pct: float = math.nan  # main thread, over the run
    screen_pct: float = math.nan  # the screen's process (the child processes), over the run
    threads_pct: dict[str, float] = field(default_factory=dict)  # by name, over the run
    bytes_total: int = 0
    bytes_per_s: float = math.nan  # drawn during the run
    note: str = ""
    burn_ms: float = 0.0  # the control: --no-tui beside a process burning this much a second
    burn_bursts: int = 1  # in this many pieces a second

    @property
    def mode(self) -> str:
        return "tui" if self.tui else "burner" if self.burn_ms else "no-tui"


# The control's process: as much CPU a second as the screen's process uses, at its nice
# value, drawing nothing, in one piece or in as many bursts a second as the screen wakes
# to work. Bounded: it stops by itself after its run.
BURNER = """
import os, sys, time
burn, end = float(sys.argv[1]) / 1000, time.monotonic() + float(sys.argv[3])
bursts = int(sys.argv[4])
os.nice(int(sys.argv[2]))
while time.monotonic() < end:
    t = time.process_time()
    while time.process_time() - t < burn / bursts:
        sum(range(200))
    time.sleep(max(0.0, (1.0 - burn) / bursts))
"""
SCREEN_NICE = 10  # tracker.tui.screen_process.SCREEN_NICE


def thread_names(pid: int, spy: str | None) -> dict[int, str]:
    """OS thread id -> Python thread name, from one non-pausing py-spy dump."""
    if spy is None:
        return {}
    doc: Any = None
    for _ in range(3):  # a dump that does not pause its target can catch it mid-change
        try:
            out = subprocess.run(
                [spy, "dump", "--json", "--nonblocking", "--pid", str(pid)],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout
            doc = json.loads(out)
            break
        except (OSError, subprocess.TimeoutExpired, ValueError):
            time.sleep(0.2)
    names: dict[int, str] = {}
    for thread in doc if isinstance(doc, list) else []:
        tid, name = thread.get("os_thread_id"), thread.get("thread_name")
        if isinstance(tid, int) and isinstance(name, str):
            names[tid] = name
    return names


def find_pyspy() -> str | None:
    cand = Path(sys.executable).parent / "py-spy"
    return str(cand) if os.access(cand, os.X_OK) else shutil.which("py-spy")


def set_winsize(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def run_once(
    run: Run,
    *,
    exe: list[str],
    url: str,
    rate: float,
    duration: float,
    size: tuple[int, int],
    cpu: int | None,
    spy: str | None,
) -> Run:
    with tempfile.TemporaryDirectory(prefix="psbench-tui-") as tmp:
        out = Path(tmp) / "run.json"
        cmd = [*pin_prefix(cpu), *exe, "run", "--url", url + "/v1/completions"]
        cmd += ["--stream", "sse", "--body", json.dumps(BODY, separators=(",", ":"))]
        cmd += ["--rate", f"{rate:g}", "--duration", f"{duration:g}s"]
        cmd += ["--json", str(out), "--db", f"sqlite:///{tmp}/bench.db"]
        if not run.tui:
            cmd.append("--no-tui")
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env["TERM"] = "xterm-256color"
        master, slave = os.openpty()
        set_winsize(slave, *size)
        proc: subprocess.Popen[bytes] | None = None
        drain: PtyDrain | None = None
        burner: subprocess.Popen[bytes] | None = None
        try:
            if run.burn_ms:
                burner = subprocess.Popen(
                    [*pin_prefix(cpu), sys.executable, "-c", BURNER, f"{run.burn_ms:g}",
                     str(SCREEN_NICE), f"{duration + 30:g}", str(run.burn_bursts)],
                    preexec_fn=die_with_parent,
                )  # fmt: skip
            t_start = time.time()
            proc = subprocess.Popen(
                cmd,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=tmp,
                env=env,
                start_new_session=True,
                preexec_fn=_pty_preexec,
            )
            os.close(slave)
            slave = -1
            drain = PtyDrain(master)
            total = Series()
            per_tid: dict[int, Series] = {}
            names: dict[int, str] = {}
            name_at = time.monotonic() + 2.0 + duration / 2  # mid-run, after the start-up
            deadline = time.monotonic() + duration + 120.0
            ps = psutil.Process(proc.pid)
            # CPU of the whole tree: with the screen the driver runs in a child process.
            # A child's last reading is kept after it exits.
            last_cpu: dict[int, float] = {}
            children = Series()
            while proc.poll() is None:
                try:
                    now = time.time()
                    times = ps.cpu_times()
                    threads = ps.threads()
                    kids = ps.children(recursive=True)
                except psutil.Error:
                    break
                for kid in kids:
                    with contextlib.suppress(psutil.Error):
                        kid_times = kid.cpu_times()
                        last_cpu[kid.pid] = kid_times.user + kid_times.system
                kids_s = sum(last_cpu.values())
                children.points.append((now, kids_s))
                total.points.append((now, times.user + times.system + kids_s))
                for th in threads:
                    per_tid.setdefault(th.id, Series()).points.append(
                        (now, th.user_time + th.system_time)
                    )
                if not names and time.monotonic() >= name_at:
                    names = thread_names(proc.pid, spy) or {-1: ""}
                if time.monotonic() > deadline:
                    run.note = "timed out; stopped"
                    break
                time.sleep(POLL_S)
            stop_process(proc, signal.SIGTERM, 15.0)
            run.returncode = proc.returncode
            run.wall_s = time.time() - t_start
            drain.finish()
            run.bytes_total = drain.total
            run.life_cpu_pct = 100.0 * total.last / run.wall_s
            run.status = stored_status(Path(tmp) / "bench.db")
            doc: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
            if not doc:
                run.note = (run.note + " no run JSON: " + drain.text_tail()).strip()
                return run
            lag = (doc.get("driver") or {}).get("schedule_lag_ms") or {}
            run.lag_p99 = float(lag.get("p99", math.nan))
            run.throughput = float(doc.get("throughput_rps") or math.nan)
            run.latency_p50 = float((doc.get("latency_uncorrected_ms") or {}).get("p50", math.nan))
            run.requests = int((doc.get("requests") or {}).get("total", 0))
            run.errors = int((doc.get("requests") or {}).get("errors", 0))
            t0 = datetime.fromisoformat(doc["started_at"]).timestamp()
            t1 = t0 + float(doc["duration_s"])
            run.run_cpu_pct = total.rate_pct(t0, t1)
            run.cpu_s = total.last
            run.outside_s = total.last - (total.at(t1) - total.at(t0))
            run.bytes_per_s = drain.between(t0, t1) / (t1 - t0)
            by_name: dict[str, float] = {}
            for tid, series in per_tid.items():
                name = "MainThread" if tid == proc.pid else names.get(tid, "?")
                by_name[name] = by_name.get(name, 0.0) + series.rate_pct(t0, t1)
            if last_cpu:
                by_name["child processes"] = children.rate_pct(t0, t1)
            run.threads_pct = dict(sorted(by_name.items(), key=lambda kv: -kv[1]))
            run.main_pct = by_name.get("MainThread", math.nan)
            if run.tui:
                run.screen_pct = by_name.get("child processes", math.nan)
            if isinstance(doc.get("run_id"), int):
                lag_by_second(run, Path(tmp) / "bench.db", doc["run_id"])
            if run.returncode != 0:
                run.note = (run.note + " output: " + drain.text_tail()).strip()
        finally:
            if proc is not None:
                stop_process(proc, signal.SIGTERM, 10.0)
            if burner is not None:
                stop_process(burner, signal.SIGTERM, 5.0)
            if drain is not None:
                drain.finish()
            for fd in (master, slave):
                if fd >= 0:
                    os.close(fd)
    return run


def lag_by_second(run: Run, db: Path, run_id: int) -> None:
    """From the run's stored one-second windows: where the worst schedule lag fell, and
    the lag p99 without the first STEADY_FROM_S seconds (the screen's start-up)."""
    store = Store.open(f"sqlite:///{db}", upgrade=False)
    try:
        steady, whole = Histogram(), Histogram()
        for w in store.iter_windows(run_id):
            h = w.histograms.get(SCHEDULE_LAG)
            if h is None or not h.count:
                continue
            if not w.warmup:
                whole.merge(h)
            worst = h.percentile_ms(100.0)
            if not worst <= run.lag_max:  # also when lag_max is still NaN
                run.lag_max, run.lag_max_at_s = worst, w.start_s
            if w.start_s >= STEADY_FROM_S:
                steady.merge(h)
        if steady.count:
            run.lag_steady_p99 = steady.percentile_ms(99.0)
        run.lag_buckets = whole.buckets()
    finally:
        store.close()


def stored_status(db: Path) -> str:
    try:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            row = conn.execute("SELECT status FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.Error as exc:
        return f"store error: {exc}"
    return str(row[0]) if row else "not stored"


# -- report ------------------------------------------------------------------------------------


def run_line(r: Run, of: int) -> str:
    threads = ", ".join(f"{n} {v:.1f}" for n, v in r.threads_pct.items())
    return (
        f"repeat {r.repeat}/{of} {r.mode:6s} lag p99={fmt(r.lag_p99, 3)}ms "
        f"(from {STEADY_FROM_S:g}s {fmt(r.lag_steady_p99, 3)}ms, max {fmt(r.lag_max, 1)}ms "
        f"at {fmt(r.lag_max_at_s, 0)}s) "
        f"throughput={fmt(r.throughput)}/s p50={fmt(r.latency_p50, 0)}ms "
        f"errors={r.errors} status={r.status} "
        f"exit={r.returncode} cpu={fmt(r.life_cpu_pct, 1)}% (run {fmt(r.run_cpu_pct, 1)}%) "
        f"drawn={fmt(r.bytes_per_s, 0)} B/s ({r.bytes_total:,} B) wall={fmt(r.wall_s, 1)}s"
        f"\n  threads over the run, % of a core: {threads or '-'}"
        + (f"\n  note: {r.note}" if r.note else "")
    )


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"expected COLSxROWS, e.g. 120x40, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per run [20]")
    ap.add_argument("--repeats", type=int, default=3, help="on/off pairs (medians) [3]")
    ap.add_argument("--rate", type=float, default=40.0, help="streamed requests/s [40]")
    ap.add_argument("--size", type=parse_size, default=(120, 40), help="COLSxROWS [120x40]")
    add_driver_args(ap)
    ap.add_argument(
        "--control",
        type=float,
        default=0.0,
        metavar="MS",
        help="also run --no-tui beside a process (nice +10) that burns MS ms of CPU a second "
        "on perfsleuth's CPUs and draws nothing, e.g. 19 (the screen's process) [off]",
    )
    ap.add_argument(
        "--control-bursts",
        type=int,
        default=1,
        metavar="N",
        help="the control burns its MS in N bursts a second, e.g. 10 (the screen's process "
        "wakes to work a few to a dozen times a second) [1: one piece]",
    )
    ap.add_argument(
        "--step-cost",
        choices=("cpu", "wait"),
        default="cpu",
        help="the example server's steps burn CPU (as the demo's) or wait, as for a GPU, "
        "leaving the host's cores to perfsleuth [cpu]",
    )
    ap.add_argument("--quick", action="store_true", help="~1 min smoke run: 2 x 2 runs of 8 s")
    a = ap.parse_args()
    if a.quick:
        a.duration, a.repeats = 8.0, 2
    header("tui overhead: perfsleuth run with and without the live screen, under a pty")
    exe = find_perfsleuth(a.perfsleuth)
    spy = find_pyspy()
    server_cpu, client_cpu = split_cpus(not a.no_pin)
    if server_cpu is not None:
        # This process (its psutil polling every 0.2 s, the pty's reader, py-spy) is the
        # observer and the terminal, not perfsleuth: off perfsleuth's CPU, with the server.
        # Unpinned, a kernel trace showed it running on perfsleuth's core while a send fell
        # due more often in the TUI runs (35 waits > 0.5 ms vs 23 without the screen).
        os.sched_setaffinity(0, {server_cpu})
    cols, rows = a.size
    print(
        f"perfsleuth: {' '.join(exe)}; rate={a.rate:g}/s streamed (sse, 32 tokens) "
        f"duration={a.duration:g}s repeats={a.repeats} terminal={cols}x{rows} xterm-256color"
    )
    flags = (*SERVER_FLAGS, "--step-cost", a.step_cost)
    print(f"server: examples/llm_server.py {' '.join(flags)}")
    print(
        f"pinning: server and this benchmark (the terminal) cpu={server_cpu} "
        f"perfsleuth cpu={client_cpu}; py-spy: {spy or '-'}\n"
    )
    sys.stdout.flush()

    runs: list[Run] = []
    with (
        tempfile.TemporaryDirectory(prefix="psbench-tui-server-") as work,
        example_server(Path(work), flags, cpu=server_cpu, new_session=True) as server,
    ):
        for k in range(a.repeats):
            modes = [Run(True, k + 1), Run(False, k + 1)]
            if a.control:
                modes.append(Run(False, k + 1, burn_ms=a.control, burn_bursts=a.control_bursts))
            for r in modes[k % len(modes) :] + modes[: k % len(modes)]:  # rotated each repeat
                r = run_once(
                    r,
                    exe=exe,
                    url=server.base_url,
                    rate=a.rate,
                    duration=a.duration,
                    size=(cols, rows),
                    cpu=client_cpu,
                    spy=spy,
                )
                runs.append(r)
                print(run_line(r, a.repeats), flush=True)
    report(runs, a.rate)


def pooled_p99(runs: Sequence[Run]) -> float:
    """Schedule lag p99 over every send of `runs` together (HdrHistogram's rule: the
    lowest bucket holding the 99% rank), from their buckets."""
    counts: dict[float, int] = {}
    for r in runs:
        for value, n in r.lag_buckets:
            counts[value] = counts.get(value, 0) + n
    total = sum(counts.values())
    if not total:
        return math.nan
    rank, seen = max(int(0.99 * total + 0.5), 1), 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return value
    return math.nan


def pooled_interval(
    on: Sequence[Run], off: Sequence[Run], rounds: int = 2000
) -> tuple[float, float]:
    """95% bootstrap interval of the pooled p99 ratio, resampling whole runs in each mode
    (a run's sends are not independent: a disturbed minute moves many of them)."""
    if len(on) < 2 or len(off) < 2:
        return math.nan, math.nan
    rng = random.Random(0)
    ratios = sorted(
        pooled_p99(rng.choices(on, k=len(on))) / pooled_p99(rng.choices(off, k=len(off)))
        for _ in range(rounds)
    )
    return ratios[int(0.025 * rounds)], ratios[int(0.975 * rounds) - 1]


def bootstrap_interval(values: Sequence[float], rounds: int = 10_000) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval of the median of `values` (seeded)."""
    if len(values) < 2:
        return math.nan, math.nan
    rng = random.Random(0)
    medians = sorted(median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def report(runs: Sequence[Run], rate: float) -> None:
    # Medians and verdicts from completed runs only (a run stopped from outside is shown).
    done = [r for r in runs if r.status == "completed" and r.returncode == 0]
    on = [r for r in done if r.tui]
    off = [r for r in done if not r.tui and not r.burn_ms]
    control = [r for r in done if r.burn_ms]

    def med(rs: Sequence[Run], key: str) -> float:
        return median([float(getattr(r, key)) for r in rs])

    print()
    print(
        table(
            [
                "repeat",
                "mode",
                "lag p99 ms",
                f"from {STEADY_FROM_S:g}s",
                "req/s",
                "errors",
                "status",
                "CPU % life",
                "CPU % run",
                "main thr %",
                "screen proc %",
                "drawn B/s",
            ],
            [
                [
                    r.repeat,
                    r.mode,
                    fmt(r.lag_p99, 3),
                    fmt(r.lag_steady_p99, 3),
                    fmt(r.throughput),
                    r.errors,
                    r.status,
                    fmt(r.life_cpu_pct, 1),
                    fmt(r.run_cpu_pct, 1),
                    fmt(r.main_pct, 1),
                    fmt(r.screen_pct, 1),
                    fmt(r.bytes_per_s, 0),
                ]
                for r in runs
            ]
            + [
                [
                    "median",
                    mode,
                    fmt(med(rs, "lag_p99"), 3),
                    fmt(med(rs, "lag_steady_p99"), 3),
                    fmt(med(rs, "throughput")),
                    fmt(med(rs, "errors"), 0),
                    "-",
                    fmt(med(rs, "life_cpu_pct"), 1),
                    fmt(med(rs, "run_cpu_pct"), 1),
                    fmt(med(rs, "main_pct"), 1),
                    fmt(med(rs, "screen_pct"), 1),
                    fmt(med(rs, "bytes_per_s"), 0),
                ]
                for mode, rs in (("tui", on), ("no-tui", off), ("burner", control))
                if rs
            ],
        )
    )
    print(
        "CPU: % of one core (psutil, the perfsleuth process and its children); "
        "life = start to exit, run = started_at + duration_s of the run JSON; "
        "threads named by py-spy dump."
    )
    if len(done) < len(runs):
        print(f"{len(runs) - len(done)} run(s) not completed: left out of the medians")
    pairs: dict[int, dict[bool, Run]] = {}
    for r in done:
        if not r.burn_ms:
            pairs.setdefault(r.repeat, {})[r.tui] = r
    ratios = [
        p[True].lag_p99 / p[False].lag_p99
        for p in pairs.values()
        if len(p) == 2 and p[False].lag_p99 > 0
    ]
    lag_ratio = median(ratios)
    low, high = bootstrap_interval(ratios)
    pooled_on, pooled_off = pooled_p99(on), pooled_p99(off)
    pooled = pooled_on / pooled_off if pooled_off > 0 else math.nan
    pooled_low, pooled_high = pooled_interval(on, off)
    steady_ratio = median(
        [
            p[True].lag_steady_p99 / p[False].lag_steady_p99
            for p in pairs.values()
            if len(p) == 2 and p[False].lag_steady_p99 > 0
        ]
    )
    lag_on, lag_off = med(on, "lag_p99"), med(off, "lag_p99")
    tui_cpu = med(on, "life_cpu_pct") - med(off, "life_cpu_pct")
    tui_cpu_run = med(on, "run_cpu_pct") - med(off, "run_cpu_pct")
    saturated = [r for r in runs if r.throughput == r.throughput and r.throughput < 0.97 * rate]
    extra_out = med(on, "outside_s") - med(off, "outside_s")
    print(
        f"CPU outside the run (start-up, summary, storing): {fmt(med(on, 'outside_s'))} s "
        f"with the TUI, {fmt(med(off, 'outside_s'))} s without: the screen's fixed cost is "
        f"~{fmt(extra_out)} s a run, which the life figure spreads over the run's wall time."
    )
    if saturated:
        print(
            f"warning: {len(saturated)} run(s) below 97% of {rate:g} req/s: the server (or the "
            "driver) could not keep up; lower --rate"
        )
    print()
    print(
        table(
            ["target", "measured", "verdict"],
            [
                [
                    f"schedule lag p99, TUI on / off <= {LAG_RATIO:g}x (pooled: every send "
                    "of a mode's runs)",
                    f"{fmt(pooled)}x ({fmt(pooled_on, 3)} vs {fmt(pooled_off, 3)} ms over "
                    f"{sum(n for r in on for _, n in r.lag_buckets):,} and "
                    f"{sum(n for r in off for _, n in r.lag_buckets):,} sends; bootstrap 95% "
                    f"interval over runs {fmt(pooled_low)}-{fmt(pooled_high)})",
                    verdict(pooled <= LAG_RATIO if pooled == pooled else None),
                ],
                *(
                    [
                        [
                            f"  control: --no-tui beside a process burning {control[0].burn_ms:g} "
                            f"ms/s in {control[0].burn_bursts} burst(s) (nice +10, draws "
                            "nothing) / --no-tui",
                            f"{fmt(pooled_p99(control) / pooled_off)}x "
                            f"({fmt(pooled_p99(control), 3)} vs {fmt(pooled_off, 3)} ms; "
                            "bootstrap 95% interval over runs "
                            + "-".join(fmt(x) for x in pooled_interval(control, off))
                            + ")",
                            "-",
                        ]
                    ]
                    if control and pooled_off > 0
                    else []
                ),
                [
                    "  per repeat: the median of the runs' p99 ratios (on / off)",
                    f"{fmt(lag_ratio)}x (median of per-repeat ratios "
                    f"{', '.join(fmt(x) for x in ratios)}; bootstrap 95% interval of that "
                    f"median {fmt(low)}-{fmt(high)}; medians {fmt(lag_on, 3)} vs "
                    f"{fmt(lag_off, 3)} ms)",
                    verdict(lag_ratio <= LAG_RATIO if lag_ratio == lag_ratio else None),
                ],
                [
                    f"  the same from second {STEADY_FROM_S:g} on (start-up left out)",
                    f"{fmt(steady_ratio)}x (medians {fmt(med(on, 'lag_steady_p99'), 3)} vs "
                    f"{fmt(med(off, 'lag_steady_p99'), 3)} ms)",
                    verdict(steady_ratio <= LAG_RATIO if steady_ratio == steady_ratio else None),
                ],
                [
                    f"TUI CPU < {TUI_CPU_PCT:g}% of a core (process CPU on - off, life)",
                    f"{fmt(tui_cpu)}% ({fmt(med(on, 'life_cpu_pct'))} - "
                    f"{fmt(med(off, 'life_cpu_pct'))}; start-up and summary included)",
                    verdict(tui_cpu < TUI_CPU_PCT if tui_cpu == tui_cpu else None),
                ],
                [
                    "  the same over the run only (started_at + duration_s)",
                    f"{fmt(tui_cpu_run)}% ({fmt(med(on, 'run_cpu_pct'))} - "
                    f"{fmt(med(off, 'run_cpu_pct'))})",
                    verdict(tui_cpu_run < TUI_CPU_PCT if tui_cpu_run == tui_cpu_run else None),
                ],
                [
                    "  2nd estimate: the screen's process (TUI runs), over the run",
                    f"{fmt(med(on, 'screen_pct'))}% (main thread, the run: "
                    f"{fmt(med(on, 'main_pct'))}% with the TUI, {fmt(med(off, 'main_pct'))}% "
                    "without)",
                    verdict(
                        med(on, "screen_pct") < TUI_CPU_PCT
                        if med(on, "screen_pct") == med(on, "screen_pct")
                        else None
                    ),
                ],
            ],
        )
    )


if __name__ == "__main__":
    run_main(main)

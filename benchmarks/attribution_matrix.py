"""Attribution fault matrix: does `perfsleuth run` name the right cause of a slowdown, and fast?

Validates issue 6's live detector and attribution (tracker/analysis/detect.py, attribute.py)
from the outside, through the run JSON contract only: every trial is a real
`perfsleuth run ... --attach SERVER_PID --json FILE` against the example LLM server, with a
fault switched on at half time, and the run's `findings` are scored against the fault that
was really there. Run by hand (benchmarks/README.md); it reports and never gates (exit 0).

Conditions (expected cause): clean (no finding at all), cpu and ext_cpu (contention), gc
(memory), io and ext_io (io), overload (overload).
- cpu / gc / io: the server's own faults, POST /admin/fault {"fault", "strength": s} at D/2.
- ext_cpu: round(cpu_count x s) busy processes started by this script at D/2 (children of
  this script, so outside the probed tree).
- ext_io: the server writes to the disk on its request path all run long (its io fault at
  strength EXT_IO_BASE, on before the load starts: a disk that nobody touches cannot slow
  a service down); at D/2, round(2 x s) processes start 1 MiB writes + fsync in a loop,
  each in a 64 MiB file of its own, in a temp dir removed afterwards. The server's own
  writes stay the same: only the host's disk shows the cause.
- overload: no fault; the open-model rate jumps at D/2 from the base rate to
  capacity x (1 + s/2) (a scenario file with a throttle: jump, hold, jump, hold).
Every fault is switched off again at D, the load's end (before the drain and summary). The
server is a fresh `examples/llm_server.py` per trial, attached by pid; capacity is measured
once first (a closed-model run with 2 x max-batch users) unless --capacity is given, and
the base rate is 40% of it.
The generators for ext_* are tests/support/hogs.py (shared with the attribution tests;
tests/ is put on sys.path below), and every one of them stops by itself if this script dies.

Scoring per trial: correct when a finding overlapping the fault interval [D/2, D] (and
flagged at or after D/2: a finding raised before the fault cannot be about it) has the
expected top `cause`; clean is correct when the run has no finding at all. The confusion
matrix counts, per trial, the expected cause when some overlapping finding has it, else the
cause of the first overlapping finding, else "none". Detection delay = the first
overlapping finding's `flagged_at_s` - D/2 (target <= 5 s at the default probe interval).

    benchmarks/.venv/bin/python benchmarks/attribution_matrix.py            # ~43 min, 65 runs
    benchmarks/.venv/bin/python benchmarks/attribution_matrix.py --quick    # ~3.5 min, 7 runs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _peers import fmt, header, median, run_main, table
from _support import (
    BODY,
    MAX_TOKENS,
    PROMPT,
    REPO,
    ExampleServer,
    die_with_parent,
    example_server,
    find_perfsleuth,
    post_json,
    stop_process,
)

# The generators live with the tests that also use them (tests/ is in the sdist, benchmarks/
# is not); tests/ is not an importable package path from here, hence the sys.path entry.
sys.path.insert(0, str(REPO / "tests"))
from support.filesystems import on_tmpfs
from support.hogs import cpu_hogs, fsync_writer

CONDITIONS = ("clean", "cpu", "ext_cpu", "gc", "io", "ext_io", "overload")
EXPECTED: dict[str, str | None] = {
    "clean": None,
    "cpu": "contention",
    "ext_cpu": "contention",
    "gc": "memory",
    "io": "io",
    "ext_io": "io",
    "overload": "overload",
}
CAUSES = ("contention", "memory", "io", "overload", "unexplained")
SERVER_FAULTS = ("cpu", "gc", "io")
#: ext_io: the strength of the server's own fsync'd writes, all run long (~2 ms a step).
EXT_IO_BASE = 0.25

REQUEST_TIMEOUT_S = 30.0  # bounds the drain after an overload (its queue is < 30 s long)
BASE_LOAD = 0.4  # the base rate as a share of capacity: busy, with room for a fault to show
# Measured with --quick on the 2-core VM: server start + warm-up, perfsleuth start, drain,
# summary and export, server stop. Used only for the printed estimate.
OVERHEAD_S = 4.0
CAPACITY_RUN_S = 16.0  # the capacity run: a server, 10 s of load, the summary

_PROGRESS = re.compile(r"^\[\s*(\d+)s/")


# -- processes ---------------------------------------------------------------------------


def trial_server(
    workdir: Path, max_batch: int, step_ms: float, io_dir: str | None
) -> contextlib.AbstractContextManager[ExampleServer]:
    """A fresh example server on a port it picks itself (no race), warmed up, then stopped.

    Fresh per trial rather than reset between trials: a reset would still carry the GC
    fault's grown and fragmented heap, the KV cache, an overload's queue and the previous
    fault's files into the next baseline; a start costs ~1.5 s of a ~38 s trial.
    """
    env = {**os.environ, "TMPDIR": io_dir} if io_dir else None  # where its io fault writes
    flags = ["--max-batch", str(max_batch), "--step-ms", str(step_ms)]
    return example_server(workdir, flags, env=env)


class Perfsleuth:
    """`perfsleuth run` as a child, its output read by a thread that notes when load began.

    The first progress line (`[   1s/30s] ...`) is printed as the first one-second window
    closes, so the load started `end` seconds before it arrived: that is the clock the
    fault is scheduled on, to within a few ms (the windows tick on time).
    """

    def __init__(self, cmd: Sequence[str], cwd: Path) -> None:
        self.cmd = list(cmd)
        self.load_start: float | None = None
        self.tail: deque[str] = deque(maxlen=400)
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=die_with_parent,  # no perfsleuth outlives this script
        )
        self._reader = threading.Thread(target=self._read, name="perfsleuth-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            arrived = time.monotonic()
            if self.load_start is None and (m := _PROGRESS.match(line)) is not None:
                self.load_start = arrived - float(m.group(1))
            self.tail.append(line.rstrip())

    def stop(self) -> None:
        # SIGINT is perfsleuth's Ctrl-C: the run is still stored (as interrupted).
        stop_process(self.proc, signal.SIGINT, 20.0, reap_s=10.0)
        self._reader.join(timeout=5)

    def output_tail(self, lines: int = 12) -> str:
        return "\n".join(list(self.tail)[-lines:])


# -- one trial ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    duration_s: float
    trials: int
    strengths: tuple[float, ...]
    conditions: tuple[str, ...]
    rate: float
    capacity: float
    capacity_note: str
    max_batch: int
    step_ms: float
    pause_s: float
    io_dir: str | None
    exe: tuple[str, ...]
    keep_dir: str | None = None

    @property
    def half_s(self) -> float:
        return self.duration_s / 2

    @property
    def trial_timeout_s(self) -> float:
        return self.duration_s + REQUEST_TIMEOUT_S + 60.0

    def overload_rate(self, strength: float) -> float:
        # The excess over capacity doubles with the strength: x1.5 at 1, x2 at 2.
        return round(self.capacity * (1 + strength / 2), 1)


@dataclass
class Trial:
    condition: str
    strength: float | None
    trial: int
    expected: str | None
    ok: bool = False  # the run completed and its JSON was read
    error: str | None = None
    rate: float = 0.0
    fault_on_s: float | None = None  # when it was switched on, seconds after load start
    fault_off_s: float | None = None  # and off
    switch_ms: float | None = None  # how long switching took (a POST, or starting processes)
    run_status: str | None = None
    exit_code: int | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    predicted: str = "none"
    correct: bool = False
    delay_s: float | None = None
    false_alarms: int = 0
    early: bool = False  # a finding over the fault interval was flagged before D/2
    p50_before_ms: float | None = None
    p50_after_ms: float | None = None
    errors_after: int = 0
    saturated: bool | None = None
    wall_s: float = 0.0

    @property
    def effect(self) -> float | None:
        """Median window p50 latency with the fault on / before it (1.0 = no slowdown)."""
        if self.p50_before_ms and self.p50_after_ms is not None:
            return self.p50_after_ms / self.p50_before_ms
        return None

    @property
    def column(self) -> str:
        return self.predicted if self.ok else "error"


def flag_args(base_url: str, rate: float, duration_s: float) -> list[str]:
    return [
        "--url",
        base_url + "/v1/completions",
        "--stream",
        "sse",
        "--body",
        json.dumps(BODY, separators=(",", ":")),
        "--rate",
        f"{rate:g}",
        "--duration",
        f"{duration_s:g}s",
        "--timeout",
        f"{REQUEST_TIMEOUT_S:g}s",
    ]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: the same escapes
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")


def overload_scenario(server: ExampleServer, base: float, over: float, duration_s: float) -> str:
    """The flags' request with a rate that jumps from `base` to `over` at half time."""
    half = f'"{duration_s / 2:g}s"'
    return f"""\
name = "attribution matrix: overload"
url = "{server.base_url}"

[load]
model = "open"
throttle = [{{ jump = {base:g} }}, {{ hold = {half} }}, {{ jump = {over:g} }}, {{ hold = {half} }}]

[[requests]]
method = "POST"
path = "/v1/completions"
stream = "sse"
timeout = "{REQUEST_TIMEOUT_S:g}s"
json = {_toml(BODY)}
"""


def run_trial(s: Settings, condition: str, strength: float | None, number: int) -> Trial:
    trial = Trial(condition, strength, number, EXPECTED[condition], rate=s.rate)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="psattr-")))
        try:
            server = stack.enter_context(trial_server(tmp, s.max_batch, s.step_ms, s.io_dir))
        except (RuntimeError, OSError) as exc:
            trial.error = f"server: {exc}"
            return trial
        if condition == "overload":
            assert strength is not None
            scenario = tmp / "overload.toml"
            scenario.write_text(
                overload_scenario(server, s.rate, s.overload_rate(strength), s.duration_s)
            )
            args = [str(scenario)]
        else:
            args = flag_args(server.base_url, s.rate, s.duration_s)
        out = tmp / "run.json"
        db = f"sqlite:///{tmp}/attr.db"
        cmd = [*s.exe, "run", *args, "--attach", str(server.pid), "--json", str(out)]
        cmd += ["--db", db, "--no-tui"]
        fault = Fault(condition, strength, server, s.io_dir)
        stack.callback(fault.generators.close)
        fault.before_load()
        run = Perfsleuth(cmd, tmp)
        stack.callback(run.stop)
        drive(run, fault, trial, s, deadline=started + s.trial_timeout_s)
        fault.generators.close()
        run.stop()
        trial.exit_code = run.proc.returncode
        if trial.error is None:
            read_run(trial, out, tmp, s, db)
            if not trial.ok and trial.error is None:
                trial.error = f"no run JSON (exit {trial.exit_code}):\n{run.output_tail()}"
        if s.keep_dir is not None:
            cell = condition if strength is None else f"{condition}-x{strength:g}"
            keep(Path(s.keep_dir) / f"{cell}-{number}", tmp, run)
    trial.wall_s = round(time.monotonic() - started, 1)
    return trial


def drive(run: Perfsleuth, fault: Fault, trial: Trial, s: Settings, deadline: float) -> None:
    """Until the run ends: the fault on at D/2 and off at D, on the run's own load clock.

    Off at D (the load's end) rather than when perfsleuth exits: the scored interval is
    [D/2, D], and a fault left on would slow the drain and the summary several-fold.
    """
    while run.proc.poll() is None:
        now = time.monotonic()
        if now > deadline:
            trial.error = f"timed out after {s.trial_timeout_s:.0f}s"
            return
        if run.load_start is None:
            time.sleep(0.05)
            continue
        on_at, off_at = run.load_start + s.half_s, run.load_start + s.duration_s
        try:
            if trial.fault_on_s is None and now >= on_at:
                trial.fault_on_s = round(now - run.load_start, 3)
                fault.on(max_s=deadline - now + 5)
                trial.switch_ms = round((time.monotonic() - now) * 1000, 1)
                continue
            if trial.fault_on_s is not None and trial.fault_off_s is None and now >= off_at:
                trial.fault_off_s = round(now - run.load_start, 3)
                fault.off()
                continue
        except (OSError, ValueError) as exc:  # urllib's errors are OSErrors
            trial.error = f"switching {trial.condition} failed: {exc}"
            return
        due = on_at if trial.fault_on_s is None else off_at if trial.fault_off_s is None else None
        time.sleep(0.05 if due is None else max(0.0, min(0.05, due - now)))


@dataclass
class Fault:
    """What a condition switches on at half time and off at the end."""

    condition: str
    strength: float | None
    server: ExampleServer
    io_dir: str | None
    generators: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def on(self, max_s: float) -> None:
        c, strength = self.condition, self.strength or 1.0
        if c in SERVER_FAULTS:
            self._server_fault(c, strength)
        elif c == "ext_cpu":
            n = max(1, round((os.cpu_count() or 1) * strength))  # as the server's own cpu fault
            self.generators.enter_context(cpu_hogs(n, max_s=max_s))
        elif c == "ext_io":
            writers = max(1, round(2 * strength))
            self.generators.enter_context(
                fsync_writer(self.io_dir, writers=writers, chunk_bytes=1 << 20, max_s=max_s)
            )
        # clean: nothing; overload: the scenario's rate jumps by itself at half time.

    def before_load(self) -> None:
        """ext_io: the server's own steady disk writes, on from before the load."""
        if self.condition == "ext_io":
            self._server_fault("io", EXT_IO_BASE)

    def off(self) -> None:
        if self.condition in SERVER_FAULTS or self.condition == "ext_io":
            self._server_fault("none", 1.0)
        self.generators.close()

    def _server_fault(self, name: str, strength: float) -> None:
        url = self.server.base_url + "/admin/fault"
        post_json(url, {"fault": name, "strength": strength})


def keep(where: Path, tmp: Path, run: Perfsleuth) -> None:
    """Copy a trial's run JSON, store and logs out of its temp dir, to look into a miss."""
    where.mkdir(parents=True, exist_ok=True)
    for name in ("run.json", "attr.db", "server.log", "overload.toml"):
        if (tmp / name).exists():
            shutil.copy2(tmp / name, where / name)
    (where / "perfsleuth.txt").write_text(run.output_tail(len(run.tail)) + "\n")


def read_run(trial: Trial, out: Path, tmp: Path, s: Settings, db: str) -> None:
    if not out.exists():
        return
    try:
        doc = json.loads(out.read_text())
    except ValueError as exc:
        trial.error = f"unreadable run JSON: {exc}"
        return
    trial.ok = True
    trial.run_status = doc.get("status")
    trial.saturated = (doc.get("driver") or {}).get("saturated")
    raw = doc.get("findings") or []
    trial.findings = [f for f in raw if isinstance(f, dict)]
    score(trial, s.half_s, s.duration_s)
    if trial.run_status != "completed":
        trial.error = f"run {trial.run_status}: {doc.get('error')}"
    window_effect(trial, doc.get("run_id"), tmp, s, db)


# -- scoring -----------------------------------------------------------------------------


def _num(value: Any, default: float) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )


def cause_of(finding: dict[str, Any]) -> str:
    cause = finding.get("cause")
    if cause is None:
        return "unexplained"
    return cause if cause in CAUSES else f"other:{cause}"


def score(trial: Trial, half_s: float, duration_s: float) -> None:
    """Fill predicted / correct / delay / false alarms from the trial's findings."""
    findings = sorted(
        trial.findings,
        key=lambda f: (_num(f.get("flagged_at_s"), math.inf), _num(f.get("start_s"), 0.0)),
    )
    if trial.expected is None:
        trial.predicted = cause_of(findings[0]) if findings else "none"
        trial.correct = not findings
        trial.false_alarms = len(findings)
        return

    def about_the_fault(f: dict[str, Any]) -> bool:
        start = _num(f.get("start_s"), 0.0)
        end = _num(f.get("end_s"), math.inf)  # still open when the run ended
        flagged = _num(f.get("flagged_at_s"), math.inf)  # unknown: cannot be "too early"
        return start < duration_s and end > half_s and flagged >= half_s

    overlapping = [f for f in findings if about_the_fault(f)]
    trial.early = any(
        _num(f.get("start_s"), 0.0) < duration_s
        and _num(f.get("end_s"), math.inf) > half_s
        and _num(f.get("flagged_at_s"), math.inf) < half_s
        for f in findings
    )
    trial.false_alarms = len(findings) - len(overlapping)
    if not overlapping:
        trial.predicted = "none"
        return
    causes = [cause_of(f) for f in overlapping]
    trial.correct = trial.expected in causes
    trial.predicted = trial.expected if trial.correct else causes[0]
    flagged = overlapping[0].get("flagged_at_s")
    if isinstance(flagged, int | float):
        trial.delay_s = round(float(flagged) - half_s, 3)


def export_windows(exe: Sequence[str], run_id: Any, db: str, cwd: Path) -> list[dict[str, str]]:
    """The run's one-second latency windows (`perfsleuth export --format csv`), as rows."""
    cmd = [*exe, "export", str(run_id), "--db", db, "--format", "csv", "--metric", "latency"]
    done = subprocess.run(
        [*cmd, "--out", "-"], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    lines = done.stdout.strip().splitlines() if done.returncode == 0 else []
    if len(lines) < 2:
        return []
    names = lines[0].split(",")
    return [dict(zip(names, line.split(","), strict=False)) for line in lines[1:]]


def window_effect(trial: Trial, run_id: Any, tmp: Path, s: Settings, db: str) -> None:
    """Median per-second p50 latency before the fault vs with it.

    Says whether there was a slowdown to find at all: a miss on a fault that did nothing
    is not the detector's fault. Skips the first window (cold) and 2 s after the switch.
    """
    if run_id is None:
        return
    before: list[float] = []
    after: list[float] = []
    for row in export_windows(s.exe, run_id, db, tmp):
        start, count = float(row["start_s"]), int(row["count"])
        end = start + float(row["duration_s"])
        if start >= s.half_s:
            trial.errors_after += int(row["errors"])
        if not count:
            continue
        if start >= 1 and end <= s.half_s:
            before.append(float(row["p50_ms"]))
        elif start >= s.half_s + 2 and end <= s.duration_s:
            after.append(float(row["p50_ms"]))
    if before:
        trial.p50_before_ms = round(median(before), 1)
    if after:
        trial.p50_after_ms = round(median(after), 1)


# -- capacity ----------------------------------------------------------------------------


def knob_capacity(max_batch: int, step_ms: float, per_seq_ms: float = 2.0) -> float:
    """Requests/s of a full batch from the server's cost model (its default per-seq and
    prefill costs), if the engine thread had a core to itself."""
    prompt_tokens = len(PROMPT.split())
    prefill_ms = max_batch / MAX_TOKENS * prompt_tokens * 0.2  # admissions per step x cost
    step = step_ms + per_seq_ms * max_batch + prefill_ms
    return max_batch / MAX_TOKENS / (step / 1000)


def measure_capacity(exe: Sequence[str], max_batch: int, step_ms: float) -> float:
    """Completions per second of a closed-model run with twice a full batch of users
    (always queued), probes attached as in the trials: the most the server completes.

    Counted per one-second window inside the load phase, not from the run's throughput:
    that also counts the 2 x max-batch requests drained after the load, ~+40% over 10 s.
    """
    duration_s, warmup_s = 10, 2
    with tempfile.TemporaryDirectory(prefix="psattr-cap-") as name:
        tmp = Path(name)
        with trial_server(tmp, max_batch, step_ms, None) as server:
            args = flag_args(server.base_url, 1, duration_s)
            rate_at = args.index("--rate")
            args[rate_at : rate_at + 2] = ["--users", str(2 * max_batch)]
            out, db = tmp / "capacity.json", f"sqlite:///{tmp}/cap.db"
            cmd = [*exe, "run", *args, "--attach", str(server.pid), "--json", str(out)]
            cmd += ["--db", db, "--no-tui"]
            run = Perfsleuth(cmd, tmp)
            try:
                run.proc.wait(timeout=90)
            finally:
                run.stop()
            if not out.exists():
                raise RuntimeError(f"capacity run failed:\n{run.output_tail()}")
            run_id = json.loads(out.read_text())["run_id"]
            ok = [
                int(row["ok"])
                for row in export_windows(exe, run_id, db, tmp)
                if float(row["start_s"]) >= warmup_s and float(row["start_s"]) + 1 <= duration_s
            ]
            if not ok:
                raise RuntimeError("capacity run: no load windows to count")
            return sum(ok) / len(ok)


# -- report ------------------------------------------------------------------------------


def cells(s: Settings) -> list[tuple[str, float | None]]:
    out: list[tuple[str, float | None]] = []
    for condition in s.conditions:
        if condition == "clean":
            out.append((condition, None))
        else:
            out.extend((condition, strength) for strength in s.strengths)
    return out


def estimate_s(s: Settings) -> float:
    total = 0.0
    for condition, strength in cells(s):
        drain = 0.0
        if condition == "overload" and strength is not None:
            # The queue built in the second half drains at capacity after the load ends.
            excess = s.overload_rate(strength) - s.capacity
            drain = min(REQUEST_TIMEOUT_S, excess * s.half_s / s.capacity)
        total += s.duration_s + OVERHEAD_S + s.pause_s + drain
    return total * s.trials


def strength_label(strength: float | None) -> str:
    return "-" if strength is None else f"{strength:g}"


def report(s: Settings, trials: list[Trial], elapsed_s: float, interrupted: bool) -> str:
    extra = sorted({t.column for t in trials} - {*CAUSES, "none"})  # other:..., error
    columns = [*CAUSES, "none", *extra]
    rows = []
    for condition, strength in cells(s):
        mine = [t for t in trials if t.condition == condition and t.strength == strength]
        if not mine:
            continue
        counts = Counter(t.column for t in mine)
        delays = [t.delay_s for t in mine if t.delay_s is not None]
        effects = [e for t in mine if (e := t.effect) is not None]
        rows.append(
            [
                condition,
                strength_label(strength),
                EXPECTED[condition] or "none",
                *(counts.get(c, 0) for c in columns),
                f"{sum(t.correct for t in mine)}/{len(mine)}",
                fmt(median(delays), 1) if delays else "-",
                fmt(median(effects), 2) + "x" if effects else "-",
            ]
        )
    lines = ["## Confusion matrix (trials per row; column = cause named for the fault)", ""]
    head = ["condition", "strength", "expected", *columns, "correct", "delay p50 s"]
    lines.append(table([*head, "p50 after/before"], rows))
    lines += ["", "## Per condition", ""]
    per = []
    for condition in s.conditions:
        mine = [t for t in trials if t.condition == condition]
        if not mine:
            continue
        delays = [t.delay_s for t in mine if t.delay_s is not None]
        right = sum(t.correct for t in mine)
        per.append(
            [
                condition,
                EXPECTED[condition] or "none",
                f"{right}/{len(mine)}",
                f"{100 * right / len(mine):.0f}%",
                fmt(median(delays), 1) if delays else "-",
                fmt(max(delays), 1) if delays else "-",
                sum(t.false_alarms for t in mine),
                sum(t.early for t in mine),
                sum(not t.ok for t in mine),
            ]
        )
    head = ["condition", "expected", "correct", "accuracy", "delay p50 s", "delay max s"]
    lines.append(table([*head, "false alarms", "flagged early", "failed runs"], per))
    lines += [
        "",
        "false alarms: findings not about the fault (clean: every finding). flagged early: a",
        "finding spanning the fault interval was raised before D/2 (counted as a false alarm,",
        "not a detection: it cannot have been caused by the fault).",
    ]
    right = sum(t.correct for t in trials)
    lines += ["", f"overall accuracy: {right}/{len(trials)} trials"]
    delays = [t.delay_s for t in trials if t.delay_s is not None]
    if delays:
        worst = max(delays)
        verdict = "PASS" if worst <= 5.0 else "FAIL"
        lines.append(
            f"detection delay over {len(delays)} detections: median {median(delays):.1f} s, "
            f"max {worst:.1f} s (target <= 5 s: {verdict})"
        )
    else:
        lines.append("detection delay: no finding overlapped a fault (nothing to time)")
    onsets = [t.fault_on_s - s.half_s for t in trials if t.fault_on_s is not None]
    if onsets:
        lines.append(
            f"fault switch vs D/2: median {1000 * median(onsets):+.0f} ms, "
            f"max {1000 * max(onsets):+.0f} ms (from perfsleuth's first progress line)"
        )
    for t in trials:
        if t.error:
            first = t.error.splitlines()[0]
            lines.append(f"failed: {t.condition} x{strength_label(t.strength)} #{t.trial}: {first}")
    state = "interrupted" if interrupted else "done"
    lines.append(f"{state}: {len(trials)} trials in {elapsed_s / 60:.1f} min")
    return "\n".join(lines)


def trial_line(index: int, total: int, t: Trial) -> str:
    effect = f"{t.effect:.2f}x" if t.effect is not None else "-"
    delay = f"{t.delay_s:+.1f}s" if t.delay_s is not None else "-"
    verdict = "ok  " if t.correct else "MISS"
    name = f"{t.condition} x{strength_label(t.strength)}"
    return (
        f"[{index:>3}/{total}] {verdict} {name:<12} #{t.trial} named {t.column:<12} "
        f"(expected {t.expected or 'none'}) delay {delay:>6} p50 after/before {effect:>6} "
        f"false alarms {t.false_alarms}{' (early)' if t.early else ''} {t.wall_s:.0f}s"
    )


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add = p.add_argument
    add("--quick", action="store_true", help="smoke test: 1 trial, strength 2, 20 s")
    add("--trials", type=int, help="trials per condition and strength [5]")
    add("--duration", type=float, help="seconds of load per trial; fault at half [30]")
    add("--strengths", help="comma-separated fault strengths [1,2]")
    add("--conditions", default=",".join(CONDITIONS), help="comma-separated subset")
    add("--rate", type=float, help="base open-model rate [40%% of capacity]")
    add("--capacity", type=float, help="server req/s; skips measuring it")
    add("--max-batch", type=int, default=16, help="example server --max-batch [16]")
    add("--step-ms", type=float, default=18.0, help="example server --step-ms [18]")
    add("--pause", type=float, default=2.0, help="seconds between trials [2]")
    add("--io-dir", help="where io / ext_io write (a real disk) [the temp dir]")
    add("--perfsleuth", help="perfsleuth executable [this venv's]")
    add("--json", dest="json_out", help="write every trial and the settings to this file")
    add("--keep", help="copy each trial's run JSON, store and logs into this directory")
    a = p.parse_args(argv)
    a.trials = a.trials or (1 if a.quick else 5)
    a.duration = a.duration or (20.0 if a.quick else 30.0)
    a.strengths = a.strengths or ("2" if a.quick else "1,2")
    if a.trials < 1 or a.duration < 6:
        p.error("--trials must be >= 1 and --duration >= 6")
    try:
        a.strengths = tuple(float(x) for x in a.strengths.split(","))
    except ValueError:
        p.error("--strengths takes numbers, e.g. 1,2")
    if not all(0 < x <= 64 for x in a.strengths):
        p.error("strengths must be in (0, 64] (the server's limit)")
    a.conditions = tuple(c.strip() for c in a.conditions.split(",") if c.strip())
    if bad := [c for c in a.conditions if c not in CONDITIONS]:
        p.error(f"unknown conditions {bad}; choose from {', '.join(CONDITIONS)}")
    return a


def main(argv: Sequence[str] | None = None) -> None:
    a = parse_args(argv)
    header("Attribution fault matrix (perfsleuth issue 6)")
    exe = tuple(find_perfsleuth(a.perfsleuth))
    io_dir = a.io_dir or tempfile.gettempdir()
    if on_tmpfs(io_dir):
        print(f"WARNING: {io_dir} is on tmpfs: fsync costs nothing there; use --io-dir")
    knobs = knob_capacity(a.max_batch, a.step_ms)
    if a.capacity:
        capacity, how = a.capacity, "given (--capacity)"
    else:
        print("measuring capacity (closed model, 2 x max-batch users, 10 s) ...", flush=True)
        capacity, how = measure_capacity(exe, a.max_batch, a.step_ms), "measured"
    s = Settings(
        duration_s=a.duration,
        trials=a.trials,
        strengths=a.strengths,
        conditions=a.conditions,
        rate=a.rate or round(capacity * BASE_LOAD, 1),
        capacity=capacity,
        capacity_note=f"{capacity:.1f} req/s {how}; {knobs:.1f} from the server's cost model",
        max_batch=a.max_batch,
        step_ms=a.step_ms,
        pause_s=a.pause,
        io_dir=a.io_dir,
        exe=exe,
        keep_dir=a.keep,
    )
    plan = cells(s)
    total = len(plan) * s.trials
    print(f"server: examples/llm_server.py --max-batch {s.max_batch} --step-ms {s.step_ms:g}")
    print(f"capacity: {s.capacity_note}")
    print(f"load: open model, {s.rate:g} req/s, {s.duration_s:g} s; fault at {s.half_s:g} s")
    overloads = ", ".join(f"s={x:g}: {s.overload_rate(x):g} req/s" for x in s.strengths)
    print(f"overload: the rate jumps at {s.half_s:g} s to capacity x (1 + s/2): {overloads}")
    print(f"io / ext_io write in: {io_dir}")
    shown = flag_args("http://127.0.0.1:PORT", s.rate, s.duration_s)
    shown[shown.index("--body") + 1] = f"'{shown[shown.index('--body') + 1]}'"
    run_cmd = " ".join([*exe, "run", *shown, "--attach SERVER_PID --json run.json"])
    print(f"perfsleuth: {run_cmd} --db sqlite:///TMP/attr.db --no-tui")
    print("  (overload: the same request from a scenario file with a throttle)")
    est = estimate_s(s) + (0 if a.capacity else CAPACITY_RUN_S)
    print(
        f"plan: {len(plan)} cells x {s.trials} trials = {total} runs; estimated {est / 60:.0f} min"
    )
    print(flush=True)

    trials: list[Trial] = []
    started = time.monotonic()
    interrupted = False
    try:
        for round_no in range(s.trials):
            # Rotating the order spreads slow drifts of a shared machine over all cells.
            shift = round_no % len(plan)
            for condition, strength in plan[shift:] + plan[:shift]:
                t = run_trial(s, condition, strength, round_no + 1)
                trials.append(t)
                print(trial_line(len(trials), total, t), flush=True)
                if t.error:
                    print("    " + t.error.replace("\n", "\n    "), flush=True)
                time.sleep(s.pause_s)  # writeback and exiting processes settle
    except KeyboardInterrupt:
        interrupted = True
    print()
    print(report(s, trials, time.monotonic() - started, interrupted), flush=True)
    if a.json_out:
        dump = {
            "settings": {**asdict(s), "half_s": s.half_s, "io_dir": io_dir},
            "command": sys.argv,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "interrupted": interrupted,
            "trials": [{**asdict(t), "effect": t.effect} for t in trials],
        }
        Path(a.json_out).write_text(json.dumps(dump, indent=1))
        print(f"trials written to {a.json_out}")


def _sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # so every `finally` (servers, runs, generators) still runs


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _sigterm)
    run_main(main)

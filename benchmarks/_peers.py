"""Shared helpers for the benchmark drivers: peers, targets, reference clients, tables.

Everything here talks to 127.0.0.1 only, and every load loop is bounded both in time
(a duration) and in count (a hard cap on requests), so nothing can run away.

- `Nginx`: a private nginx (temp prefix, 1 worker, `return 200 "ok"`) on a free port.
- `run_perfsleuth`: one `perfsleuth run ... --json FILE` in a subprocess, JSON parsed.
- `aiohttp_open_loop`: the reference open-loop client of the fidelity target.
- `aiohttp_stream_closed`: the reference streaming (SSE) client of the token target.
- `median`, `fmt`, `table`, `verdict`, `header`, `run_main`: reporting.

Ports, CPU pinning, stopping children and the example LLM server: `_support.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _support import HERE, HOST, free_port, pin_prefix, stop_process, wait_port

# Every reference loop stops after this many requests even if its clock misbehaves.
HARD_CAP_REQUESTS = 5_000_000


# -- nginx ------------------------------------------------------------------------------


def find_nginx() -> str:
    for cand in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise SystemExit("nginx not found: run benchmarks/install_peers.sh")


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    server {{
        listen {host}:{port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "ok";
        }}
    }}
}}
"""


class Nginx:
    """A private nginx on loopback: `with Nginx(cpu=0) as ng: ng.url`."""

    def __init__(self, cpu: int | None = None) -> None:
        self.cpu = cpu
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    @property
    def pids(self) -> list[int]:
        import psutil

        if self.proc is None:
            return []
        p = psutil.Process(self.proc.pid)
        return [p.pid] + [c.pid for c in p.children(recursive=True)]

    def __enter__(self) -> Nginx:
        self._dir = tempfile.TemporaryDirectory(prefix="psbench-nginx-")
        prefix = self._dir.name
        self.port = free_port()
        conf = Path(prefix) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, host=HOST, port=self.port))
        cmd = [*pin_prefix(self.cpu), find_nginx(), "-p", prefix, "-c", str(conf)]
        cmd += ["-e", f"{prefix}/error.log"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_port(self.port)
        except RuntimeError:
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            self.__exit__()
            raise RuntimeError(f"nginx did not start: {err.strip()}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGQUIT)
            self.proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


# -- perfsleuth ---------------------------------------------------------------------------


@dataclass
class PerfsleuthRun:
    doc: dict
    wall_s: float
    returncode: int
    stderr: str
    # (window index, sent, completed, ok), read from the run's store: `sent` is keyed by
    # send time, so the requests sent inside the load phase are countable exactly.
    windows: list[tuple[int, int, int, int]] = field(default_factory=list)

    def sent_within(self, seconds: float) -> int:
        return sum(sent for idx, sent, _, _ in self.windows if idx < seconds)

    def get(self, *path: str, default=None):
        node = self.doc
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node


def run_perfsleuth(
    args: Sequence[str],
    *,
    exe: list[str],
    cpu: int | None = None,
    timeout: float = 600.0,
    on_start=None,
) -> PerfsleuthRun:
    """`perfsleuth run ARGS --json F --db sqlite:///tmp` in a subprocess; the parsed JSON.

    `on_start(popen)` is called right after the child starts (the memory driver samples
    its RSS from there); it must return when the child ends.
    """
    with tempfile.TemporaryDirectory(prefix="psbench-run-") as tmp:
        out = Path(tmp) / "run.json"
        cmd = [*pin_prefix(cpu), *exe, "run", *args, "--json", str(out)]
        cmd += ["--db", f"sqlite:///{tmp}/bench.db", "--no-tui"]
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp, text=True
        )
        try:
            if on_start is not None:
                on_start(proc)
            _, err = proc.communicate(timeout=timeout)
        except BaseException:
            stop_process(proc)
            raise
        wall = time.monotonic() - t0
        doc = json.loads(out.read_text()) if out.exists() else {}
        windows: list[tuple[int, int, int, int]] = []
        try:
            with contextlib.closing(sqlite3.connect(f"{tmp}/bench.db")) as db:
                rows = db.execute("SELECT idx, sent, completed, ok FROM windows ORDER BY idx")
                windows = [tuple(r) for r in rows]
        except sqlite3.Error:
            pass
        return PerfsleuthRun(doc, wall, proc.returncode, err[-2000:], windows)


# -- load-generator peers ------------------------------------------------------------------

LOCUSTFILE = """\
from locust import FastHttpUser, constant, task


class Bench(FastHttpUser):
    wait_time = constant(0)

    @task
    def get(self):
        self.client.get("/")
"""


@dataclass
class PeerRun:
    name: str
    rps: float
    requests: int = 0
    errors: int = 0
    note: str = ""


def run_locust(url: str, users: int, duration_s: float, cpu: int | None = None) -> PeerRun:
    """One Locust process (no workers), FastHttpUser, no wait: closed model, `users` users."""
    import csv

    with tempfile.TemporaryDirectory(prefix="psbench-locust-") as tmp:
        lf = Path(tmp) / "locustfile.py"
        lf.write_text(LOCUSTFILE)
        locust = Path(sys.executable).parent / "locust"
        exe = [str(locust)] if locust.exists() else [sys.executable, "-m", "locust"]
        cmd = [*pin_prefix(cpu), *exe, "-f", str(lf), "--headless", "--host", url.rstrip("/")]
        cmd += ["-u", str(users), "-r", str(users), "-t", f"{int(duration_s)}s"]
        cmd += ["--csv", f"{tmp}/out", "--only-summary", "--stop-timeout", "5"]
        cmd += ["--loglevel", "WARNING"]
        proc = subprocess.run(
            cmd, cwd=tmp, capture_output=True, text=True, timeout=duration_s + 120
        )
        stats = Path(f"{tmp}/out_stats.csv")
        if not stats.exists():
            return PeerRun("locust", float("nan"), note=proc.stderr[-300:])
        for row in csv.DictReader(stats.open()):
            if row.get("Name") == "Aggregated":
                return PeerRun(
                    "locust",
                    float(row["Requests/s"]),
                    int(row["Request Count"]),
                    int(row["Failure Count"]),
                )
        return PeerRun("locust", float("nan"), note="no Aggregated row")


def run_wrk(
    url: str, connections: int, duration_s: float, threads: int = 1, cpu: int | None = None
) -> PeerRun:
    """wrk -t THREADS -c CONNECTIONS: a closed model with one request in flight per connection."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return PeerRun("wrk", float("nan"), note="wrk not installed")
    cmd = [*pin_prefix(cpu), wrk, "-t", str(threads), "-c", str(connections)]
    cmd += ["-d", f"{int(duration_s)}s", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    rps, reqs, errs = float("nan"), 0, 0
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("Requests/sec:"):
            rps = float(line.split()[1])
        elif "requests in" in line:
            reqs = int(line.split()[0])
        elif line.startswith(("Non-2xx", "Socket errors")):
            errs += sum(int(x) for x in line.replace(",", " ").split() if x.isdigit())
    return PeerRun("wrk", rps, reqs, errs, note="" if rps == rps else proc.stderr[-300:])


# -- reference clients (aiohttp) ----------------------------------------------------------


def _pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (values need not be sorted)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100.0 * len(s) + 0.5) - 1))
    return s[k]


@dataclass
class OpenLoopResult:
    target_rate: float
    duration_s: float
    sent: int = 0
    ok: int = 0
    errors: int = 0
    sent_in_window: int = 0  # requests actually sent within [t0, t0 + duration)
    latencies_ms: list[float] = field(default_factory=list)  # actual send -> end
    lag_ms: list[float] = field(default_factory=list)  # actual send - intended
    load_s: float = 0.0  # the schedule's length: total / rate

    @property
    def achieved_rate(self) -> float:
        """Requests actually sent inside the load window, per second of the window."""
        return self.sent_in_window / self.duration_s if self.duration_s else 0.0

    def p(self, pct: float) -> float:
        return _pct(self.latencies_ms, pct)


async def _aiohttp_open_loop(url: str, rate: float, duration_s: float) -> OpenLoopResult:
    import aiohttp

    res = OpenLoopResult(rate, duration_s)
    total = min(int(rate * duration_s), HARD_CAP_REQUESTS)
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    tasks: set[asyncio.Task[None]] = set()

    async def one(intended: float, session: aiohttp.ClientSession) -> None:
        sent = time.perf_counter()
        res.lag_ms.append((sent - intended) * 1000.0)
        if sent < window_end:
            res.sent_in_window += 1
        try:
            async with session.get(url) as resp:
                await resp.read()
                ok = resp.status < 400
        except Exception:  # noqa: BLE001 - a reference client counts, never crashes
            ok = False
        end = time.perf_counter()
        if ok:
            res.ok += 1
            res.latencies_ms.append((end - sent) * 1000.0)
        else:
            res.errors += 1

    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        loop_deadline = time.perf_counter() + duration_s + 60
        t0 = time.perf_counter() + 0.05
        window_end = t0 + duration_s
        for i in range(total):
            intended = t0 + i / rate
            delay = intended - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.perf_counter() > loop_deadline:
                break
            res.sent += 1
            task = asyncio.create_task(one(intended, session))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        res.load_s = total / rate
        if tasks:
            await asyncio.wait(tasks, timeout=35)
    return res


def aiohttp_open_loop(url: str, rate: float, duration_s: float) -> OpenLoopResult:
    """Plain open-loop reference: one session, request i fired at t0 + i/rate.

    Latency is actual send to end of body (the uncorrected latency perfsleuth reports).
    """
    return asyncio.run(_aiohttp_open_loop(url, rate, duration_s))


@dataclass
class StreamResult:
    duration_s: float = 0.0  # load window (first send -> last end)
    requests: int = 0
    ok: int = 0
    errors: int = 0
    output_tokens: int = 0
    ttft_ms: list[float] = field(default_factory=list)
    itl_ms: list[float] = field(default_factory=list)
    tpot_ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.duration_s if self.duration_s else 0.0


async def _aiohttp_stream_closed(
    url: str, body: dict, users: int, duration_s: float, max_requests: int
) -> StreamResult:
    import aiohttp

    res = StreamResult()
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    t_start = time.monotonic()
    end = t_start + duration_s
    count = 0

    async def user(session: aiohttp.ClientSession) -> None:
        nonlocal count
        while time.monotonic() < end and count < max_requests:
            count += 1
            res.requests += 1
            sent = time.monotonic()
            times: list[float] = []
            try:
                async with session.post(url, json=body) as resp:
                    if resp.status >= 400:
                        raise RuntimeError(resp.status)
                    # readline() yields each SSE line as soon as its bytes are parsed.
                    while True:
                        raw = await resp.content.readline()
                        if not raw:
                            break
                        line = raw.strip()
                        if not line.startswith(b"data:"):
                            continue
                        arrived = time.monotonic()
                        payload = line[5:].strip()
                        if payload == b"[DONE]":
                            continue
                        obj = json.loads(payload)
                        if obj["choices"][0].get("text"):
                            times.append(arrived)
            except Exception:  # noqa: BLE001 - a reference client counts, never crashes
                res.errors += 1
                continue
            done = time.monotonic()
            res.ok += 1
            res.output_tokens += len(times)
            res.e2e_ms.append((done - sent) * 1000.0)
            if times:
                ttft = (times[0] - sent) * 1000.0
                res.ttft_ms.append(ttft)
                res.itl_ms.extend((b - a) * 1000.0 for a, b in itertools.pairwise(times))
                if len(times) > 1:
                    res.tpot_ms.append(((done - sent) * 1000.0 - ttft) / (len(times) - 1))

    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        await asyncio.wait_for(
            asyncio.gather(*(user(session) for _ in range(users))), timeout=duration_s + 120
        )
    res.duration_s = time.monotonic() - t_start
    return res


def aiohttp_stream_closed(
    url: str, body: dict, users: int, duration_s: float, max_requests: int = 100_000
) -> StreamResult:
    """Plain streaming reference: `users` loops, each POSTs and reads SSE lines as they come.

    TTFT = send -> first content chunk; ITL = between content chunks; TPOT = (e2e - TTFT)
    / (tokens - 1); tokens/s = content chunks / (first send -> last end). The same
    definitions as perfsleuth's (docs/metrics.md).
    """
    return asyncio.run(_aiohttp_stream_closed(url, body, users, duration_s, max_requests))


# -- reporting --------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    vals = [v for v in values if v == v]  # drop NaN
    return statistics.median(vals) if vals else float("nan")


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table (also readable in a terminal)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (
        f"nproc={os.cpu_count()} cpu='{model}' kernel={platform.release()} "
        f"python={platform.python_version()} loadavg={load[0]:.2f}"
    )


def header(title: str, argv: Sequence[str] | None = None) -> None:
    print(f"# {title}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"machine: {machine()}")
    print(f"command: {' '.join(argv if argv is not None else sys.argv)}")
    print(flush=True)


def run_main(main) -> None:
    """Run a driver's main; report failures but always exit 0 (benchmarks do not gate)."""
    import traceback

    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    except SystemExit as exc:
        if exc.code not in (0, None):
            print(f"benchmark stopped: {exc.code}", file=sys.stderr)
    except Exception:  # noqa: BLE001 - a benchmark reports its own failure, never gates
        traceback.print_exc()
        print("benchmark failed (see above); exiting 0 by design", file=sys.stderr)
    sys.exit(0)


# -- reference clients as subprocesses (so they can be pinned like every other peer) -----


def _summary(values: list[float]) -> dict[str, float]:
    return {k: _pct(values, p) for k, p in (("p50", 50), ("p90", 90), ("p99", 99))} | {
        "max": max(values) if values else float("nan"),
        "count": float(len(values)),
    }


def _cli(argv: Sequence[str]) -> None:
    """`python _peers.py open URL RATE DURATION` / `stream URL USERS DURATION BODYJSON`."""
    kind = argv[0]
    if kind == "open":
        url, rate, dur = argv[1], float(argv[2]), float(argv[3])
        r = aiohttp_open_loop(url, rate, dur)
        doc = {
            "sent": r.sent,
            "ok": r.ok,
            "errors": r.errors,
            "load_s": r.load_s,
            "achieved_rate": r.achieved_rate,
            "latency_ms": _summary(r.latencies_ms),
            "lag_ms": _summary(r.lag_ms),
        }
    elif kind == "stream":
        url, users, dur, body = argv[1], int(argv[2]), float(argv[3]), json.loads(argv[4])
        s = aiohttp_stream_closed(url, body, users, dur)
        doc = {
            "duration_s": s.duration_s,
            "load_s": dur,
            "requests": s.requests,
            "ok": s.ok,
            "errors": s.errors,
            "output_tokens": s.output_tokens,
            "ttft_ms": _summary(s.ttft_ms),
            "itl_ms": _summary(s.itl_ms),
            "tpot_ms": _summary(s.tpot_ms),
            "e2e_ms": _summary(s.e2e_ms),
        }
    else:
        raise SystemExit(f"unknown reference client {kind!r}")
    print(json.dumps(doc))


def run_reference(args: Sequence[str], cpu: int | None, timeout: float) -> dict:
    """Run a reference client of this module in a (pinned) subprocess; its JSON summary."""
    cmd = [*pin_prefix(cpu), sys.executable, str(HERE / "_peers.py"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"reference client failed: {proc.stderr[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    _cli(sys.argv[1:])

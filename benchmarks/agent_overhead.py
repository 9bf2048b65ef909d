"""Agent overhead and delivery: what `perfsleuth agent` costs the server's host, and how
soon its samples reach a driver.

Targets (remote probes issue):
1. The agent at 4 Hz without stacks, one driver connected, watching a target with 100
   threads: < 1% of a core (its CPU time from /proc over --duration seconds, after a
   3 s warm-up). Peer in the same repeat: the same probes in a bare local sampler process
   (probe_overhead.py's), so the ratio is what serving adds.
2. With stacks (py-spy, the agent's default for a Python target): a CPU-bound Python
   server loses < 3% of its throughput (`wrk -t1 -c4`, alternating with and without the
   agent attached and a driver connected; median of per-repeat ratios).
3. Delivery: over --minutes at 4 Hz (stacks on), the delay from a sample's time (on the
   agent's clock, mapped with the offset estimated as the driver does) to its arrival at
   a reading client: p99 < 100 ms on loopback; and the memory (RSS) of the agent and of
   a `perfsleuth attach --agent` driver flat over the run.

    benchmarks/.venv/bin/python benchmarks/agent_overhead.py --duration 20 --repeats 3 --minutes 10

Everything talks to 127.0.0.1 only; every loop is bounded in time. Always exits 0:
benchmarks report, they do not gate.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil
from _peers import fmt, header, median, run_main, run_wrk, table, verdict
from _support import find_perfsleuth, free_port, pin_prefix, split_cpus, stop_process, wait_port
from probe_overhead import CPU_SERVER, TARGET, run_sampler

from tracker.recording.agent_feed import estimate_clock

TARGET_PCT_OF_CORE = 1.0
MAX_THROUGHPUT_LOSS = 0.03
MAX_P99_DELAY_MS = 100.0
TOKEN = "benchmark-token-0123456789"


def start_agent(perfsleuth: list[str], *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*perfsleuth, "agent", "--listen", "127.0.0.1:0", *args],
        env={**os.environ, "PERFSLEUTH_AGENT_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    found = re.search(r"drivers connect to (\S+)", line)
    if found is None:
        stop_process(proc, signal.SIGKILL)
        raise SystemExit(f"the agent did not start: {line}")
    return proc, found.group(1)


class Reader:
    """A driver-like client on the agent's stream, timing each sample's arrival."""

    def __init__(self, url: str, seconds: float) -> None:
        self.url, self.seconds = url, seconds
        self.delays_ms: list[float] = []
        self.samples = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()
        self.offset = 0.0

    def start(self) -> Reader:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(self.seconds + 30)

    def _keep_clock(self, client: httpx.Client, until: float) -> None:
        while time.monotonic() < until:
            estimate = estimate_clock(client, self.url, 4)
            with self._lock:
                self.offset = estimate.offset_s
            time.sleep(10)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        until = time.monotonic() + self.seconds
        with httpx.Client(headers=headers, timeout=10, trust_env=False) as client:
            self.offset = estimate_clock(client, self.url).offset_s
            threading.Thread(target=self._keep_clock, args=(client, until), daemon=True).start()
            with client.stream("GET", self.url + "/v1/samples") as stream:
                for line in stream.iter_lines():
                    arrived = time.monotonic()
                    message = json.loads(line)
                    if message["type"] == "sample":
                        with self._lock:
                            taken = message["end"] - self.offset
                        self.delays_ms.append((arrived - taken) * 1000)
                        self.samples += 1
                    if arrived > until:
                        return


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def agent_cost(perfsleuth: list[str], duration: float, repeats: int) -> None:
    target = subprocess.Popen(
        [sys.executable, "-c", TARGET], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert target.stdout is not None
        assert target.stdout.readline() == b"ready\n"
        rows, agent_pct, local_pct = [], [], []
        for k in range(repeats):
            agent, url = start_agent(perfsleuth, str(target.pid), "--no-stacks")
            try:
                reader = Reader(url, duration + 4).start()
                time.sleep(3)  # imports, the first ticks, the driver's connection
                watched = psutil.Process(agent.pid)
                before, wall = cpu_seconds(watched), time.monotonic()
                time.sleep(duration)
                pct = 100 * (cpu_seconds(watched) - before) / (time.monotonic() - wall)
                reader.join()
            finally:
                stop_process(agent)
            local = run_sampler(target.pid, duration, True)["cpu_pct"]
            agent_pct.append(pct)
            local_pct.append(local)
            rows.append([k + 1, fmt(pct, 3), fmt(local, 3), fmt(pct / local, 2), reader.samples])
            print(f"repeat {k + 1}/{repeats}: agent {pct:.3f}% of a core, local sampler "
                  f"{local:.3f}% ({reader.samples} samples delivered)", flush=True)  # fmt: skip
        rows.append(["median", fmt(median(agent_pct), 3), fmt(median(local_pct), 3),
                     fmt(median(agent_pct) / median(local_pct), 2), "-"])  # fmt: skip
        print()
        print(table(["repeat", "agent % of a core", "local sampler %", "agent / local",
                     "samples"], rows))  # fmt: skip
        got = median(agent_pct)
        print()
        print(table(["target", "measured", "verdict"], [[
            f"agent at 4 Hz, no stacks, 100 threads < {TARGET_PCT_OF_CORE:g}% of a core",
            f"{got:.3f}%", verdict(got < TARGET_PCT_OF_CORE)]]))  # fmt: skip
    finally:
        stop_process(target, signal.SIGKILL)


def throughput_loss(perfsleuth: list[str], duration: float, repeats: int) -> None:
    server_cpu, client_cpu = split_cpus(True)
    port = free_port()
    server = subprocess.Popen(
        [*pin_prefix(server_cpu), sys.executable, "-c", CPU_SERVER, str(port)],
        start_new_session=True,
    )
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}/"
        if shutil.which("wrk") is None:
            print("wrk is not installed: part 2 skipped (bash benchmarks/install_peers.sh)")
            return
        run_wrk(url, 4, 2, cpu=client_cpu)  # warm up
        ratios, rows = [], []
        for k in range(repeats):
            rps: dict[bool, float] = {}
            for watched in [False, True] if k % 2 == 0 else [True, False]:
                agent = None
                if watched:
                    agent, agent_url = start_agent(
                        [*pin_prefix(client_cpu), *perfsleuth], str(server.pid)
                    )
                    reader = Reader(agent_url, duration + 3).start()
                    time.sleep(2)  # py-spy is sampling before the load starts
                rps[watched] = run_wrk(url, 4, duration, cpu=client_cpu).rps
                if agent is not None:
                    reader.join()
                    stop_process(agent)
            ratio = rps[True] / rps[False]
            ratios.append(ratio)
            rows.append([k + 1, fmt(rps[False], 1), fmt(rps[True], 1), fmt(ratio, 4)])
            print(f"repeat {k + 1}/{repeats}: {rps[False]:.1f} req/s alone, {rps[True]:.1f} "
                  f"with the agent and its stacks ({ratio:.4f})", flush=True)  # fmt: skip
        rows.append(["median", "-", "-", fmt(median(ratios), 4)])
        print()
        print(table(["repeat", "req/s alone", "req/s with agent", "with / alone"], rows))
        loss = 1 - median(ratios)
        print()
        print(table(["target", "measured", "verdict"], [[
            f"throughput loss with the agent's stacks < {MAX_THROUGHPUT_LOSS:.0%}",
            f"{loss:+.2%}", verdict(loss < MAX_THROUGHPUT_LOSS)]]))  # fmt: skip
    finally:
        stop_process(server, signal.SIGKILL)


def delivery(perfsleuth: list[str], minutes: float) -> None:
    seconds = minutes * 60
    target = subprocess.Popen(
        [sys.executable, "-c", TARGET], stdout=subprocess.PIPE, start_new_session=True
    )
    agent = driver = None
    try:
        assert target.stdout is not None
        assert target.stdout.readline() == b"ready\n"
        agent, url = start_agent(perfsleuth, str(target.pid))
        reader = Reader(url, seconds).start()
        driver = subprocess.Popen(
            [*perfsleuth, "attach", "--agent", url, "--duration", f"{seconds:.0f}s",
             "--no-tui", "--db", "sqlite:////tmp/perfsleuth-agent-bench.db"],
            env={**os.environ, "PERFSLEUTH_AGENT_TOKEN": TOKEN},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        rss: dict[str, list[tuple[float, float]]] = {"agent": [], "driver": []}
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            for name, proc in (("agent", agent), ("driver", driver)):
                try:
                    mib = psutil.Process(proc.pid).memory_info().rss / 2**20
                except psutil.Error:
                    continue
                rss[name].append((time.monotonic() - started, mib))
            time.sleep(15)
        reader.join()
        delays = sorted(reader.delays_ms)
        p50, p99 = delays[len(delays) // 2], delays[int(len(delays) * 0.99)]
        print(f"{len(delays)} samples over {seconds:.0f} s: delay p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms, max {delays[-1]:.1f} ms")  # fmt: skip
        rows = []
        for name, points in rss.items():
            first = median([m for t, m in points if 60 <= t < 120] or [points[0][1]])
            last = median([m for t, m in points if t >= seconds - 60] or [points[-1][1]])
            rows.append([name, fmt(first, 1), fmt(last, 1), fmt(last - first, 1)])
        print()
        print(table(["process", "RSS MiB, 2nd minute", "RSS MiB, last minute", "growth"], rows))
        print()
        print(table(["target", "measured", "verdict"], [[
            f"delivery delay p99 < {MAX_P99_DELAY_MS:g} ms", f"{p99:.1f} ms",
            verdict(p99 < MAX_P99_DELAY_MS)]]))  # fmt: skip
    finally:
        for proc in (driver, agent, target):
            if proc is not None:
                stop_process(proc, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--perfsleuth", default=None, help="the perfsleuth command to measure")
    args = parser.parse_args()
    perfsleuth = find_perfsleuth(args.perfsleuth)
    header("agent overhead: its cost, the target's throughput, sample delivery", sys.argv)
    agent_cost(perfsleuth, args.duration, args.repeats)
    print()
    throughput_loss(perfsleuth, args.duration, args.repeats)
    print()
    delivery(perfsleuth, args.minutes)


if __name__ == "__main__":
    run_main(main)

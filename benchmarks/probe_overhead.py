"""Probe overhead: the /proc probes' CPU, and what stack sampling costs a Python server.

Targets (probes issue): all psutil / /proc probes at 4 Hz on a target with 100 threads
use < 1% of one core; and a CPU-bound Python HTTP server loses < 3% of its throughput
while perfsleuth samples its stacks (py-spy, the default StackProbe), same load.

First part: a target process runs 100 threads that each wake every 50 ms (so
there are context switches and run delay to count); in every repeat a sampler process
runs the default probes against it at 250 ms for --duration seconds and reports the CPU
time it used (getrusage) after its imports, and a peer sampler with no probes (the bare
sampling thread) runs in the same repeat. Also printed: the mean time of one `sample()`
call per probe.

    benchmarks/.venv/bin/python benchmarks/probe_overhead.py --duration 20 --repeats 3

Second part: a ThreadingHTTPServer whose handler burns ~2 ms of Python per request
(pinned to the first CPU) is driven by `wrk -t1 -c4` (pinned to the last CPU) for
--duration seconds with and without a StackProbe attached to it, alternating, in every
repeat; the verdict is the median of the per-repeat throughput ratios.

Always exits 0: benchmarks report, they do not gate.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time

from _peers import fmt, header, median, run_main, run_wrk, table, verdict
from _support import free_port, pin_prefix, split_cpus, stop_process, wait_port

TARGET_PCT_OF_CORE = 1.0
MAX_THROUGHPUT_LOSS = 0.03

CPU_SERVER = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def work():
    end = time.perf_counter() + 0.002
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = str(work()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # wrk resets its connections when it stops

Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

# Runs the StackProbe (and nothing else) against the server for the given seconds.
STACKS = """
import sys, time
from probes import Sampler, StackProbe, Target
pid, seconds = int(sys.argv[1]), float(sys.argv[2])
probe = StackProbe(pid)
with Sampler(Target.from_pid(pid), 0.25, probes=[probe]) as sampler:
    time.sleep(seconds)
windows = probe.take_windows()
print(len(windows), sum(w.samples for w in windows), probe.unavailable or "-", flush=True)
"""

TARGET = """
import threading, time
def napper():
    while True:
        time.sleep(0.05)
for _ in range(100):
    threading.Thread(target=napper, daemon=True).start()
print("ready", flush=True)
time.sleep(600)
"""

# Runs in its own process so that its CPU time is the probes' and nothing else's.
SAMPLER = """
import json, resource, sys, time
from probes import Sampler, Target, default_probes

pid, duration, with_probes = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
probes = [p for p in default_probes() if p.name != "gpu"] if with_probes else []
spent = {p.name: 0.0 for p in probes}
calls = {p.name: 0 for p in probes}

class Timed:
    def __init__(self, inner):
        self.inner, self.name = inner, inner.name
    @property
    def unavailable(self):
        return self.inner.unavailable
    def sample(self, now, procs):
        t = time.perf_counter()
        try:
            return self.inner.sample(now, procs)
        finally:
            spent[self.name] += time.perf_counter() - t
            calls[self.name] += 1

target = Target.from_pid(pid)
def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
before, wall = cpu_s(), time.monotonic()
with Sampler(target, 0.25, probes=[Timed(p) for p in probes]) as sampler:
    time.sleep(duration)
used, elapsed = cpu_s() - before, time.monotonic() - wall
print(json.dumps({
    "cpu_pct": 100.0 * used / elapsed,
    "ticks": sampler.samples_taken,
    "per_probe_ms": {n: 1000.0 * spent[n] / max(calls[n], 1) for n in spent},
    "unavailable": sampler.unavailable,
    "threads": sampler.latest.metrics.get("cpu.threads") if sampler.latest else None,
}))
"""


def run_sampler(pid: int, duration: float, with_probes: bool) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SAMPLER, str(pid), str(duration), "1" if with_probes else "0"],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    header("probe overhead: default probes at 4 Hz vs a 100-thread target", sys.argv)
    target = subprocess.Popen(
        [sys.executable, "-c", TARGET], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert target.stdout is not None
        assert target.stdout.readline() == b"ready\n"
        rows = []
        probes_pct: list[float] = []
        bare_pct: list[float] = []
        per_probe: dict[str, list[float]] = {}
        for k in range(args.repeats):
            order = [True, False] if k % 2 == 0 else [False, True]
            result: dict[bool, dict] = {}
            for with_probes in order:
                result[with_probes] = run_sampler(target.pid, args.duration, with_probes)
            on, off = result[True], result[False]
            probes_pct.append(on["cpu_pct"])
            bare_pct.append(off["cpu_pct"])
            for name, ms in on["per_probe_ms"].items():
                per_probe.setdefault(name, []).append(ms)
            rows.append([k + 1, fmt(on["cpu_pct"], 3), fmt(off["cpu_pct"], 3), on["ticks"]])
            print(
                f"repeat {k + 1}/{args.repeats}: probes {on['cpu_pct']:.3f}% of a core "
                f"({on['ticks']} ticks, target threads {on['threads']}), "
                f"bare sampler {off['cpu_pct']:.3f}%; unavailable: {on['unavailable'] or '-'}",
                flush=True,
            )
        rows.append(["median", fmt(median(probes_pct), 3), fmt(median(bare_pct), 3), "-"])
        print()
        print(table(["repeat", "probes % of a core", "bare sampler %", "ticks"], rows))
        print()
        print(
            table(
                ["probe", "ms per sample (median of repeats)"],
                [[name, fmt(median(v), 3)] for name, v in per_probe.items()],
            )
        )
        print()
        got = median(probes_pct)
        print(
            table(
                ["target", "measured", "verdict"],
                [
                    [
                        f"probes at 4 Hz on 100 threads < {TARGET_PCT_OF_CORE:g}% of a core",
                        f"{got:.3f}% (bare sampler {median(bare_pct):.3f}%)",
                        verdict(got < TARGET_PCT_OF_CORE),
                    ]
                ],
            )
        )
    finally:
        stop_process(target, signal.SIGKILL)
    stack_sampling_cost(args.duration, args.repeats)


def stack_sampling_cost(duration: float, repeats: int) -> None:
    server_cpu, client_cpu = split_cpus(True)
    port = free_port()
    server = subprocess.Popen(
        [*pin_prefix(server_cpu), sys.executable, "-c", CPU_SERVER, str(port)],
        start_new_session=True,
    )
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}/"
        run_wrk(url, 4, 2, cpu=client_cpu)  # warm up
        ratios: list[float] = []
        rows = []
        for k in range(repeats):
            order = [False, True] if k % 2 == 0 else [True, False]
            rps: dict[bool, float] = {}
            for sampled in order:
                spy = None
                if sampled:
                    spy = subprocess.Popen(
                        [*pin_prefix(client_cpu), sys.executable, "-c", STACKS,
                         str(server.pid), str(duration + 2)],
                        stdout=subprocess.PIPE, text=True,
                    )  # fmt: skip
                    time.sleep(1.5)  # py-spy is sampling before the load starts
                rps[sampled] = run_wrk(url, 4, duration, cpu=client_cpu).rps
                if spy is not None:
                    out, _ = spy.communicate(timeout=60)
                    print(f"  stack probe: windows, samples, unavailable = {out.strip()}")
            ratio = rps[True] / rps[False]
            ratios.append(ratio)
            rows.append([k + 1, fmt(rps[False], 1), fmt(rps[True], 1), fmt(ratio, 4)])
            print(f"repeat {k + 1}/{repeats}: {rps[False]:.1f} req/s alone, "
                  f"{rps[True]:.1f} with stack sampling ({ratio:.4f})", flush=True)  # fmt: skip
        rows.append(["median", "-", "-", fmt(median(ratios), 4)])
        print()
        print(table(["repeat", "req/s alone", "req/s sampled", "sampled / alone"], rows))
        loss = 1 - median(ratios)
        print()
        print(
            table(
                ["target", "measured", "verdict"],
                [[
                    f"throughput loss with stack sampling < {MAX_THROUGHPUT_LOSS:.0%}",
                    f"{loss:+.2%} (median ratio {median(ratios):.4f})",
                    verdict(loss < MAX_THROUGHPUT_LOSS),
                ]],
            )
        )  # fmt: skip
    finally:
        stop_process(server, signal.SIGKILL)


if __name__ == "__main__":
    run_main(main)

"""Probe overhead: CPU the /proc and psutil probes cost at 4 Hz on a target with 100 threads.

Target (probes issue): all psutil / /proc probes at 4 Hz on a target with 100 threads
use < 1% of one core. A target process runs 100 threads that each wake every 50 ms (so
there are context switches and run delay to count); in every repeat a sampler process
runs the default probes against it at 250 ms for --duration seconds and reports the CPU
time it used (getrusage) after its imports, and a peer sampler with no probes (the bare
sampling thread) runs in the same repeat. Also printed: the mean time of one `sample()`
call per probe.

    benchmarks/.venv/bin/python benchmarks/probe_overhead.py --duration 20 --repeats 3

Always exits 0: benchmarks report, they do not gate.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys

from _peers import fmt, header, median, run_main, stop_process, table, verdict

TARGET_PCT_OF_CORE = 1.0

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


if __name__ == "__main__":
    run_main(main)

"""Memory: does the perfsleuth driver's RSS stay flat over a long open-model run?

perfsleuth runs `--rate 300` (open model) against nginx for --minutes; this script samples
the child's RSS with psutil once a second. Target (load-driver issue): RSS after N minutes
within 10% of RSS after 1 minute. Also printed: the peak, the growth rate after minute 1
and over the run's second half (least squares, MiB/min: a plateau shows as ~0 there), what
the second half's rate would mean for an hour, and the peak after the load phase (when
perfsleuth summarises the run) apart from the load phase's.

    benchmarks/.venv/bin/python benchmarks/driver_memory.py --minutes 10   # the issue's check
    benchmarks/.venv/bin/python benchmarks/driver_memory.py --minutes 3    # quicker

Always exits 0: benchmarks report, they do not gate.
"""

from __future__ import annotations

import argparse
import subprocess
import time

import psutil
from _peers import Nginx, fmt, header, median, run_main, run_perfsleuth, table, verdict
from _support import add_driver_args, find_perfsleuth, split_cpus

TOLERANCE = 0.10
MIB = 1024 * 1024


def sampler(samples: list[tuple[float, float, float]], interval: float, load_s: float):
    """on_start callback: sample (t, rss of the process, rss incl. children) until it exits.

    Every `interval` during the load, every 0.1 s after it (the summary is short-lived).
    """

    def on_start(proc: subprocess.Popen) -> None:
        t0 = time.monotonic()
        try:
            p = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while proc.poll() is None:
            try:
                rss = p.memory_info().rss
                kids = sum(c.memory_info().rss for c in p.children(recursive=True))
            except psutil.Error:
                break
            samples.append((time.monotonic() - t0, rss / MIB, (rss + kids) / MIB))
            time.sleep(interval if samples[-1][0] < load_s else min(interval, 0.1))

    return on_start


def at(samples: list[tuple[float, float, float]], t: float, col: int = 1) -> float:
    """Median RSS of the samples within +-2 s of t (robust to one odd sample)."""
    near = [s[col] for s in samples if abs(s[0] - t) <= 2.0]
    if not near:
        near = [min(samples, key=lambda s: abs(s[0] - t))[col]]
    return median(near)


def slope(samples: list[tuple[float, float, float]], start: float) -> float:
    """Least-squares RSS growth in MiB/min over samples after `start` seconds."""
    pts = [(t / 60.0, r) for t, r, _ in samples if t >= start]
    if len(pts) < 2:
        return float("nan")
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="run length, minutes [10]")
    ap.add_argument("--rate", type=float, default=300.0, help="open-model rate [300]")
    ap.add_argument("--repeats", type=int, default=1, help="repeats [1]")
    ap.add_argument("--interval", type=float, default=1.0, help="RSS sampling interval, s [1]")
    add_driver_args(ap)
    a = ap.parse_args()
    if a.minutes <= 1.0:
        raise SystemExit("--minutes must be more than 1 (RSS after 1 minute is the baseline)")
    header("memory: perfsleuth driver RSS over a long open-model run")
    exe = find_perfsleuth(a.perfsleuth)
    server_cpu, client_cpu = split_cpus(not a.no_pin)
    duration_s = a.minutes * 60.0
    print(f"perfsleuth: {' '.join(exe)}; rate={a.rate:g}/s minutes={a.minutes:g}")
    print(f"pinning: nginx cpu={server_cpu} perfsleuth cpu={client_cpu}\n", flush=True)

    results = []
    with Nginx(cpu=server_cpu) as ng:
        for rep in range(a.repeats):
            samples: list[tuple[float, float, float]] = []
            args = ["--url", ng.url, "--rate", f"{a.rate:g}", "--duration", f"{duration_s:g}s"]
            r = run_perfsleuth(
                args,
                exe=exe,
                cpu=client_cpu,
                timeout=duration_s + 300,
                on_start=sampler(samples, a.interval, duration_s),
            )
            if not samples:
                raise RuntimeError(f"no RSS samples (exit {r.returncode}): {r.stderr}")
            # The load phase only: after it, perfsleuth summarises the run (reported apart).
            load = [s for s in samples if s[0] <= duration_s]
            after = [s[1] for s in samples if s[0] > duration_s]
            rss1 = at(load, 60.0)
            rssn = at(load, duration_s)
            growth = rssn / rss1 - 1.0
            res = {
                "rss_start": samples[min(2, len(samples) - 1)][1],
                "rss_1m": rss1,
                "rss_n": rssn,
                "rss_n_tree": at(load, duration_s, 2),
                "peak": max(s[1] for s in load),
                "peak_after": max(after) if after else float("nan"),
                "growth": growth,
                "slope": slope(load, 60.0),
                "slope_late": slope(load, 60.0 + (duration_s - 60.0) / 2),
                "requests": r.get("requests", "total", default=0),
                "errors": r.get("requests", "errors", default=0),
                "throughput": r.get("throughput_rps"),
                "lag_p99": (r.get("driver", "schedule_lag_ms") or {}).get("p99"),
            }
            results.append(res)
            print(
                f"repeat {rep + 1}/{a.repeats}: RSS 1 min {fmt(rss1)} MiB, "
                f"{a.minutes:g} min {fmt(rssn)} MiB ({growth:+.1%}), peak {fmt(res['peak'])} MiB"
                f" (after the load: {fmt(res['peak_after'])} MiB),"
                f" slope {fmt(res['slope'], 3)} MiB/min; requests={res['requests']} "
                f"errors={res['errors']}",
                flush=True,
            )
            # RSS over time, ~20 points over the run plus every sample after the load
            step = max(1, len(load) // 20)
            trace = load[::step] + [s for s in samples if s[0] > duration_s]
            print("  t(s)/RSS(MiB): " + "  ".join(f"{t:.0f}:{rss:.1f}" for t, rss, _ in trace))

    def med(key: str) -> float:
        return median([float(r[key]) for r in results if r[key] is not None])

    print()
    print(
        table(
            ["metric", f"median of {len(results)}"],
            [
                ["RSS at ~2 s, MiB", fmt(med("rss_start"))],
                ["RSS after 1 min, MiB", fmt(med("rss_1m"))],
                [f"RSS after {a.minutes:g} min, MiB", fmt(med("rss_n"))],
                [f"RSS after {a.minutes:g} min incl. children, MiB", fmt(med("rss_n_tree"))],
                ["peak RSS during the load, MiB", fmt(med("peak"))],
                ["peak RSS after the load (summary, store), MiB", fmt(med("peak_after"))],
                ["growth after minute 1, MiB/min", fmt(med("slope"), 3)],
                ["growth over the second half, MiB/min", fmt(med("slope_late"), 3)],
                [
                    "  -> RSS at 1 h at the second half's rate, MiB",
                    fmt(med("rss_n") + (60 - a.minutes) * med("slope_late")),
                ],
                ["requests", fmt(med("requests"))],
                ["throughput req/s", fmt(med("throughput"))],
                ["schedule lag p99, ms", fmt(med("lag_p99"), 3)],
            ],
        )
    )
    growth = med("growth")
    print()
    print(
        table(
            ["target", "measured", "verdict"],
            [
                [
                    f"RSS after {a.minutes:g} min within {TOLERANCE:.0%} of RSS after 1 min",
                    f"{growth:+.2%}",
                    verdict(abs(growth) <= TOLERANCE),
                ]
            ],
        )
    )


if __name__ == "__main__":
    run_main(main)

"""Fidelity: open model at a fixed rate against nginx; does perfsleuth keep its schedule?

Targets (load-driver issue), at 1,000 req/s for 20 s:
- achieved send rate within 1% of the target (requests sent inside the load window,
  counted per send-time window in the run's store, divided by the duration);
- schedule lag p99 <= 2 ms (`driver.schedule_lag_ms.p99` of the run JSON);
- uncorrected latency p50 within 1.25x of a plain aiohttp open-loop client's at the
  same rate (`_peers.aiohttp_open_loop`: one session, request i fired at t0 + i/rate,
  latency from actual send to end of body), measured in the same repeat.
`hey -q` (a Go client throttled per worker) is reported alongside when installed.

    benchmarks/.venv/bin/python benchmarks/driver_fidelity.py --rate 1000 --duration 20

Always exits 0: benchmarks report, they do not gate.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess

from _peers import (
    Nginx,
    fmt,
    header,
    median,
    run_main,
    run_perfsleuth,
    run_reference,
    table,
    verdict,
)
from _support import add_driver_args, find_perfsleuth, pin_prefix, split_cpus

RATE_TOLERANCE = 0.01
LAG_P99_MS = 2.0
P50_RATIO = 1.25


def run_ps(url: str, rate: float, duration: float, exe: list[str], cpu: int | None) -> dict:
    args = ["--url", url, "--rate", f"{rate:g}", "--duration", f"{duration:g}s"]
    r = run_perfsleuth(args, exe=exe, cpu=cpu, timeout=duration + 180)
    if not r.doc:
        raise RuntimeError(f"perfsleuth produced no JSON (exit {r.returncode}): {r.stderr}")
    lag = r.get("driver", "schedule_lag_ms") or {}
    lat = r.get("latency_uncorrected_ms") or {}
    sent = r.sent_within(duration)
    return {
        "achieved": sent / duration,
        "sent_in_window": sent,
        "throughput": r.get("throughput_rps"),
        "errors": r.get("requests", "errors", default=0),
        "note": " ".join(
            f"{k}={v}" for k, v in (r.get("requests", "errors_by_class") or {}).items() if v
        ),
        "lag_p50": lag.get("p50", math.nan),
        "lag_p99": lag.get("p99", math.nan),
        "lag_max": lag.get("max", math.nan),
        "p50": lat.get("p50", math.nan),
        "p99": lat.get("p99", math.nan),
        "corrected_p99": (r.get("latency_ms") or {}).get("p99", math.nan),
    }


def run_ref(url: str, rate: float, duration: float, cpu: int | None) -> dict:
    d = run_reference(["open", url, f"{rate:g}", f"{duration:g}"], cpu, duration + 120)
    return {
        "achieved": d["achieved_rate"],
        "errors": d["errors"],
        "lag_p50": d["lag_ms"]["p50"],
        "lag_p99": d["lag_ms"]["p99"],
        "lag_max": d["lag_ms"]["max"],
        "p50": d["latency_ms"]["p50"],
        "p99": d["latency_ms"]["p99"],
    }


_HEY_PCT = re.compile(r"^\s*(\d+)%\s+in\s+([\d.]+)\s+secs", re.M)


def run_hey(url: str, rate: float, duration: float, workers: int, cpu: int | None) -> dict:
    hey = shutil.which("hey")
    if hey is None:
        return {"note": "hey not installed (apt package `hey`)"}
    per_worker = rate / workers
    cmd = [*pin_prefix(cpu), hey, "-z", f"{duration:g}s", "-c", str(workers)]
    cmd += ["-q", f"{per_worker:g}", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    pcts = {int(p): float(s) * 1000.0 for p, s in _HEY_PCT.findall(out)}
    return {
        "achieved": float(m.group(1)) if m else math.nan,
        "p50": pcts.get(50, math.nan),
        "p99": pcts.get(99, math.nan),
        "note": f"-c {workers} -q {per_worker:g}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=1000.0, help="requests/s [1000]")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per run [20]")
    ap.add_argument("--repeats", type=int, default=3, help="repeats (medians) [3]")
    ap.add_argument("--hey-workers", type=int, default=10, help="hey -c (rate split) [10]")
    add_driver_args(ap)
    ap.add_argument("--no-hey", action="store_true")
    a = ap.parse_args()
    header("fidelity: open model vs nginx")
    exe = find_perfsleuth(a.perfsleuth)
    server_cpu, client_cpu = split_cpus(not a.no_pin)
    print(f"perfsleuth: {' '.join(exe)}; rate={a.rate:g}/s duration={a.duration:g}s")
    print(f"pinning: nginx cpu={server_cpu} clients cpu={client_cpu}\n", flush=True)

    reps: list[dict[str, dict]] = []
    with Nginx(cpu=server_cpu) as ng:
        for rep in range(a.repeats):
            runs: dict[str, dict] = {}
            order = ["perfsleuth", "aiohttp", "hey"]
            order = order[rep % 3 :] + order[: rep % 3]
            for name in order:
                if name == "perfsleuth":
                    runs[name] = run_ps(ng.url, a.rate, a.duration, exe, client_cpu)
                elif name == "aiohttp":
                    runs[name] = run_ref(ng.url, a.rate, a.duration, client_cpu)
                elif not a.no_hey:
                    runs[name] = run_hey(ng.url, a.rate, a.duration, a.hey_workers, client_cpu)
                else:
                    continue
                r = runs[name]
                print(
                    f"repeat {rep + 1}/{a.repeats} {name:10s} achieved={fmt(r.get('achieved'))}/s"
                    f" lag p99={fmt(r.get('lag_p99'), 3)}ms p50={fmt(r.get('p50'), 3)}ms"
                    f" p99={fmt(r.get('p99'), 3)}ms {r.get('note', '')}",
                    flush=True,
                )
            reps.append(runs)

    def med(client: str, key: str) -> float:
        return median([r[client].get(key, math.nan) for r in reps if client in r])

    ratios = [r["perfsleuth"]["p50"] / r["aiohttp"]["p50"] for r in reps]
    p50_ratio = median(ratios)
    rows = []
    for client in ("perfsleuth", "aiohttp", "hey"):
        if not any(client in r for r in reps):
            continue
        rows.append(
            [
                client,
                fmt(med(client, "achieved")),
                f"{(med(client, 'achieved') / a.rate - 1) * 100:+.2f}%",
                fmt(med(client, "lag_p50"), 3),
                fmt(med(client, "lag_p99"), 3),
                fmt(med(client, "lag_max"), 3),
                fmt(med(client, "p50"), 3),
                fmt(med(client, "p99"), 3),
                med(client, "errors") if client != "hey" else "-",
            ]
        )
    print()
    print(f"medians over {a.repeats} repeat(s); latencies uncorrected (actual send -> end), ms")
    print(
        table(
            [
                "client",
                "achieved req/s",
                "vs target",
                "lag p50",
                "lag p99",
                "lag max",
                "p50",
                "p99",
                "errors",
            ],
            rows,
        )
    )
    if "hey" in reps[0] and reps[0]["hey"].get("note", "").startswith("hey not"):
        print(reps[0]["hey"]["note"])
    achieved = med("perfsleuth", "achieved")
    lag99 = med("perfsleuth", "lag_p99")
    rate_ok = abs(achieved / a.rate - 1) <= RATE_TOLERANCE
    print()
    print(
        table(
            ["target", "measured", "verdict"],
            [
                [
                    f"achieved rate within {RATE_TOLERANCE:.0%} of {a.rate:g}/s",
                    f"{fmt(achieved)}/s ({(achieved / a.rate - 1) * 100:+.2f}%)",
                    verdict(rate_ok),
                ],
                [
                    f"schedule lag p99 <= {LAG_P99_MS:g} ms",
                    f"{fmt(lag99, 3)} ms",
                    verdict(lag99 <= LAG_P99_MS),
                ],
                [
                    f"uncorrected p50 <= {P50_RATIO}x aiohttp reference",
                    f"{fmt(p50_ratio)}x ({fmt(med('perfsleuth', 'p50'), 3)} vs "
                    f"{fmt(med('aiohttp', 'p50'), 3)} ms; median of per-repeat ratios)",
                    verdict(p50_ratio <= P50_RATIO),
                ],
            ],
        )
    )


if __name__ == "__main__":
    run_main(main)

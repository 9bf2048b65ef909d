"""Throughput: closed model, N users, trivial nginx endpoint; perfsleuth vs Locust vs wrk.

Target (load-driver issue): perfsleuth req/s >= 1.2x one Locust process with
FastHttpUser, both measured in this run; the ratio to wrk is reported for scale.

Each repeat runs every client once against the same nginx (1 worker, `return 200 "ok"`),
in a rotating order; ratios are taken within a repeat, and the verdict uses the median
ratio over repeats. By default nginx is pinned to the first CPU and every client to the
last, so each load generator gets one core and never competes with the server.

    benchmarks/.venv/bin/python benchmarks/driver_throughput.py --repeats 3 --duration 10

Always exits 0: benchmarks report, they do not gate.
"""

from __future__ import annotations

import argparse

from _peers import (
    Nginx,
    PeerRun,
    fmt,
    header,
    median,
    run_locust,
    run_main,
    run_perfsleuth,
    run_wrk,
    table,
    verdict,
)
from _support import add_driver_args, find_perfsleuth, split_cpus

TARGET_VS_LOCUST = 1.2


def run_ps(url: str, users: int, duration: float, exe: list[str], cpu: int | None) -> PeerRun:
    args = ["--url", url, "--users", str(users), "--duration", f"{duration:g}s"]
    r = run_perfsleuth(args, exe=exe, cpu=cpu, timeout=duration + 180)
    rps = r.get("throughput_rps")
    if rps is None:
        return PeerRun("perfsleuth", float("nan"), note=f"exit {r.returncode}: {r.stderr[-300:]}")
    return PeerRun(
        "perfsleuth",
        float(rps),
        int(r.get("requests", "total", default=0)),
        int(r.get("requests", "errors", default=0)),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per client run [10]")
    ap.add_argument("--repeats", type=int, default=3, help="repeats (medians) [3]")
    ap.add_argument("--users", type=int, default=32, help="concurrent users/connections [32]")
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk -t [1]")
    add_driver_args(ap)
    ap.add_argument("--skip", action="append", default=[], choices=["locust", "wrk"])
    a = ap.parse_args()
    header("throughput: closed model vs nginx")
    exe = find_perfsleuth(a.perfsleuth)
    server_cpu, client_cpu = split_cpus(not a.no_pin)
    print(f"perfsleuth: {' '.join(exe)}; users={a.users} duration={a.duration:g}s")
    print(f"pinning: nginx cpu={server_cpu} clients cpu={client_cpu}\n", flush=True)

    clients = {
        "perfsleuth": lambda url: run_ps(url, a.users, a.duration, exe, client_cpu),
        "locust": lambda url: run_locust(url, a.users, a.duration, cpu=client_cpu),
        "wrk": lambda url: run_wrk(url, a.users, a.duration, a.wrk_threads, cpu=client_cpu),
    }
    for name in a.skip:
        clients.pop(name)
    names = list(clients)
    per_repeat: list[dict[str, PeerRun]] = []
    with Nginx(cpu=server_cpu) as ng:
        for rep in range(a.repeats):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            runs: dict[str, PeerRun] = {}
            for name in order:
                runs[name] = clients[name](ng.url)
                res = runs[name]
                note = f"  ({res.note.strip()[:200]})" if res.note else ""
                print(
                    f"repeat {rep + 1}/{a.repeats} {name:10s} {fmt(res.rps, 1):>10} req/s "
                    f"requests={res.requests} errors={res.errors}{note}",
                    flush=True,
                )
            per_repeat.append(runs)

    def ratio(runs: dict[str, PeerRun], peer: str) -> float:
        if peer not in runs:
            return float("nan")
        return runs["perfsleuth"].rps / runs[peer].rps if runs[peer].rps else float("nan")

    rows = []
    for i, runs in enumerate(per_repeat, 1):
        rows.append(
            [
                i,
                *(fmt(runs[n].rps, 1) for n in names),
                fmt(ratio(runs, "locust"), 3),
                fmt(ratio(runs, "wrk"), 4),
            ]
        )
    med = {n: median([r[n].rps for r in per_repeat]) for n in names}
    r_locust = median([ratio(r, "locust") for r in per_repeat])
    r_wrk = median([ratio(r, "wrk") for r in per_repeat])
    rows.append(["median", *(fmt(med[n], 1) for n in names), fmt(r_locust, 3), fmt(r_wrk, 4)])
    print()
    print(
        table(
            ["repeat", *(f"{n} req/s" for n in names), "perfsleuth/locust", "perfsleuth/wrk"],
            rows,
        )
    )
    ok = None if r_locust != r_locust else r_locust >= TARGET_VS_LOCUST
    print()
    print(
        table(
            ["target", "measured (median of per-repeat ratios)", "verdict"],
            [
                [
                    f"perfsleuth >= {TARGET_VS_LOCUST}x Locust FastHttpUser (1 process)",
                    f"{fmt(r_locust, 3)}x",
                    verdict(ok),
                ],
                ["perfsleuth / wrk (reported, no target)", f"{fmt(r_wrk, 4)}x", "n/a"],
            ],
        )
    )
    return 0


if __name__ == "__main__":
    run_main(main)

"""How long `perfsleuth compare latest --baseline last:20` takes in a history of 1,000 runs.

Target (issue 5): <= 0.5 s. The history is a SQLite file with 1,000 completed runs of one
scenario, each with 30 one-second windows (real encoded HDR histograms) and a summary
holding its comparison estimates, as the runner stores them; the candidate is the newest.
Timed, in-process after one warm call, median of the repeats:

- compare: resolve `last:20`, read 21 runs, compare, scan the scenario's history for
  change points (as `compare` does), render the text report;
- peer: the bare SQL a comparison cannot avoid — one indexed query for the 21 newest runs
  of the scenario, their summary JSON decoded — measured in the same process, as a floor.

Also the whole CLI as a subprocess (Python start-up and imports included), for scale.

    benchmarks/.venv/bin/python benchmarks/store_compare.py [--runs 1000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tracker.analysis.compare import Options
from tracker.cli.compare import render
from tracker.documents.run_document import run_document
from tracker.documents.stored_run import load_run
from tracker.documents.stored_summary import estimates_for_summary
from tracker.records.window import LATENCY, Window
from tracker.regressions.baseline import compare_stored, parse_spec
from tracker.store import Store

SCENARIO_KEY = "bench0123456789ab"


def build_history(path: Path, runs: int, windows_per_run: int = 30) -> None:
    store = Store.open(f"sqlite:///{path}")
    rng = random.Random(7)
    for i in range(runs):
        # A gentle night-to-night wobble, and a 15% step 100 runs before the end.
        level = (1.0 + rng.gauss(0, 0.02)) * (1.15 if i >= runs - 100 else 1.0)
        run_id = store.create_run(
            scenario="bench",
            scenario_key=SCENARIO_KEY,
            scenario_json={"load": {"model": "open", "rate": 20.0}},
            environment={"cpu_model": "bench", "cpu_count": 2},
            target_url="http://127.0.0.1:9/",
            load_model="open",
        )
        windows = []
        for w in range(windows_per_run):
            window = Window(index=w, start_s=float(w))
            for _ in range(20):
                window.hist(LATENCY).record_ms(rng.lognormvariate(4.0, 0.3) * level)
                window.ok += 1
                window.completed += 1
                window.sent += 1
            windows.append(window)
        store.add_windows(run_id, windows)
        record = store.get_run(run_id)
        doc = run_document(record, windows, [], [])
        summary = {
            "latency_ms": doc["latency_ms"],
            "throughput_rps": doc["throughput_rps"],
            "requests": doc["requests"],
            "driver": doc["driver"],
            "metrics": estimates_for_summary(store, run_id, doc),
        }
        store.finish_run(run_id, status="completed", duration_s=30.0, summary=summary)
    store.close()


def time_compare(url: str) -> float:
    store = Store.open(url, upgrade=False)
    t0 = time.perf_counter()
    candidate = load_run(store, "latest")
    comparison = compare_stored(store, candidate, parse_spec("last:20"), Options())
    render(comparison, "text")
    elapsed = time.perf_counter() - t0
    store.close()
    return elapsed


def time_peer(path: Path) -> float:
    conn = sqlite3.connect(path)
    t0 = time.perf_counter()
    rows = conn.execute(
        "SELECT id, summary FROM runs WHERE scenario_key = ? AND status = 'completed' "
        "ORDER BY id DESC LIMIT 21",
        (SCENARIO_KEY,),
    ).fetchall()
    [json.loads(summary) for _, summary in rows]
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.db"
        t0 = time.perf_counter()
        build_history(path, args.runs)
        print(f"built {args.runs} runs in {time.perf_counter() - t0:.1f} s "
              f"({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)  # fmt: skip
        url = f"sqlite:///{path}"
        time_compare(url)  # warm: imports, the first connection
        compare_s = [time_compare(url) for _ in range(args.repeats)]
        peer_s = [time_peer(path) for _ in range(args.repeats)]
        cli_s = []
        for _ in range(3):
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "tracker", "compare", "--baseline", "last:20",
                 "--db", url], capture_output=True, text=True, check=False,
            )  # fmt: skip
            cli_s.append(time.perf_counter() - t0)
        verdict = done.stdout.splitlines()[0] if done.stdout else done.stderr
    med, peer = statistics.median(compare_s), statistics.median(peer_s)
    print(f"last line of the CLI's verdict: {verdict}")
    print()
    print("| what | median | note |")
    print("|---|---:|---|")
    print(f"| compare `latest` vs `last:20`, {args.runs} runs in the store | {med * 1000:.0f} ms "
          f"| target <= 500 ms: {'PASS' if med <= 0.5 else 'FAIL'} |")  # fmt: skip
    print(f"| peer: the 21 summaries by one indexed query | {peer * 1000:.1f} ms "
          f"| compare / peer = {med / peer:.0f}x |")  # fmt: skip
    print(f"| the CLI as a subprocess (start-up + imports) | "
          f"{statistics.median(cli_s) * 1000:.0f} ms | |")  # fmt: skip


if __name__ == "__main__":
    main()

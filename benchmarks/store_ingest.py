"""Store ingest: a 1,000,000-request run's windows plus 10,000 probe samples into SQLite.

Target (store issue 5): "Ingest 1,000,000 request-level records (or their window
histograms) plus 10,000 probe samples in <= 5 s into SQLite". perfsleuth stores a run as
one-second windows of HDR histograms, so this simulates a 1,000 req/s open-model run of
1,000 s (1,000,000 requests, 0.1% of them HTTP 500) and times, separately:

(a) recording: each request put into its window exactly as `tracker.driver.engine` does
    (`sent`, schedule lag at dispatch, then `completed`, `ok` / `add_error`, corrected
    and uncorrected latency), plus the 20 loop-lag timer samples a window gets. This is
    driver-side CPU, spread over the run's 1,000 s; it is not part of the ingest.
(b) ingest through the real `Store` (Alembic-migrated SQLite file, perfsleuth's pragmas),
    with the calls `StoreWriter` makes for each flush, two ways:
    - per second: one window and its 10 samples per flush, as a run at real time writes;
    - batched: 100 windows and 1,000 samples per flush, as the writer does when behind.
    The target is judged on the per-second ingest.

Peer, measured in the same repeat: raw `sqlite3.executemany` of the same 1,000,000
requests as plain rows (id, t, latency_us, status) into a table with an index on t, one
transaction, same pragmas (WAL, synchronous=NORMAL). The ratio printed is perfsleuth's
per-second ingest (windows + samples) over the peer's (requests only).

    benchmarks/.venv/bin/python benchmarks/store_ingest.py                # the issue's check
    benchmarks/.venv/bin/python benchmarks/store_ingest.py --profile      # where time goes
    benchmarks/.venv/bin/python benchmarks/store_ingest.py --requests 100000 --repeats 1

Medians of --repeats (default 3). Always exits 0: benchmarks report, they do not gate.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import random
import sqlite3
import tempfile
import time
from array import array
from dataclasses import dataclass
from pathlib import Path

from _peers import fmt, header, median, run_main, table, verdict

from tracker.records import SampleRecord
from tracker.records.window import LATENCY, LATENCY_UNCORRECTED, LOOP_LAG, SCHEDULE_LAG, Window
from tracker.store import Store

TARGET_S = 5.0
ERROR_RATE = 0.001
LOOP_TIMERS_PER_WINDOW = 20  # the engine's 50 ms loop-lag timer
BATCH_WINDOWS = 100

# What a probe sample holds on a 2-core host with a launched target of a few processes
# (names as the probes emit them): 44 metrics.
SAMPLE_METRICS = (
    "cpu.host_pct", "cpu.core0_pct", "cpu.core1_pct", "cpu.run_queue", "cpu.procs_blocked",
    "cpu.host_ctx_switches_per_s", "cpu.psi_some_pct", "cpu.process_pct", "cpu.threads",
    "cpu.ctx_switches_per_s", "cpu.nonvol_ctx_switches_per_s", "cpu.run_delay_ms_per_s",
    *(f"cpu.pid{p}_pct" for p in (4101, 4102, 4103, 4104)),
    "mem.rss_mb", "mem.uss_mb", "mem.pss_mb", "mem.swap_mb", "mem.minor_faults_per_s",
    "mem.major_faults_per_s", "mem.host_used_pct", "mem.host_swap_used_mb",
    "mem.psi_some_pct", "mem.psi_full_pct", *(f"mem.pid{p}_rss_mb" for p in (4101, 4102)),
    "disk.psi_some_pct", "disk.psi_full_pct", "disk.read_iops", "disk.write_iops",
    "disk.read_mb_per_s", "disk.write_mb_per_s", "disk.util_pct", "disk.vda_read_iops",
    "disk.vda_write_iops", "disk.vda_util_pct", "disk.process_read_mb_per_s",
    "disk.process_write_mb_per_s", "driver.cpu_pct", "driver.rss_mb", "gc.pause_ms",
    "py.gil_held_pct",
)  # fmt: skip


@dataclass
class Requests:
    """The simulated requests, columnar (compact: 1,000,000 of them)."""

    intended: array  # s since the load start
    lag_ms: array  # actual send - intended
    latency_ms: array  # end - intended (corrected)
    failed: bytearray  # 1 = HTTP 500

    def __len__(self) -> int:
        return len(self.intended)


def simulate(n: int, rate: float, seed: int = 1) -> Requests:
    """Uniform arrivals; ~2 ms latencies with a long tail; sub-ms schedule lag."""
    rng = random.Random(seed)
    intended, lag, latency = array("d"), array("d"), array("d")
    failed = bytearray(n)
    for i in range(n):
        intended.append(i / rate)
        lag_ms = rng.expovariate(1 / 0.08)
        service_ms = rng.lognormvariate(math.log(1.8), 0.35)
        if rng.random() < 0.002:
            service_ms *= rng.uniform(20, 200)  # the odd slow request: a real tail
        lag.append(lag_ms)
        latency.append(lag_ms + service_ms)
        failed[i] = rng.random() < ERROR_RATE
    return Requests(intended, lag, latency, failed)


def record_windows(req: Requests, first: int, last: int, rate: float) -> list[Window]:
    """Windows first..last-1, filled request by request the way the driver fills them."""
    per = int(rate)
    loop_rng = random.Random(first)
    windows = []
    for index in range(first, last):
        w = Window(index=index, start_s=float(index))
        for i in range(index * per, min((index + 1) * per, len(req))):
            # dispatch: Driver.record_lag, then Driver.dispatch
            w.hist(SCHEDULE_LAG).record_ms(req.lag_ms[i])
            w.sent += 1
            # completion: Driver.record
            w.completed += 1
            if req.failed[i]:
                w.add_error("http_5xx")
                continue
            w.ok += 1
            latency_ms = req.latency_ms[i]
            w.hist(LATENCY).record_ms(latency_ms)
            w.hist(LATENCY_UNCORRECTED).record_ms(latency_ms - req.lag_ms[i])
        for _ in range(LOOP_TIMERS_PER_WINDOW):
            w.hist(LOOP_LAG).record_ms(loop_rng.expovariate(1 / 0.05))
        windows.append(w)
    return windows


def make_samples(n: int, duration_s: float, seed: int = 2) -> list[SampleRecord]:
    rng = random.Random(seed)
    return [
        SampleRecord(
            t_s=duration_s * k / n,
            metrics={name: round(rng.uniform(0, 100), 3) for name in SAMPLE_METRICS},
        )
        for k in range(n)
    ]


def new_store(path: Path) -> tuple[Store, int]:
    store = Store.open(f"sqlite:///{path}")
    run_id = store.create_run(
        scenario="store-ingest", scenario_key="bench", scenario_json={}, environment={}
    )
    return store, run_id


@dataclass
class Repeat:
    record_s: float
    ingest_s: float  # per second
    batched_s: float
    peer_s: float
    db_mb: float
    peer_mb: float
    windows: int


def one_repeat(req: Requests, samples: list[SampleRecord], rate: float, work: Path) -> Repeat:
    n_windows = math.ceil(len(req) / rate)
    per_window = len(samples) / n_windows
    store, run_id = new_store(work / "perfsleuth.db")
    bulk, bulk_id = new_store(work / "batched.db")
    record_s = ingest_s = batched_s = 0.0
    for first in range(0, n_windows, BATCH_WINDOWS):
        last = min(first + BATCH_WINDOWS, n_windows)
        t = time.perf_counter()
        windows = record_windows(req, first, last, rate)
        record_s += time.perf_counter() - t
        chunk = samples[round(first * per_window) : round(last * per_window)]
        t = time.perf_counter()
        for w in windows:
            lo, hi = round(w.index * per_window), round((w.index + 1) * per_window)
            store.add_windows(run_id, [w])
            store.add_samples(run_id, samples[lo:hi])
        ingest_s += time.perf_counter() - t
        t = time.perf_counter()
        bulk.add_windows(bulk_id, windows)
        bulk.add_samples(bulk_id, chunk)
        batched_s += time.perf_counter() - t
        del windows  # ~0.75 MB of histograms per window: never hold the whole run
    store.close()
    bulk.close()
    peer_s = peer_executemany(req, work / "peer.db")
    return Repeat(
        record_s,
        ingest_s,
        batched_s,
        peer_s,
        _size_mb(work / "perfsleuth.db"),
        _size_mb(work / "peer.db"),
        n_windows,
    )


def peer_executemany(req: Requests, path: Path) -> float:
    """The same requests as plain rows, one executemany, one transaction (rows built first)."""
    rows = [
        (
            i,
            req.intended[i] + req.latency_ms[i] / 1000.0,
            round(req.latency_ms[i] * 1000.0),
            500 if req.failed[i] else 200,
        )
        for i in range(len(req))
    ]
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(
            "CREATE TABLE requests (id INTEGER PRIMARY KEY, t REAL NOT NULL, "
            "latency_us INTEGER NOT NULL, status INTEGER NOT NULL)"
        )
        con.execute("CREATE INDEX requests_t ON requests (t)")
        t = time.perf_counter()
        con.execute("BEGIN")
        con.executemany("INSERT INTO requests VALUES (?, ?, ?, ?)", rows)
        con.execute("COMMIT")
        return time.perf_counter() - t
    finally:
        con.close()


def _size_mb(path: Path) -> float:
    """The database's bytes on disk, WAL included (a run's data may still sit there)."""
    files = [path, path.with_name(path.name + "-wal")]
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6


def profile_ingest(req: Requests, samples: list[SampleRecord], rate: float, work: Path) -> str:
    """cProfile of recording 100 windows and ingesting them per second: where time goes."""
    windows = record_windows(req, 0, min(BATCH_WINDOWS, math.ceil(len(req) / rate)), rate)
    store, run_id = new_store(work / "profile.db")
    per_window = len(samples) / math.ceil(len(req) / rate)
    prof = cProfile.Profile()
    prof.enable()
    for w in windows:
        lo, hi = round(w.index * per_window), round((w.index + 1) * per_window)
        store.add_windows(run_id, [w])
        store.add_samples(run_id, samples[lo:hi])
    prof.disable()
    store.close()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(18)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per window (1 s)")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also profile 100 windows")
    args = parser.parse_args()
    header("store ingest: 1 s windows of HDR histograms + probe samples into SQLite")
    t = time.perf_counter()
    req = simulate(args.requests, args.rate)
    samples = make_samples(args.samples, len(req) / args.rate)
    print(
        f"simulated {len(req):,} requests at {args.rate:,.0f}/s ({sum(req.failed):,} failed) "
        f"and {len(samples):,} samples of {len(SAMPLE_METRICS)} metrics "
        f"in {time.perf_counter() - t:.1f} s\n",
        flush=True,
    )
    repeats: list[Repeat] = []
    for k in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="store_ingest_") as tmp:
            r = one_repeat(req, samples, args.rate, Path(tmp))
        repeats.append(r)
        print(
            f"repeat {k + 1}: record {r.record_s:.2f} s, ingest per-second {r.ingest_s:.2f} s, "
            f"batched {r.batched_s:.2f} s, peer executemany {r.peer_s:.2f} s; "
            f"db {r.db_mb:.1f} MB vs peer {r.peer_mb:.1f} MB",
            flush=True,
        )
    ingest = median([r.ingest_s for r in repeats])
    peer = median([r.peer_s for r in repeats])
    rows = [
        ["(a) recording into windows (driver CPU)", fmt(median([r.record_s for r in repeats]))],
        ["(b) ingest, per-second flushes (as a run)", fmt(ingest)],
        ["(b') ingest, 100-window flushes", fmt(median([r.batched_s for r in repeats]))],
        ["peer: executemany of 1 row per request", fmt(peer)],
        ["ratio (b) / peer", fmt(ingest / peer)],
    ]
    print()
    print(
        f"{len(req):,} requests in {repeats[0].windows:,} windows + {len(samples):,} samples, "
        f"median of {len(repeats)} repeats (seconds):\n"
    )
    print(table(["what", "s"], rows))
    db_mb, peer_mb = median([r.db_mb for r in repeats]), median([r.peer_mb for r in repeats])
    print(f"\ndatabase on disk: perfsleuth {db_mb:.1f} MB, the peer's rows {peer_mb:.1f} MB")
    print(
        f"\ntarget: ingest <= {TARGET_S:.0f} s: {verdict(ingest <= TARGET_S)} "
        f"({fmt(ingest)} s per-second flushes)"
    )
    if args.profile or ingest > TARGET_S:
        with tempfile.TemporaryDirectory(prefix="store_ingest_") as tmp:
            print("\nprofile of ingesting 100 windows per second (cumulative):")
            print(profile_ingest(req, samples, args.rate, Path(tmp)))


if __name__ == "__main__":
    run_main(main)

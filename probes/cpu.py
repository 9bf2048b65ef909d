"""CPU probe: target-tree CPU use and context switches, host CPU use and run queue.

Used by ``probes.sampler`` through ``default_probes()``.
"""

from __future__ import annotations

import time
from typing import ClassVar

import psutil

from probes._proc import HostStat, ThreadStat, read_host_stat, read_thread_stats

ProcKey = tuple[int, float]
"""(pid, create_time): survives pid reuse, unlike the bare pid."""

# psutil derives create_time from the whole-second boot time, so it can be off
# by up to a second; the slack keeps "born since the last sample" tests honest.
_CREATE_TIME_SLACK_S = 2.0


class CpuProbe:
    """Samples ``cpu.*`` metrics.

    Rates come from per-thread and per-process counters kept between calls, so a
    process or thread exiting between samples drops out instead of producing a
    negative rate. Processes and threads born since the previous sample count
    from zero, so short-lived workers are not missed.
    """

    name = "cpu"
    METRICS: ClassVar[dict[str, tuple[str, str]]] = {
        "cpu.process_pct": ("%", "CPU used by the target tree; 100 = one full core"),
        "cpu.host_pct": ("%", "host CPU busy time across all cores, 0-100"),
        "cpu.ctx_switches_voluntary_per_s": (
            "1/s",
            "voluntary context switches of the target tree (blocking on I/O, locks)",
        ),
        "cpu.ctx_switches_involuntary_per_s": (
            "1/s",
            "involuntary context switches of the target tree (preempted: CPU contention)",
        ),
        "cpu.host_ctx_switches_per_s": ("1/s", "context switches on the whole host"),
        "cpu.run_delay_ms_per_s": (
            "ms/s",
            "time the target's threads spent runnable but waiting for a CPU (schedstat), "
            "summed over threads: CPU contention felt by the target",
        ),
        "cpu.process_max_pct": ("%", "CPU used by the busiest single process of the tree"),
        "cpu.pid<PID>_pct": (
            "%",
            "CPU used by each process of the tree (names change with pids: for looking "
            "inside one run, not for comparing runs)",
        ),
        "cpu.core<N>_pct": ("%", "busy time of host core N, 0-100"),
        "cpu.processes": ("count", "processes in the target tree"),
        "cpu.threads": ("count", "threads in the target tree"),
        "cpu.run_queue": ("count", "host run queue: runnable tasks, procs_running in /proc/stat"),
        "cpu.procs_blocked": ("count", "host tasks blocked on I/O (/proc/stat)"),
    }

    def __init__(self) -> None:
        """Create a probe with no baseline; the first sample only reports gauges."""
        self.unavailable: str | None = None
        self._prev_now: float | None = None
        self._prev_wall = 0.0
        self._prev_host: HostStat | None = None
        self._prev_cpu: dict[ProcKey, float] = {}
        self._prev_ctx: dict[ProcKey, dict[int, ThreadStat]] = {}
        self._threads_at = -float("inf")  # monotonic time of the last per-thread reading
        self._threads_wall = 0.0

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        """Read counters and return gauges plus rates since the previous call.

        Args:
            now: ``time.monotonic()`` of this sample.
            procs: Target tree; empty means no target, so tree metrics are omitted.

        Returns:
            Metrics named as in :attr:`METRICS`.
        """
        dt = now - self._prev_now if self._prev_now is not None else 0.0
        wall = time.time()
        metrics = self._sample_host(dt)
        if procs:
            metrics.update(self._sample_tree(procs, dt))
        else:
            self._prev_cpu.clear()
            self._prev_ctx.clear()
        self._prev_now = now
        self._prev_wall = wall
        return metrics

    def _sample_host(self, dt: float) -> dict[str, float]:
        host = read_host_stat()
        metrics = {
            "cpu.run_queue": float(host.procs_running),
            "cpu.procs_blocked": float(host.procs_blocked),
        }
        prev = self._prev_host
        if prev is not None and dt > 0:
            total = host.total_ticks - prev.total_ticks
            if total > 0:
                busy = max(0, host.busy_ticks - prev.busy_ticks)
                metrics["cpu.host_pct"] = min(100.0, 100.0 * busy / total)
            metrics["cpu.host_ctx_switches_per_s"] = max(0, host.ctxt - prev.ctxt) / dt
            if len(prev.cores) == len(host.cores):  # a CPU hot-plugged: skip one tick
                for i, ((busy, total), (pbusy, ptotal)) in enumerate(
                    zip(host.cores, prev.cores, strict=True)
                ):
                    if total > ptotal:
                        share = max(0, busy - pbusy) / (total - ptotal)
                        metrics[f"cpu.core{i}_pct"] = min(100.0, 100.0 * share)
        self._prev_host = host
        return metrics

    def _sample_tree(self, procs: list[psutil.Process], dt: float) -> dict[str, float]:
        have_baseline = dt > 0 and bool(self._prev_cpu)
        cur_cpu: dict[ProcKey, float] = {}
        per_process: dict[int, float] = {}
        threads = 0
        cpu_s = 0.0
        live: list[tuple[ProcKey, psutil.Process]] = []
        for proc in procs:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    n_threads = proc.num_threads()
                key = (proc.pid, proc.create_time())
            except psutil.Error:
                continue  # exited (or hidden) between listing and reading
            live.append((key, proc))
            threads += n_threads
            cur_cpu[key] = times.user + times.system
            if not have_baseline:
                continue
            known = key in self._prev_cpu
            if not known and key[1] < self._prev_wall - _CREATE_TIME_SLACK_S:
                continue  # old process seen for the first time: baseline only
            used = max(0.0, cur_cpu[key] - self._prev_cpu.get(key, 0.0))
            cpu_s += used
            per_process[proc.pid] = used
        self._prev_cpu = cur_cpu
        metrics = {"cpu.threads": float(threads), "cpu.processes": float(len(cur_cpu))}
        if have_baseline:
            metrics["cpu.process_pct"] = 100.0 * cpu_s / dt
            if per_process:
                metrics["cpu.process_max_pct"] = 100.0 * max(per_process.values()) / dt
                for pid, used in per_process.items():
                    metrics[f"cpu.pid{pid}_pct"] = 100.0 * used / dt
        now = time.monotonic()
        if now - self._threads_at >= min(_THREAD_READ_MAX_S, threads * _THREAD_READ_COST_S):
            metrics.update(self._sample_threads(live, now))
        return metrics

    def _sample_threads(
        self, live: list[tuple[ProcKey, psutil.Process]], now: float
    ) -> dict[str, float]:
        """Per-thread context switches and run delay, as rates since the last reading.

        Two /proc files per thread (~17 µs): a server with hundreds of threads would cost
        more than a percent of a core at 4 Hz, so with many threads they are read less
        often (every `threads` x 10 ms, at most every 5 s) and the rates cover that span.
        """
        dt = now - self._threads_at
        have_baseline = bool(self._prev_ctx) and dt > 0
        cur_ctx: dict[ProcKey, dict[int, ThreadStat]] = {}
        voluntary = involuntary = run_delay_ns = 0
        schedstat = False
        for key, proc in live:
            stats = read_thread_stats(proc.pid)
            cur_ctx[key] = stats
            if not have_baseline:
                continue
            prev_threads = self._prev_ctx.get(key)
            if prev_threads is None:
                if key[1] < self._threads_wall - _CREATE_TIME_SLACK_S:
                    continue  # old process seen for the first time: baseline only
                prev_threads = {}  # born since the last reading: counts from zero
            for tid, stat in stats.items():
                prev = prev_threads.get(tid, _NEW_THREAD)
                if stat.voluntary < prev.voluntary or stat.involuntary < prev.involuntary:
                    continue  # tid reused by a new thread: rebaseline
                voluntary += stat.voluntary - prev.voluntary
                involuntary += stat.involuntary - prev.involuntary
                if stat.run_delay_ns >= 0:
                    schedstat = True
                    run_delay_ns += max(0, stat.run_delay_ns - max(prev.run_delay_ns, 0))
        self._prev_ctx = cur_ctx
        self._threads_at = now
        self._threads_wall = time.time()
        if not have_baseline:
            return {}
        metrics = {
            "cpu.ctx_switches_voluntary_per_s": voluntary / dt,
            "cpu.ctx_switches_involuntary_per_s": involuntary / dt,
        }
        if schedstat:
            metrics["cpu.run_delay_ms_per_s"] = run_delay_ns / 1e6 / dt
        return metrics


# Per-thread reading cadence: every tick up to 25 threads, then 10 ms per thread, at
# most every 5 s (100 threads: once a second; 500: every 5 s).
_THREAD_READ_COST_S = 0.01
_THREAD_READ_MAX_S = 5.0

# A thread born since the previous sample counts from zero.
_NEW_THREAD = ThreadStat(0, 0, 0)

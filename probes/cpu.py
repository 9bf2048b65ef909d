"""CPU probe: target-tree CPU use and context switches, host CPU use and run queue.

Used by ``probes.sampler`` through ``default_probes()``.
"""

from __future__ import annotations

import time
from typing import ClassVar

import psutil

from probes._proc import HostStat, read_host_stat, read_thread_ctx_switches

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
        self._prev_ctx: dict[ProcKey, dict[int, tuple[int, int]]] = {}

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
        self._prev_host = host
        return metrics

    def _sample_tree(self, procs: list[psutil.Process], dt: float) -> dict[str, float]:
        have_baseline = dt > 0 and bool(self._prev_cpu)
        cur_cpu: dict[ProcKey, float] = {}
        cur_ctx: dict[ProcKey, dict[int, tuple[int, int]]] = {}
        threads = 0
        cpu_s = voluntary = involuntary = 0.0
        for proc in procs:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    n_threads = proc.num_threads()
                key = (proc.pid, proc.create_time())
            except psutil.Error:
                continue  # exited (or hidden) between listing and reading
            ctx = read_thread_ctx_switches(proc.pid)
            threads += n_threads
            cur_cpu[key] = times.user + times.system
            cur_ctx[key] = ctx
            if not have_baseline:
                continue
            known = key in self._prev_cpu
            if not known and key[1] < self._prev_wall - _CREATE_TIME_SLACK_S:
                continue  # old process seen for the first time: baseline only
            cpu_s += max(0.0, cur_cpu[key] - self._prev_cpu.get(key, 0.0))
            prev_threads = self._prev_ctx.get(key, {})
            for tid, (vol, invol) in ctx.items():
                pvol, pinvol = prev_threads.get(tid, (0, 0))
                if vol < pvol or invol < pinvol:
                    continue  # tid reused by a new thread: rebaseline
                voluntary += vol - pvol
                involuntary += invol - pinvol
        self._prev_cpu = cur_cpu
        self._prev_ctx = cur_ctx
        metrics = {"cpu.threads": float(threads)}
        if have_baseline:
            metrics["cpu.process_pct"] = 100.0 * cpu_s / dt
            metrics["cpu.ctx_switches_voluntary_per_s"] = voluntary / dt
            metrics["cpu.ctx_switches_involuntary_per_s"] = involuntary / dt
        return metrics

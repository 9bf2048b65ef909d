"""Sampler: schedule, shutdown, target death and failing probes, on real processes."""

from __future__ import annotations

import itertools
import re
import sys
import threading
import time

import psutil
import pytest

from probes import (
    METRICS,
    UNITS,
    MemoryProbe,
    ProbeSample,
    Sampler,
    Target,
    default_probes,
    family_of,
)


class Collector:
    """Thread-safe on_sample sink."""

    def __init__(self) -> None:
        self.samples: list[ProbeSample] = []
        self._lock = threading.Lock()

    def __call__(self, sample: ProbeSample) -> None:
        with self._lock:
            self.samples.append(sample)

    def snapshot(self) -> list[ProbeSample]:
        with self._lock:
            return list(self.samples)


class BoomProbe:
    name = "boom"

    def __init__(self) -> None:
        self.unavailable: str | None = None
        self.calls = 0

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        self.calls += 1
        raise RuntimeError("kaput")


class GivesUpProbe:
    name = "gives_up"

    def __init__(self) -> None:
        self.unavailable: str | None = None
        self.calls = 0

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        self.calls += 1
        self.unavailable = "no such counters here: nothing to do"
        return {}


class SlowProbe:
    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.unavailable: str | None = None
        self.seconds = seconds

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        time.sleep(self.seconds)
        return {"slow.calls_count": 1.0}


def wait_for(predicate: object, timeout: float = 5.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def test_ticks_on_a_fixed_schedule_and_stops_promptly() -> None:
    sink = Collector()
    sampler = Sampler(None, 0.1, on_sample=sink)
    sampler.start()
    time.sleep(1.2)
    stop_started = time.monotonic()
    assert sampler.stop(timeout=2)
    assert time.monotonic() - stop_started < 0.5

    samples = sink.snapshot()
    # 12 ticks in 1.2 s; a tick the thread could not make in time (a CPU-starved machine)
    # is skipped and counted, not made up later.
    assert 10 <= len(samples) + sampler.ticks_skipped <= 14, (len(samples), sampler.ticks_skipped)
    assert sampler.samples_taken == len(samples)
    assert not sampler.running
    first = samples[0].t_mono
    # Drift-free: tick k lands near first + k * interval, not first + k * (interval + work).
    on_time = [s for k, s in enumerate(samples) if abs(s.t_mono - first - k * 0.1) < 0.05]
    assert len(on_time) >= len(samples) - 2 - sampler.ticks_skipped
    assert all(not s.target_alive for s in samples)
    assert "cpu.host_pct" in samples[-1].metrics
    assert "mem.rss_mb" not in samples[-1].metrics


def test_stop_does_not_wait_for_the_next_tick() -> None:
    with Sampler(None, 10.0) as sampler:
        assert wait_for(lambda: sampler.samples_taken == 1)
        started = time.monotonic()
    assert time.monotonic() - started < 0.5
    assert not sampler.running


def test_survives_target_death_and_keeps_host_metrics() -> None:
    code = "import sys, time; time.sleep(0.5); sys.exit(3)"
    sink = Collector()
    with (
        Target.launch([sys.executable, "-c", code]) as target,
        Sampler(target, 0.1, on_sample=sink) as sampler,
    ):
        assert wait_for(lambda: any(not s.target_alive for s in sink.snapshot()))
        dead_at = len(sink.snapshot())
        assert wait_for(lambda: len(sink.snapshot()) >= dead_at + 3)
        assert sampler.running

    samples = sink.snapshot()
    alive = [s for s in samples if s.target_alive]
    dead = [s for s in samples if not s.target_alive]
    assert alive and all("mem.rss_mb" in s.metrics for s in alive)
    assert samples.index(dead[0]) == len(alive)  # once dead, never alive again
    notes = [s.note for s in samples if s.note and "target" in s.note]
    assert len(notes) == 1
    assert "exited with code 3" in notes[0]
    assert dead[0].note == notes[0]
    assert all("cpu.host_pct" in s.metrics and "mem.rss_mb" not in s.metrics for s in dead[1:])


def test_failing_probe_is_dropped_and_others_continue() -> None:
    boom, gives_up = BoomProbe(), GivesUpProbe()
    sink = Collector()
    with Sampler(None, 0.05, on_sample=sink, probes=[boom, gives_up, MemoryProbe()]) as sampler:
        assert wait_for(lambda: sampler.samples_taken >= 4)
    assert boom.calls == 1
    assert gives_up.calls == 1
    assert sampler.unavailable == {
        "boom": "boom probe failed: RuntimeError: kaput",
        "gives_up": "no such counters here: nothing to do",
    }
    assert all("mem.host_used_pct" in s.metrics for s in sink.snapshot())


def test_failing_callback_does_not_stop_sampling() -> None:
    def explode(sample: ProbeSample) -> None:
        raise ValueError("callback bug")

    with Sampler(None, 0.05, on_sample=explode, probes=[MemoryProbe()]) as sampler:
        assert wait_for(lambda: sampler.samples_taken >= 3)
        assert sampler.running


def test_late_ticks_are_skipped_not_burst() -> None:
    sink = Collector()
    with Sampler(None, 0.1, on_sample=sink, probes=[SlowProbe(0.25)]) as sampler:
        time.sleep(1.0)
    samples = sink.snapshot()
    gaps = [b.t_mono - a.t_mono for a, b in itertools.pairwise(samples)]
    assert gaps and min(gaps) > 0.2, gaps
    assert sampler.ticks_skipped >= len(gaps)
    assert any(s.note and "skipped" in s.note for s in samples)


def test_rejects_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="interval_s must be positive"):
        Sampler(None, 0)


def test_default_probes_emit_exactly_the_documented_metrics() -> None:
    with Target.launch([sys.executable, "-c", "import time; time.sleep(30)"]) as target:
        sampler = Sampler(target)
        sampler.sample_once()
        time.sleep(0.1)
        sample = sampler.sample_once()
    emitted = set(sample.metrics)
    assert all(family_of(name) is not None for name in emitted), emitted
    expected = {
        name for probe in default_probes() for name in type(probe).METRICS if "<" not in name
    }
    # Present only when something happened or the host offers it.
    expected.discard("disk.await_ms")  # no disk request completed in the interval
    for probe, prefix in (("disk", "disk."), ("pressure", ".psi_"), ("gpu", "gpu.")):
        if probe in sampler.unavailable:
            expected -= {name for name in expected if prefix in name}
    assert expected <= emitted, expected - emitted
    assert {family_of(name) for name in emitted} >= {"cpu.core<N>_pct", "cpu.pid<PID>_pct"}
    assert sample.target_alive
    for name, text in METRICS.items():
        assert re.fullmatch(r"[a-z]+(<N>)?\.[a-z0-9_<>A-Z]+", name), name
        assert text.startswith(f"{UNITS[name]}: ")
    assert set(UNITS.values()) <= {
        "%",
        "1/s",
        "count",
        "MiB",
        "MiB/s",
        "ms",
        "ms/s",
        "MHz",
        "W",
        "°C",
    }

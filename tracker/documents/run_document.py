"""Turn stored windows and probe samples into the run JSON document (docs/json.md, the run
document; `attach` writes the same shape, docs/json.md, the attach document).

Used by the runner at the end of a run and by `show`, both reading from the store, so
`run --json` and `show --json` agree by construction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from probes import unit_of
from probes.stacks.profile import merge, top_functions
from tracker.records import DRIVER_SOURCE, FindingRecord, ProfileRecord, RunRecord, SampleRecord
from tracker.records.window import (
    INFLIGHT_WAIT,
    ITL,
    LATENCY,
    LATENCY_UNCORRECTED,
    LOOP_LAG,
    SCHEDULE_LAG,
    SESSION,
    TASK,
    TASK_POLL,
    TASK_POLLS,
    TASK_QUEUE,
    TASK_SUBMIT,
    TASKS_FAILED,
    TASKS_OK,
    TOKENS_COUNTED,
    TOKENS_FROM_USAGE,
    TPOT,
    TTFT,
    Window,
    per_request,
)

#: The run document's `schema_version` (docs/json.md, "Versioning"): new keys keep it; a
#: key removed, renamed or retyped bumps it, so scripts can refuse a shape they do not know.
RUN_SCHEMA_VERSION = 1

#: A driver whose schedule lag p99 exceeds this cannot keep its schedule: its latencies
#: partly measure itself, so the run is marked saturated rather than blaming the server.
SATURATION_LAG_P99_MS = 10.0

ERROR_CLASSES = (
    "connect",
    "timeout",
    "http_4xx",
    "http_5xx",
    "protocol",
    "stream_error",
    "check_failed",
    "extract_failed",
    "template",
    "task_failed",
    "other",
)


def _pct(window: Window, name: str) -> dict[str, float] | None:
    h = window.histograms.get(name)
    return h.summary_ms() if h is not None else None


def load_sections(
    windows: Iterable[Window],
    target_rate: float | None,
    *,
    load_duration_s: float | None = None,
    goodput: bool = False,
) -> dict[str, Any]:
    """The load part of the run document, from windows outside the warm-up.

    Rates divide by the load phase after warm-up (not by the drain that waits for the
    last in-flight requests), so one slow straggler cannot deflate throughput.
    """
    # One pass, one window decoded at a time: a long run must not hold all its
    # windows' histograms (~1 MB per second of run) to be summarised.
    total = Window(index=-1, start_s=0.0, duration_s=0.0)
    ends = 0.0
    first: float | None = None
    for w in windows:
        ends = max(ends, w.start_s + w.duration_s)
        if not w.warmup:
            first = w.start_s if first is None else min(first, w.start_s)
            total.absorb(w)
    load_end = min(ends, load_duration_s) if load_duration_s else ends
    duration = max(load_end - (first if first is not None else load_end), 0.0)
    drain = max(ends - load_end, 0.0)
    errors_by_class = dict.fromkeys(ERROR_CLASSES, 0)
    errors_by_class.update(total.errors_by_class)
    llm: dict[str, Any] | None = None
    if total.histograms.get(TTFT) is not None or total.output_tokens:
        llm = {
            "ttft_ms": _pct(total, TTFT),
            "itl_ms": _pct(total, ITL),
            "tpot_ms": _pct(total, TPOT),
            "output_tokens": total.output_tokens,
            "output_tokens_source": _tokens_source(total),
            "output_tokens_per_s": round(total.output_tokens / duration, 3) if duration else 0.0,
            "goodput_rps": None,
        }
    turns = sorted(
        int(name.split("|turn", 1)[1])
        for name in total.histograms
        if name.startswith(f"{TTFT}|turn")
    )
    if llm is not None and turns:
        llm["ttft_by_turn_ms"] = {str(t): _pct(total, per_request(TTFT, f"turn{t}")) for t in turns}
    if llm is not None and goodput:
        llm["goodput_rps"] = round(total.good / duration, 3) if duration else 0.0
    lag = _pct(total, SCHEDULE_LAG)
    loop_lag = _pct(total, LOOP_LAG)
    by_name = {
        name: {
            "total": counts.get("ok", 0) + counts.get("errors", 0),
            "ok": counts.get("ok", 0),
            "errors": counts.get("errors", 0),
            "latency_ms": _pct(total, per_request(LATENCY, name)),
            "ttft_ms": _pct(total, per_request(TTFT, name)),
        }
        for name, counts in sorted(total.by_request.items())
    }
    return {
        "measured_s": round(duration, 3),
        "drain_s": round(drain, 3),
        "requests": {
            "total": total.completed,
            "ok": total.ok,
            "errors": total.errors,
            "error_rate": round(total.errors / total.completed, 6) if total.completed else 0.0,
            "errors_by_class": errors_by_class,
            "dropped": total.dropped,
        },
        "requests_by_name": by_name or None,
        "sessions": _sessions(total),
        "tasks": _tasks(total, duration),
        "target_rate_rps": target_rate,
        "throughput_rps": round(total.ok / duration, 3) if duration else 0.0,
        "latency_ms": _pct(total, LATENCY),
        "latency_uncorrected_ms": _pct(total, LATENCY_UNCORRECTED),
        "llm": llm,
        "driver": {
            "schedule_lag_ms": lag,
            "loop_lag_ms": loop_lag,
            "inflight_wait_ms": _pct(total, INFLIGHT_WAIT),
            # Behind schedule (open model), or a loop too busy to serve its timers
            # (either model): the latencies partly measure the driver.
            "saturated": any(
                p is not None and p["p99"] > SATURATION_LAG_P99_MS for p in (lag, loop_lag)
            ),
        },
    }


def _tasks(total: Window, duration: float) -> dict[str, Any] | None:
    """Asynchronous tasks (session steps that poll): counts, and each part of the wait."""
    ok = total.counters.get(TASKS_OK, 0)
    failed = total.counters.get(TASKS_FAILED, 0)
    if not ok and not failed:
        return None
    polls = total.counters.get(TASK_POLLS, 0)
    return {
        "total": ok + failed,
        "ok": ok,
        "failed": failed,  # by class in requests.errors_by_class (timeout, task_failed, ...)
        "completed_per_s": round(ok / duration, 3) if duration else 0.0,
        "e2e_ms": _pct(total, TASK),
        "submit_ms": _pct(total, TASK_SUBMIT),
        "queue_ms": _pct(total, TASK_QUEUE),
        "poll_ms": _pct(total, TASK_POLL),
        "polls": polls,
        "polls_per_task": round(polls / (ok + failed), 3),
    }


def _sessions(total: Window) -> dict[str, Any] | None:
    ok = total.counters.get("sessions_ok", 0)
    failed = total.counters.get("sessions_failed", 0)
    if not ok and not failed:
        return None
    return {"ok": ok, "failed": failed, "duration_ms": _pct(total, SESSION)}


class _ProbeStats:
    """Mean and max of each probe metric of one host's samples."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.maxima: dict[str, float] = {}
        self.samples = 0

    def add(self, sample: SampleRecord) -> None:
        self.samples += 1
        for name, value in sample.metrics.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + 1
            self.maxima[name] = max(self.maxima.get(name, value), value)

    def section(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "mean": round(self.sums[name] / self.counts[name], 3),
                "max": round(self.maxima[name], 3),
                "unit": unit_of(name),
            }
            for name in sorted(self.sums)
        }


def probe_sections(
    samples: Iterable[SampleRecord], events: list[dict[str, Any]] | None = None
) -> tuple[_ProbeStats, dict[str, _ProbeStats]]:
    """Mean and max of every probe metric over the run: the server's host (the samples
    with no source), and each other host's, by source.

    One pass over the samples (an hour at 4 Hz is 14,400 of them, read from the store as
    they come); their notes are appended to `events` on the way (an other host's with
    its name).
    """
    server = _ProbeStats()
    others: dict[str, _ProbeStats] = {}
    for sample in samples:
        if events is not None and sample.note:
            note = sample.note if sample.source is None else f"{sample.source}: {sample.note}"
            events.append({"t_s": round(sample.t_s, 3), "note": note})
        if sample.source is None:
            server.add(sample)
        else:
            others.setdefault(sample.source, _ProbeStats()).add(sample)
    return server, others


def probe_section(
    samples: Iterable[SampleRecord], events: list[dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """The server host's probe section (see `probe_sections`)."""
    return probe_sections(samples, events)[0].section()


def hosts_section(
    run: RunRecord, server_samples: int, others: dict[str, _ProbeStats]
) -> list[dict[str, Any]]:
    """`probes_hosts`: each host the run observed, the server's first. The run keeps what
    it knew of each (an agent's URL, version, clock offset, gaps) in its summary; the
    server's `probes` are the document's own, the others' are added here."""
    known = list((run.summary or {}).get("probes_hosts") or [])
    if not known:
        known = [{"source": "local", "role": "server", "hostname": run.environment.get("host")}]
    hosts = []
    for entry in known:
        host = {k: v for k, v in entry.items() if k != "probes"}
        if host.get("role") == "server":
            host["samples"] = server_samples
        else:
            stats = others.get(str(host.get("source")))
            host["samples"] = stats.samples if stats is not None else 0
            host["probes"] = stats.section() if stats is not None else {}
        hosts.append(host)
    return hosts


def stacks_section(profiles: Iterable[ProfileRecord], top: int = 10) -> dict[str, Any] | None:
    """Where the target's Python code spent its time: top functions by self and total."""
    merged = merge(p.stacks for p in profiles)
    if not merged:
        return None

    def rows(by: str) -> list[dict[str, Any]]:
        return [
            {"function": f.function, "pct": round(f.self_pct if by == "self" else f.total_pct, 2)}
            for f in top_functions(merged, top, by=by)
            if (f.self_samples if by == "self" else f.total_samples)
        ]

    return {"samples": sum(merged.values()), "top_self": rows("self"), "top_total": rows("total")}


def run_document(
    run: RunRecord,
    windows: Iterable[Window],
    samples: Iterable[SampleRecord],
    findings: Iterable[FindingRecord],
    profiles: Iterable[ProfileRecord] = (),
) -> dict[str, Any]:
    """The run JSON contract (docs/json.md, the run document) for one stored run."""
    scenario = run.scenario_json
    load = scenario.get("load", {}) if isinstance(scenario, dict) else {}
    stepped = bool(load.get("stages") or load.get("throttle"))
    constant_open = load.get("model") == "open" and not stepped
    sessions = bool(scenario.get("session"))
    # With sessions the rate is of sessions, not requests: reported apart.
    target_rate = load.get("rate") if constant_open and not sessions else None
    doc: dict[str, Any] = {
        "schema_version": RUN_SCHEMA_VERSION,
        "run_id": run.id,
        "status": run.status,
        "scenario": run.scenario,
        "tag": run.tag,
        "started_at": run.started_at.isoformat(),
        "duration_s": round(run.duration_s, 3) if run.duration_s is not None else None,
    }
    doc.update(
        load_sections(
            windows,
            target_rate,
            load_duration_s=load.get("duration_s"),
            goodput=bool(scenario.get("goodput")),
        )
    )
    doc["target_session_rate_per_s"] = load.get("rate") if constant_open and sessions else None
    extras = run.summary or {}
    doc["requests"]["abandoned"] = int(extras.get("abandoned") or 0)
    events: list[dict[str, Any]] = []
    server, others = probe_sections(samples, events)
    doc["probes"] = server.section()
    doc["probes_hosts"] = hosts_section(run, server.samples, others)
    # The driver's own figures are of its host, the server's or not.
    driver_host = others.get(DRIVER_SOURCE)
    own_cpu = (driver_host.section() if driver_host else doc["probes"]).get("driver.cpu_pct")
    doc["driver"]["cpu_pct"] = (
        {"mean": own_cpu["mean"], "max": own_cpu["max"]} if own_cpu is not None else None
    )
    doc["probes_unavailable"] = dict(run.probes_unavailable)
    doc["probe_events"] = events
    doc["stacks"] = stacks_section(profiles)
    doc["findings"] = [f.to_json() for f in findings]
    doc["slo"] = list((run.summary or {}).get("slo") or [])
    doc["url"] = run.target_url
    doc["load"] = load
    doc["environment"] = run.environment
    doc["error"] = run.error
    return doc


def _tokens_source(total: Window) -> str | None:
    """ "usage" (the server's count), "chunks" (counted content chunks), "mixed", or None."""
    from_usage = total.counters.get(TOKENS_FROM_USAGE, 0)
    counted = total.counters.get(TOKENS_COUNTED, 0)
    if from_usage and counted:
        return "mixed"
    if from_usage:
        return "usage"
    return "chunks" if counted else None

"""A RUN argument as commands see it: one stored run, or a group of runs read as one.

Used by `show`, `compare` and `export`. `run --group NAME` on several hosts (a shared
PostgreSQL store) stores one run per host; `group:NAME` reads them as one logical run:
windows that cover the same wall-clock second are merged exactly (HDR histograms add
bucket by bucket), probe samples of every host are interleaved in time.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from tracker.documents.run_document import run_document
from tracker.errors import UsageError
from tracker.records import FindingRecord, ProfileRecord, RunRecord, SampleRecord
from tracker.records.window import Window
from tracker.store import Store

GROUP_PREFIX = "group:"


@dataclass(frozen=True)
class LoadedRun:
    """One run, or a group's runs with their start offsets (seconds after the first)."""

    record: RunRecord
    members: tuple[RunRecord, ...]
    offsets: tuple[float, ...]
    store: Store
    group: str | None = None

    def windows(self) -> Iterator[Window]:
        if self.group is None:
            yield from self.store.iter_windows(self.record.id)
            return
        # Window i of a member covers [start_s, start_s + 1) after that member's start;
        # on the group's clock it is second floor(offset + start_s).
        streams = [
            ((int(offset + w.start_s + 1e-6), w) for w in self.store.iter_windows(m.id))
            for m, offset in zip(self.members, self.offsets, strict=True)
        ]
        merged = heapq.merge(*streams, key=lambda pair: pair[0])
        for second, same in itertools.groupby(merged, key=lambda pair: pair[0]):
            total: Window | None = None
            for _, w in same:
                if total is None:
                    total = replace(w, index=second, start_s=float(second))
                    total.histograms = dict(w.histograms)
                    total.errors_by_class = dict(w.errors_by_class)
                    total.by_request = {k: dict(v) for k, v in w.by_request.items()}
                    total.counters = dict(w.counters)
                else:
                    total.warmup = total.warmup and w.warmup
                    total.absorb(w)
            if total is not None:
                yield total

    def samples(self) -> Iterator[SampleRecord]:
        if self.group is None:
            yield from self.store.iter_samples(self.record.id)
            return
        streams = [
            (replace(s, t_s=s.t_s + offset) for s in self.store.iter_samples(m.id))
            for m, offset in zip(self.members, self.offsets, strict=True)
        ]
        yield from heapq.merge(*streams, key=lambda s: s.t_s)

    def findings(self) -> list[FindingRecord]:
        return [f for m in self.members for f in self.store.findings(m.id)]

    def profiles(self) -> Iterator[ProfileRecord]:
        for m in self.members:
            yield from self.store.iter_profiles(m.id)

    def document(self) -> dict[str, Any]:
        """The run JSON document (docs/json.md, the run document); a group's carries `group`
        and `run_ids`."""
        doc = run_document(
            self.record, self.windows(), self.samples(), self.findings(), self.profiles()
        )
        if self.group is not None:
            rates = [(m.scenario_json.get("load") or {}).get("rate") for m in self.members]
            if doc.get("target_rate_rps") is not None and all(r is not None for r in rates):
                doc["target_rate_rps"] = float(sum(r for r in rates if r is not None))
            doc["group"] = self.group
            doc["run_ids"] = [m.id for m in self.members]
        return doc


def single(store: Store, record: RunRecord) -> LoadedRun:
    return LoadedRun(record, (record,), (0.0,), store)


def load_run(store: Store, spec: str) -> LoadedRun:
    """A run id, `latest`, or `group:NAME`; a UsageError when there is no such thing."""
    if not spec.startswith(GROUP_PREFIX):
        return single(store, store.get_run(spec))
    name = spec.removeprefix(GROUP_PREFIX).strip()
    members = store.group_runs(name)
    if not members:
        hint = f"make them with `perfsleuth run --group {name or 'NAME'}`"
        raise UsageError(f"RUN: no runs in group {name!r}; {hint}")
    first = min(m.started_at for m in members)
    offsets = tuple((m.started_at - first).total_seconds() for m in members)
    statuses = {m.status for m in members}
    status = next(
        (s for s in ("failed", "interrupted", "abandoned", "running") if s in statuses), "completed"
    )
    durations = [o + (m.duration_s or 0.0) for m, o in zip(members, offsets, strict=True)]
    keys = {m.scenario_key for m in members}
    if len(keys) > 1:
        raise UsageError(
            f"group {name!r} mixes runs of different scenarios or load settings "
            f"(runs {', '.join(str(m.id) for m in members)}); give each test its own group"
        )
    record = replace(
        members[0],
        status=status,
        started_at=first,
        duration_s=max(durations),
        summary=None,  # a group's numbers come from its merged windows, not one summary
        probes_unavailable={k: v for m in members for k, v in m.probes_unavailable.items()},
        error="; ".join(m.error for m in members if m.error) or None,
    )
    return LoadedRun(record, tuple(members), offsets, store, group=name)

"""The numbers a comparison weighs for one run, each with its standard error.

Used when a run is finished (the runner stores them in the run's summary, so comparing
against twenty runs reads twenty rows, not their windows) and by `compare` for runs
stored before this existed.

Requests inside one run are autocorrelated (a slow batch slows its neighbours), so a
per-request test would be far too confident. The standard errors here come from a
moving-block bootstrap over time: the run is cut into blocks of consecutive one-second
windows, blocks are resampled with replacement, and the statistic is recomputed from
the resampled blocks' merged histograms. Probe means get batch-means standard errors
(the spread of block means).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tracker.records.window import ITL, LATENCY, TASK_QUEUE, TASK_SUBMIT, TPOT, TTFT, Window

if TYPE_CHECKING:  # analysis takes plain records and never loads the store (SQLAlchemy)
    from tracker.records import SampleRecord

#: Blocks kept at most while reading; past it neighbours merge (block length doubles), so
#: an hour-long run costs what a two-minute one does.
MAX_BLOCKS = 64
#: Probe samples are grouped by this many seconds for their batch means.
BASE_BLOCK_WINDOWS = 3
#: Bootstrap resamples: enough for a standard error to ~5% (an SE of an SE is ~1/sqrt(2R)).
RESAMPLES = 200

PERCENTILE_KEYS = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0))
#: Histogram families compared, and where their percentiles sit in the run document.
FAMILIES: tuple[tuple[str, str], ...] = (
    (LATENCY, "latency_ms"),
    (TTFT, "llm.ttft_ms"),
    (ITL, "llm.itl_ms"),
    (TPOT, "llm.tpot_ms"),
    (TASK_QUEUE, "tasks.queue_ms"),
    (TASK_SUBMIT, "tasks.submit_ms"),
)


@dataclass(frozen=True)
class Estimate:
    """A run's value of one metric and the standard error of that value (same unit)."""

    value: float
    se: float
    n: int | None = None  # requests behind a percentile (None for rates and probes)

    def to_json(self) -> list[float]:
        return [self.value, self.se] if self.n is None else [self.value, self.se, self.n]

    @classmethod
    def from_json(cls, data: Any) -> Estimate:
        n = int(data[2]) if len(data) > 2 else None
        return cls(float(data[0]), float(data[1]), n)


@dataclass
class _Block:
    duration_s: float = 0.0
    sent: int = 0
    ok: int = 0
    completed: int = 0
    errors: int = 0
    dropped: int = 0
    tokens: int = 0
    good: int = 0
    buckets: dict[str, dict[float, int]] = field(default_factory=dict)

    def add(self, w: Window) -> None:
        self.duration_s += w.duration_s
        self.sent += w.sent
        self.ok += w.ok
        self.completed += w.completed
        self.errors += w.errors
        self.dropped += w.dropped
        self.tokens += w.output_tokens
        self.good += w.good
        for family, _ in FAMILIES:
            h = w.histograms.get(family)
            if h is None or not h.count:
                continue
            mine = self.buckets.setdefault(family, {})
            for value, n in h.buckets():
                mine[value] = mine.get(value, 0) + n

    def absorb(self, other: _Block) -> None:
        self.duration_s += other.duration_s
        self.sent += other.sent
        self.ok += other.ok
        self.completed += other.completed
        self.errors += other.errors
        self.dropped += other.dropped
        self.tokens += other.tokens
        self.good += other.good
        for family, theirs in other.buckets.items():
            mine = self.buckets.setdefault(family, {})
            for value, n in theirs.items():
                mine[value] = mine.get(value, 0) + n


class _Blocks:
    """Consecutive windows grouped into at most MAX_BLOCKS blocks, streaming; `final()`
    then merges neighbours up to the usual block length for n windows, ~n^(1/3)."""

    def __init__(self) -> None:
        self.blocks: list[_Block] = []
        self._sizes: list[int] = []
        self._length = 1

    def add(self, w: Window) -> None:
        if not self.blocks or self._sizes[-1] >= self._length:
            if len(self.blocks) >= MAX_BLOCKS:
                self._merge_pairs()
            if not self.blocks or self._sizes[-1] >= self._length:
                self.blocks.append(_Block())
                self._sizes.append(0)
        self.blocks[-1].add(w)
        self._sizes[-1] += 1

    def _merge_pairs(self) -> None:
        blocks: list[_Block] = []
        sizes: list[int] = []
        for i in range(0, len(self.blocks), 2):
            block, size = self.blocks[i], self._sizes[i]
            if i + 1 < len(self.blocks):
                block.absorb(self.blocks[i + 1])
                size += self._sizes[i + 1]
            blocks.append(block)
            sizes.append(size)
        self.blocks, self._sizes = blocks, sizes
        self._length *= 2

    def final(self) -> list[_Block]:
        """Blocks of ~n^(1/3) windows (Hall, Horowitz & Jing 1995: the order of the
        best block length for variances), keeping at least 8 blocks when there are."""
        n = sum(self._sizes)
        target = max(1, round(n ** (1 / 3)))
        while self._length < target and len(self.blocks) >= 16:
            self._merge_pairs()
        return self.blocks


def _percentile_se(
    blocks: list[dict[float, int]], draws: list[list[int]]
) -> dict[str, float] | None:
    """Bootstrap standard errors of p50/p90/p99 from per-block sparse histograms."""
    grid = sorted({v for b in blocks for v in b})
    if not grid:
        return None
    index = {v: i for i, v in enumerate(grid)}
    cums: list[list[int]] = []
    for b in blocks:
        counts = [0] * len(grid)
        for v, n in b.items():
            counts[index[v]] = n
        running = 0
        cum = []
        for n in counts:
            running += n
            cum.append(running)
        cums.append(cum)
    samples: dict[str, list[float]] = {key: [] for key, _ in PERCENTILE_KEYS}
    for draw in draws:
        weights: dict[int, int] = {}
        for i in draw:
            weights[i] = weights.get(i, 0) + 1
        parts = [(m, cums[i]) for i, m in weights.items()]
        total = sum(m * cum[-1] for m, cum in parts)
        if not total:
            continue
        for key, pct in PERCENTILE_KEYS:
            # HdrHistogram's rank rule, so a draw of every block once gives its exact value.
            rank = max(int(pct * total / 100 + 0.5), 1)
            lo, hi = 0, len(grid) - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if sum(m * cum[mid] for m, cum in parts) >= rank:
                    hi = mid
                else:
                    lo = mid + 1
            samples[key].append(grid[lo])
    return {key: _stdev(values) for key, values in samples.items()}


def _ratio_se(num: list[float], den: list[float], draws: list[list[int]]) -> float:
    values = []
    for draw in draws:
        d = sum(den[i] for i in draw)
        if d:
            values.append(sum(num[i] for i in draw) / d)
    return _stdev(values)


def _stdev(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def load_estimates(
    doc: dict[str, Any], windows: Iterable[Window], *, seed: int = 0
) -> dict[str, Estimate]:
    """Service metrics of a run: values from its run document, errors by block bootstrap.

    Windows in the warm-up are left out, as the document leaves them out.
    """
    grouped = _Blocks()
    for w in windows:
        if not w.warmup:
            grouped.add(w)
    blocks = grouped.final()
    out: dict[str, Estimate] = {}
    if not blocks or not doc.get("requests", {}).get("total"):
        return out
    rng = random.Random(seed)
    n = len(blocks)
    draws = [[rng.randrange(n) for _ in range(n)] for _ in range(RESAMPLES)]
    for family, path in FAMILIES:
        section = _lookup(doc, path)
        if not section:
            continue
        se = _percentile_se([b.buckets.get(family, {}) for b in blocks], draws)
        if se is None:
            continue
        count = int(section["count"]) if section.get("count") is not None else None
        for key, _ in PERCENTILE_KEYS:
            if section.get(key) is not None:
                out[f"{path}.{key}"] = Estimate(float(section[key]), se[key], count)
    llm = doc.get("llm") or {}
    rates = _rate_errors(doc, blocks, draws, tokens=bool(llm.get("output_tokens")))
    out["throughput_rps"] = Estimate(float(doc.get("throughput_rps") or 0.0), rates["ok"])
    requests = doc["requests"]
    out["error_rate"] = Estimate(
        float(requests.get("error_rate") or 0.0),
        _ratio_se([b.errors for b in blocks], [b.completed for b in blocks], draws),
    )
    if llm.get("output_tokens"):
        out["llm.output_tokens_per_s"] = Estimate(
            float(llm["output_tokens_per_s"]), rates["tokens"] * float(llm["output_tokens_per_s"])
        )
    if llm.get("goodput_rps") is not None:
        out["llm.goodput_rps"] = Estimate(float(llm["goodput_rps"]), rates["good"])
    return out


def _rate_errors(
    doc: dict[str, Any], blocks: list[_Block], draws: list[list[int]], *, tokens: bool
) -> dict[str, float]:
    """Standard errors of the run's rates: `ok` and `good` (req/s), `tokens` (relative).

    In the open model arrivals follow a seeded schedule that comparable runs share, so a
    rate varies only by what became of the arrivals: the schedule's rate times the share
    that succeeded (or met the goodput SLOs). Resampling requests per second instead would
    count the schedule's own Poisson wobble as noise (it made a 10 s A/A comparison's
    throughput interval +-12%). In the closed model the rate itself is what varies.
    """
    durations = [b.duration_s for b in blocks]
    ends = [float(b.completed + b.dropped) for b in blocks]
    oks = [float(b.ok) for b in blocks]
    goods = [float(b.good) for b in blocks]
    ok_total = sum(oks)
    if (doc.get("load") or {}).get("model") == "open" and sum(ends):
        rate = sum(b.sent for b in blocks) / max(sum(durations), 1e-9)
        ok_abs = rate * _ratio_se(oks, ends, draws)
        good_abs = rate * _ratio_se(goods, ends, draws)
        ok_rate = rate * ok_total / sum(ends)
    else:
        ok_abs = _ratio_se(oks, durations, draws)
        good_abs = _ratio_se(goods, durations, draws)
        ok_rate = ok_total / max(sum(durations), 1e-9)
    ok_rel = ok_abs / ok_rate if ok_rate else 0.0
    tokens_rel = 0.0
    if tokens and ok_total:
        # tokens/s = successful requests/s x tokens per request; both vary.
        per_ok = sum(b.tokens for b in blocks) / ok_total
        per_ok_se = _ratio_se([float(b.tokens) for b in blocks], oks, draws)
        tokens_rel = math.hypot(ok_rel, per_ok_se / per_ok if per_ok else 0.0)
    return {"ok": ok_abs, "good": good_abs, "tokens": tokens_rel}


def probe_estimates(doc: dict[str, Any], samples: Iterable[SampleRecord]) -> dict[str, Estimate]:
    """Each probe metric's run mean (from the document) with a batch-means standard error.

    Samples are grouped into consecutive blocks of BASE_BLOCK_WINDOWS seconds; the standard
    error of the mean is the spread of block means over the square root of their number.
    Samples before the load started (negative times) are part of the document's mean too.
    """
    sums: dict[str, dict[int, list[float]]] = {}
    for s in samples:
        if s.source is not None:
            continue  # another host's: the document's `probes` are the server's
        block = math.floor(s.t_s / BASE_BLOCK_WINDOWS)
        for name, value in s.metrics.items():
            acc = sums.setdefault(name, {}).setdefault(block, [0.0, 0.0])
            acc[0] += value
            acc[1] += 1
    out: dict[str, Estimate] = {}
    for name, stats in (doc.get("probes") or {}).items():
        per_block = sums.get(name)
        if not per_block or stats.get("mean") is None:
            continue
        means = [total / count for total, count in per_block.values() if count]
        se = _stdev(means) / math.sqrt(len(means)) if len(means) > 1 else 0.0
        out[f"probes.{name}"] = Estimate(float(stats["mean"]), se)
    return out


def _lookup(doc: dict[str, Any], path: str) -> dict[str, Any] | None:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node if isinstance(node, dict) else None

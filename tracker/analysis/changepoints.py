"""Change points in a scenario's nightly history of one metric (latency p99, req/s, ...).

Used by `perfsleuth history` (wired by the CLI/store side) and measured by
`benchmarks/changepoint_eval.py`. Pure computation over a list of floats, stdlib only:
importing it loads `math`, `itertools` and `dataclasses`, nothing else.

Method. Hunter / Apache Otava (Fleming et al., ICPE 2023) split a series top-down at
the E-Divisive means statistic (Matteson & James 2014) and keep a split when a Student
t-test of its two sides passes, instead of E-Divisive's permutation test: deterministic
and cheap. This module keeps the t-test and the mean-shift split (E-Divisive with
alpha = 2, i.e. the CUSUM statistic, O(1) per position with prefix sums), changes four
things and adds a creep post-pass, each measured by an ablation row of
benchmarks/changepoint_eval.py:

1. Outlier nights are clipped first (`clip_outliers`: more than 4 sigma from the median
   of the 2*min_size+1 values around them, sigma from night-to-night differences), so a
   heavy-tail night, or a burst of up to min_size of them, cannot make a level.
2. Over-segment, then prune. Binary segmentation with a loose test (p < 0.05) proposes
   candidates; then the weakest change point is removed while its test against its two
   neighbouring segments has p >= alpha, its neighbours are re-placed, and the rest are
   re-tested. Each test sees only the segments next to it, so one change does not hide
   another (top-down splitting tests a change against sides that still hold others).
3. Autocorrelation. The t statistic is shrunk by sqrt((1 - rho) / (1 + rho)), rho the
   lag-1 autocorrelation of the residuals of the current segmentation (the AR(1)
   variance of a mean). Slow trends and random walks have rho near 1, so they do not
   turn into staircases of "changes"; independent noise has rho near 0 and loses nothing.
   On TCPD this is worth +0.12 F1; on the synthetic nightly set it costs 0.005.
4. Scan correction. The split was the best of up to L - 2*min_size positions, so its
   p-value is multiplied by t^2 * ln((L - m) / m), the leading term of the tail of the
   maximum of a standardised Brownian bridge (James, James & Siegmund 1987), capped at
   the number of positions (Bonferroni). Without it 10 of 2,100 noise-only series of
   30-60 nights got a change point; with it none did.

Creep: a slow ramp becomes a staircase of change points, or one change point in its
middle. A post-pass fits "flat, linear ramp, flat" around each group of change points
less than 10 values apart; when that beats the staircase by BIC (plus ln n for the
searched ramp length) the group becomes one `creep` whose `index` is the first value off
the old level (the night to bisect from) and whose `end` is the first on the new one.
A ramp longer than max_ramp shows as a creep from its start plus further pieces. A
drift that spans the whole series has no level before it: it is reported as one or two
steps when it is moderate against the noise and not at all when it dominates (it then
looks like a random walk, see 3). For the same reason a sawtooth (a slow leak reset
every few weeks) is read as autocorrelated noise and its resets are not reported.

A change needs min_size values after it before it can be reported (5 nights by default).

Missing values: None, NaN and infinities are skipped; indices always refer to the
series as given (a change after a gap is reported at the first value after the gap).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from tracker.analysis.changepoints_stats import (
    PrefixSums,
    clip_outliers,
    median,
    t_two_sided_p,
)

ALPHA = 1e-4
MIN_SIZE = 5
MAX_RAMP = 20

_CANDIDATE_ALPHA = 0.05  # loose on purpose: pruning decides, candidates only propose
_CLIP_SIGMAS = 4.0
_RHO_MAX = 0.99  # keeps (1 - rho) / (1 + rho) > 0 for perfectly smooth series
_CREEP_GAP = 10  # change points this close may be one ramp
_MIN_RAMP_VALUES = 2  # a "ramp" of one in-between value is a step
_MIN_FLAT_VALUES = 2  # values on the old level before a ramp, so it has a "before"


@dataclass(frozen=True)
class ChangePoint:
    """One change in a series. Indices refer to the series as passed to `detect`."""

    index: int  # first index of the new regime (a creep: first value off the old level)
    before: float  # median of the values since the previous change point
    after: float  # median of the values up to the next one (a creep still going: last 3)
    change_pct: float  # (after - before) / |before| * 100; 0 when before == 0
    p_value: float  # t-test of the segments either side, scan- and AR-corrected
    kind: str  # "step" or "creep" (the level moved over several values)
    end: int  # first index on the new level: index for a step, after the ramp for a creep


def detect(
    values: Sequence[float | None],
    *,
    alpha: float = ALPHA,
    min_size: int = MIN_SIZE,
    max_ramp: int = MAX_RAMP,
    creep: bool = True,
    robust: bool = True,
    autocorrelation: bool = True,
    scan_correction: bool = True,
) -> list[ChangePoint]:
    """Change points of `values`, in index order; [] when there are too few values.

    alpha: p-value a change point must stay under (after the module docstring's
    corrections).
    min_size: fewest values on each side of a change point (also the outlier window).
    max_ramp: longest creep, in values, the post-pass looks for.
    creep, robust, autocorrelation, scan_correction: switch off one part of the method
    (for the benchmark's ablation rows; keep the defaults).
    """
    if min_size < 2:
        raise ValueError(f"min_size must be at least 2, got {min_size}")
    positions: list[int] = []
    raw: list[float] = []
    for i, v in enumerate(values):
        if v is not None and math.isfinite(v):
            positions.append(i)
            raw.append(float(v))
    n = len(raw)
    if n < 2 * min_size:
        return []
    centre = median(raw)
    # Centring keeps the prefix sums of squares small relative to the level.
    centred = [v - centre for v in raw]
    x = clip_outliers(centred, min_size, _CLIP_SIGMAS) if robust else centred
    seg = _Segmenter(x, min_size, autocorrelation, scan_correction)
    cps, p_of = seg.prune(seg.candidates(), alpha)
    if creep and cps:
        # Ramp or step is judged on values whose step edges were not softened by the
        # clipping above (see clip_outliers): a sharp step must not look like a ramp.
        edges = clip_outliers(centred, min_size, _CLIP_SIGMAS, sharp_edges=True)
        spans = seg.creep_pass(cps, max_ramp, PrefixSums(edges if robust else centred))
    else:
        spans = [(c, c) for c in cps]
    return _describe(raw, positions, len(values), spans, seg, p_of)


class _Segmenter:
    """Candidate splits, their tests, pruning and the creep post-pass over one series."""

    def __init__(self, x: list[float], min_size: int, autocorr: bool, scan: bool) -> None:
        self.n = len(x)
        self.ps = PrefixSums(x)
        self.min_size = min_size
        self.autocorr = autocorr
        self.scan = scan
        self.rho = 0.0

    def best_split(self, a: int, b: int) -> int:
        """The split of [a, b) with the largest mean-shift statistic (CUSUM form)."""
        ps, m = self.ps, self.min_size
        best_t, best = a + m, -1.0
        for t in range(a + m, b - m + 1):
            n1, n2 = t - a, b - t
            d = ps.mean(t, b) - ps.mean(a, t)
            stat = d * d * n1 * n2 / (n1 + n2)
            if stat > best:
                best_t, best = t, stat
        return best_t

    def p_value(self, a: int, t1: int, t2: int, b: int, *, corrected: bool = True) -> float:
        """Pooled two-sample t-test of [a, t1) against [t2, b) (t1 < t2 skips a ramp)."""
        ps = self.ps
        n1, n2 = t1 - a, b - t2
        df = n1 + n2 - 2
        if n1 < 1 or n2 < 1 or df < 1:
            return 1.0
        d = ps.mean(t2, b) - ps.mean(a, t1)
        pooled = (ps.sse(a, t1) + ps.sse(t2, b)) / df
        if pooled <= 0.0:
            return 0.0 if d != 0.0 else 1.0
        t = d / math.sqrt(pooled * (1.0 / n1 + 1.0 / n2))
        if not corrected:
            return t_two_sided_p(t, df)
        if self.autocorr:
            rho = min(_RHO_MAX, max(0.0, self.rho))
            t *= math.sqrt((1.0 - rho) / (1.0 + rho))
        p = t_two_sided_p(t, df)
        if self.scan:
            span, m = b - a, self.min_size
            places = max(1, span - 2 * m + 1)
            factor = t * t * math.log(max(1.0, (span - m) / m))
            p *= min(float(places), max(1.0, factor))
        return min(1.0, p)

    def candidates(self) -> list[int]:
        """Binary segmentation with a loose, uncorrected test: a superset to prune."""
        out: list[int] = []
        stack = [(0, self.n)]
        while stack:
            a, b = stack.pop()
            if b - a < 2 * self.min_size:
                continue
            t = self.best_split(a, b)
            if self.p_value(a, t, t, b, corrected=False) < _CANDIDATE_ALPHA:
                out.append(t)
                stack += [(a, t), (t, b)]
        return sorted(out)

    def _update_rho(self, cps: list[int]) -> None:
        bounds = [0, *cps, self.n]
        pairs = list(itertools.pairwise(bounds))
        num = sum(self.ps.lag1(a, b) for a, b in pairs)
        den = sum(self.ps.sse(a, b) for a, b in pairs)
        self.rho = num / den if den > 0.0 else 0.0

    def prune(self, cps: list[int], alpha: float) -> tuple[list[int], dict[int, float]]:
        """Drop the weakest change point until all pass; returns them and their p."""
        cps = list(cps)
        while cps:
            self._update_rho(cps)
            bounds = [0, *cps, self.n]
            pvals = [
                self.p_value(bounds[k - 1], bounds[k], bounds[k], bounds[k + 1])
                for k in range(1, len(bounds) - 1)
            ]
            worst = max(range(len(cps)), key=lambda k: pvals[k])
            if pvals[worst] < alpha:
                return cps, dict(zip(cps, pvals, strict=True))
            del cps[worst]
            # The neighbours of the removed point now span more data: re-place them.
            bounds = [0, *cps, self.n]
            for k in (worst, worst + 1):
                if 1 <= k <= len(cps) and bounds[k + 1] - bounds[k - 1] >= 2 * self.min_size:
                    cps[k - 1] = bounds[k] = self.best_split(bounds[k - 1], bounds[k + 1])
        return [], {}

    def creep_pass(
        self, cps: list[int], max_ramp: int, values: PrefixSums
    ) -> list[tuple[int, int]]:
        """(start, end) per change: (t, t) for a step, (first off, first on) for a creep."""
        groups: list[list[int]] = []
        for c in cps:
            if groups and c - groups[-1][-1] <= _CREEP_GAP:
                groups[-1].append(c)
            else:
                groups.append([c])
        spans: list[tuple[int, int]] = []
        for gi, group in enumerate(groups):
            a = spans[-1][1] if spans else 0  # a ramp before this group ends there
            b = groups[gi + 1][0] if gi + 1 < len(groups) else self.n
            ramp = self._best_ramp(values, a, group, b, max_ramp)
            if ramp is None:
                spans += [(c, c) for c in group]
            else:
                spans.append(ramp)
        return spans

    def _best_ramp(
        self, ps: PrefixSums, a: int, group: list[int], b: int, max_ramp: int
    ) -> tuple[int, int] | None:
        span = b - a
        bounds = [a, *group, b]
        stair = sum(ps.sse(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1))
        best: tuple[float, int, int] | None = None
        last = b if b == self.n else b - 1  # a ramp may run into the series' end only
        for u in range(max(a + _MIN_FLAT_VALUES, group[0] - max_ramp), group[0] + 1):
            for w in range(max(u + _MIN_RAMP_VALUES, group[-1]), min(last, u + max_ramp) + 1):
                sse = ps.ramp_fit(a, u, w, b)[0]
                if best is None or sse < best[0]:
                    best = (sse, u, w)
        if best is None:
            return None
        sse, u, w = best
        if sse <= 0.0 or stair <= 0.0:
            return (u, w) if stair > 0.0 else None
        # BIC: staircase 2k+1 parameters, ramp 4; plus ln(span) for the searched length.
        k = len(group)
        gain = span * math.log(stair / sse)
        return (u, w) if gain > (4 - (2 * k + 1) + 1) * math.log(span) else None


def _describe(
    raw: list[float],
    positions: list[int],
    length: int,
    spans: list[tuple[int, int]],
    seg: _Segmenter,
    p_of: dict[int, float],
) -> list[ChangePoint]:
    """Spans over the clean values -> ChangePoints over the caller's indices."""
    out = []
    n = len(raw)
    for k, (start, end) in enumerate(spans):
        left = spans[k - 1][1] if k > 0 else 0
        right = spans[k + 1][0] if k + 1 < len(spans) else n
        before = median(raw[left:start]) if start > left else raw[start - 1]
        # A creep still going at the last value has no level after it: its last 3 values.
        after = median(raw[end:right] if end < right else raw[max(start, right - 3) : right])
        if start == end:
            p = p_of[start]
        elif end < right:
            p = seg.p_value(left, start, end, right)  # the flat parts, the ramp left out
        else:
            p = min(v for c, v in p_of.items() if start <= c <= end)
        out.append(
            ChangePoint(
                index=positions[start],
                before=before,
                after=after,
                change_pct=(after - before) / abs(before) * 100.0 if before != 0.0 else 0.0,
                p_value=p,
                kind="step" if start == end else "creep",
                end=positions[end] if end < n else length,
            )
        )
    return out

"""Change-point detector evaluation: synthetic nightly series and the TCPD benchmark.

Runs `tracker.analysis.changepoints.detect` with its default settings, four ablations of
it, and three peers measured in the same run, on:

- the labelled synthetic set of `changepoint_data.py` (195 series: steps, ramps labelled
  at their start, step + ramp, outliers only) -> F1 (margin 5) and cover;
- 100 noise-only series of 30-60 nights -> series with any change point (target 0), and
  2,000 more (20 other seeds) to show the rate behind that 0;
- the Turing Change Point Dataset (van den Burg & Williams 2020) in ../shared/data/tcpd
  (32 series, 5 annotators each) -> F1 (margin 5) and cover, default settings.

Scoring, implemented here from the TCPD authors' description: F1 = harmonic mean of a
precision computed against the union of all annotators' change points and a recall
averaged over annotators; a prediction matches at most one annotated point within 5
indices; index 0 is added to every set (so predicting nothing on an unannotated series
scores 1). Cover = for each annotator, the length-weighted best Jaccard overlap of each
annotated segment with a predicted segment, averaged over annotators. The synthetic set
uses the same formulas with its one true labelling; the pooled precision / recall
columns count every change point of the synthetic set without the index-0 convention.

Multivariate TCPD series (run_log, 2 dimensions): every method runs on each dimension
and the results are united; a change point within 5 indices of one already found in an
earlier dimension counts as the same change. Missing values (null in `raw`) are skipped
with indices kept. Peers:

- zero: no change points at all (the TCPD "zero" baseline);
- edivisive-t: E-Divisive means split (energy statistic, alpha = 1) tested with a
  pooled Student t-test at p < 0.001, top-down, min segment 5 (the Hunter / Apache Otava
  approach; our implementation);
- binseg-bic: binary segmentation on the mean, Gaussian cost with sigma from the
  differences, split kept when it lowers the cost by more than 2 ln n (BIC for a
  location and a mean), min segment 5 (our implementation).

    /work/venv/bin/python benchmarks/changepoint_eval.py [--tcpd DIR] [--per-series]

Always exits 0: benchmarks report, they do not gate.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import changepoint_data as data
from _peers import header, run_main, table, verdict
from _support import REPO

from tracker.analysis.changepoints import detect
from tracker.analysis.changepoints_stats import PrefixSums, diff_sigma, t_two_sided_p

MARGIN = 5
MIN_SEG = 5
TCPD_DIR = REPO.parent / "shared" / "data" / "tcpd"
PUBLISHED_BINSEG_F1 = 0.744  # TCPD README: binseg, default settings (best default method)
PUBLISHED_ZERO_F1 = 0.669
EXTRA_NOISE_SEEDS = 20

SENSITIVITY: list[tuple[str, dict[str, Any]]] = [
    ("defaults (alpha 1e-4, min_size 5)", {}),
    ("alpha 3e-5", {"alpha": 3e-5}),
    ("alpha 3e-4", {"alpha": 3e-4}),
    ("min_size 4", {"min_size": 4}),
    ("min_size 6", {"min_size": 6}),
    ("max_ramp 12", {"max_ramp": 12}),
]

Method = Callable[[list[float | None]], list[int]]


# -- scoring --------------------------------------------------------------------------


def _hits(truth: set[int], pred: set[int], margin: int = MARGIN) -> int:
    """Truth points matched one-to-one by the nearest free prediction within the margin."""
    free = set(pred)
    hits = 0
    for t in sorted(truth):
        near = [x for x in free if abs(x - t) <= margin]
        if near:
            free.remove(min(near, key=lambda x: (abs(x - t), x)))
            hits += 1
    return hits


def f1_score(annotations: Sequence[Sequence[int]], pred: Sequence[int]) -> float:
    truths = [{0, *a} for a in annotations]
    predicted = {0, *pred}
    precision = _hits(set().union(*truths), predicted) / len(predicted)
    recall = statistics.fmean(_hits(t, predicted) / len(t) for t in truths)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _segments(cps: Sequence[int], n: int) -> list[tuple[int, int]]:
    bounds = [0, *sorted({c for c in cps if 0 < c < n}), n]
    return list(itertools.pairwise(bounds))


def cover(annotations: Sequence[Sequence[int]], pred: Sequence[int], n: int) -> float:
    predicted = _segments(pred, n)
    scores = []
    for a in annotations:
        total = 0.0
        for s, e in _segments(a, n):
            best = 0.0
            for s2, e2 in predicted:
                inter = min(e, e2) - max(s, s2)
                if inter > 0:  # overlapping intervals: their union is one interval
                    best = max(best, inter / (max(e, e2) - min(s, s2)))
            total += (e - s) * best
        scores.append(total / n)
    return statistics.fmean(scores)


# -- data -------------------------------------------------------------------------------


@dataclass
class Series:
    name: str
    dims: list[list[float | None]]
    annotations: list[list[int]]
    family: str = "tcpd"

    @property
    def n(self) -> int:
        return len(self.dims[0])


def load_tcpd(root: Path) -> list[Series]:
    annotations = json.loads((root / "annotations.json").read_text())
    out = []
    for name in sorted(annotations):
        path = root / name / f"{name}.json"
        if not path.exists():
            continue
        doc = json.loads(path.read_text())
        dims = [[None if v is None else float(v) for v in s["raw"]] for s in doc["series"]]
        out.append(Series(name, dims, [list(a) for a in annotations[name].values()]))
    return out


def _labelled(items: list[data.Labelled]) -> list[Series]:
    return [Series(s.name, [list(s.values)], [s.changes], s.family) for s in items]


# -- methods ----------------------------------------------------------------------------


def _finite(values: Sequence[float | None]) -> tuple[list[int], list[float]]:
    pos, xs = [], []
    for i, v in enumerate(values):
        if v is not None and math.isfinite(v):
            pos.append(i)
            xs.append(float(v))
    return pos, xs


def ours(**kwargs: Any) -> Method:
    return lambda values: [cp.index for cp in detect(values, **kwargs)]


def zero(values: list[float | None]) -> list[int]:
    return []


def _energy_split(x: list[float], a: int, b: int) -> int:
    """argmax over t of the E-Divisive (alpha = 1) energy statistic of x[a:t] vs x[t:b]."""
    seg = x[a:b]
    n = len(seg)
    within_l = [0.0] * (n + 1)  # sum of |xi - xj| over pairs in seg[:k]
    for k in range(1, n + 1):
        within_l[k] = within_l[k - 1] + sum(abs(seg[k - 1] - seg[j]) for j in range(k - 1))
    within_r = [0.0] * (n + 1)  # ... over pairs in seg[k:]
    for k in range(n - 1, -1, -1):
        within_r[k] = within_r[k + 1] + sum(abs(seg[k] - seg[j]) for j in range(k + 1, n))
    best_t, best = a + MIN_SEG, -math.inf
    for k in range(MIN_SEG, n - MIN_SEG + 1):
        m1, m2 = k, n - k
        between = within_l[n] - within_l[k] - within_r[k]
        energy = (
            2.0 * between / (m1 * m2)
            - within_l[k] / (m1 * (m1 - 1) / 2.0)
            - within_r[k] / (m2 * (m2 - 1) / 2.0)
        )
        q = energy * m1 * m2 / (m1 + m2)
        if q > best:
            best_t, best = a + k, q
    return best_t


def _student_p(ps: PrefixSums, a: int, t: int, b: int) -> float:
    n1, n2 = t - a, b - t
    df = n1 + n2 - 2
    pooled = (ps.sse(a, t) + ps.sse(t, b)) / df
    d = ps.mean(t, b) - ps.mean(a, t)
    if pooled <= 0:
        return 0.0 if d else 1.0
    return t_two_sided_p(d / math.sqrt(pooled * (1 / n1 + 1 / n2)), df)


def edivisive_t(values: list[float | None], max_p: float = 0.001) -> list[int]:
    pos, x = _finite(values)
    ps = PrefixSums(x)
    cps, stack = [], [(0, len(x))]
    while stack:
        a, b = stack.pop()
        if b - a < 2 * MIN_SEG:
            continue
        t = _energy_split(x, a, b)
        if _student_p(ps, a, t, b) < max_p:
            cps.append(t)
            stack += [(a, t), (t, b)]
    return [pos[c] for c in sorted(cps)]


def binseg_bic(values: list[float | None]) -> list[int]:
    pos, x = _finite(values)
    n = len(x)
    sigma = diff_sigma(x)
    if n < 2 * MIN_SEG or sigma <= 0:
        return []
    ps, penalty = PrefixSums(x), 2.0 * math.log(n)
    cps, stack = [], [(0, n)]
    while stack:
        a, b = stack.pop()
        if b - a < 2 * MIN_SEG:
            continue
        gain, t = max(
            (ps.sse(a, b) - ps.sse(a, t) - ps.sse(t, b), t)
            for t in range(a + MIN_SEG, b - MIN_SEG + 1)
        )
        if gain / sigma**2 > penalty:
            cps.append(t)
            stack += [(a, t), (t, b)]
    return [pos[c] for c in sorted(cps)]


def run_method(method: Method, series: Series) -> list[int]:
    found: list[int] = []
    for dim in series.dims:
        for c in method(dim):
            if all(abs(c - f) > MARGIN for f in found):
                found.append(c)
    return sorted(found)


# -- evaluation -------------------------------------------------------------------------


@dataclass
class Scores:
    f1: list[float] = field(default_factory=list)
    cover: list[float] = field(default_factory=list)
    tp: int = 0
    n_pred: int = 0
    n_true: int = 0
    by_name: dict[str, tuple[float, list[int]]] = field(default_factory=dict)

    def add(self, s: Series, pred: list[int]) -> None:
        f1 = f1_score(s.annotations, pred)
        self.f1.append(f1)
        self.cover.append(cover(s.annotations, pred, s.n))
        self.by_name[s.name] = (f1, pred)
        truth = set(s.annotations[0])
        self.tp += _hits(truth, set(pred))
        self.n_pred += len(pred)
        self.n_true += len(truth)


def score(method: Method, sets: list[Series]) -> Scores:
    out = Scores()
    for s in sets:
        out.add(s, run_method(method, s))
    return out


def mean(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f}" if values else "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tcpd", type=Path, default=TCPD_DIR, help="TCPD folder")
    ap.add_argument("--seed", type=int, default=data.DEFAULT_SEED)
    ap.add_argument("--per-series", action="store_true", help="TCPD F1 per series")
    args = ap.parse_args()
    header("change-point detection: synthetic nightly series + TCPD")

    labelled = _labelled(data.labelled_set(args.seed))
    noise = _labelled(data.noise_only(args.seed))
    extra = _labelled(
        [s for k in range(1, EXTRA_NOISE_SEEDS + 1) for s in data.noise_only(args.seed + 1000 * k)]
    )
    floor = _labelled(data.below_floor(args.seed))
    tcpd = load_tcpd(args.tcpd) if args.tcpd.exists() else []
    univariate = [s for s in tcpd if len(s.dims) == 1]
    print(
        f"synthetic: {len(labelled)} labelled, {len(noise)} + {len(extra)} noise-only, "
        f"{len(floor)} below the floor; TCPD: {len(tcpd)} series ({len(univariate)} univariate)"
        + ("" if tcpd else f" -- {args.tcpd} not found, TCPD columns empty")
        + "\n"
    )

    methods: list[tuple[str, Method]] = [
        ("perfsleuth (defaults)", ours()),
        ("  without creep pass", ours(creep=False)),
        ("  without outlier clipping", ours(robust=False)),
        ("  without autocorrelation", ours(autocorrelation=False)),
        ("  without scan correction", ours(scan_correction=False)),
        ("zero (no change)", zero),
        ("edivisive-t (Hunter-style)", edivisive_t),
        ("binseg-bic", binseg_bic),
    ]
    rows, results = [], {}
    t_all = time.perf_counter()
    for name, method in methods:
        t0 = time.perf_counter()
        syn, tc = score(method, labelled), score(method, tcpd)
        uni = [tc.by_name[s.name][0] for s in univariate]
        fa = sum(1 for s in noise if run_method(method, s))
        fa_extra = sum(1 for s in extra if run_method(method, s))
        elapsed = time.perf_counter() - t0
        results[name] = (syn, tc, fa)
        precision = syn.tp / syn.n_pred if syn.n_pred else 1.0
        recall = syn.tp / syn.n_true
        pooled_f1 = 2 * precision * recall / (precision + recall) if syn.tp else 0.0
        rows.append(
            [
                name,
                mean(syn.f1),
                mean(syn.cover),
                f"{precision:.3f} / {recall:.3f} / {pooled_f1:.3f}",
                f"{fa} / {len(noise)}",
                f"{fa_extra} / {len(extra)}",
                mean(tc.f1),
                mean(tc.cover),
                mean(uni),
                f"{elapsed:.1f}",
            ]
        )
    total = time.perf_counter() - t_all
    cols = ["method", "synthetic F1", "synthetic cover", "pooled P / R / F1", "false alarms",
            "false alarms (more seeds)", "TCPD F1", "TCPD cover", "TCPD F1 univariate",
            "seconds"]  # fmt: skip
    print(table(cols, rows))
    print(
        f"\npublished TCPD F1, default settings, 37 univariate series: binseg "
        f"{PUBLISHED_BINSEG_F1}, zero {PUBLISHED_ZERO_F1} (zero measured here on these 32: "
        f"{mean(results['zero (no change)'][1].f1)})\n"
    )

    fam_rows = []
    for name in ("perfsleuth (defaults)", "  without creep pass", "edivisive-t (Hunter-style)"):
        syn = results[name][0]
        by_fam: dict[str, list[float]] = {}
        for s in labelled:
            by_fam.setdefault(s.family, []).append(syn.by_name[s.name][0])
        fam_rows.append([name.strip(), *(mean(v) for v in by_fam.values())])
    print(table(["synthetic F1 by family", *by_fam], fam_rows))

    # The same defaults serve both data sets; these rows show they are not a knife edge.
    sens_rows = []
    for label, kwargs in SENSITIVITY:
        method = ours(**kwargs)
        syn, tc = score(method, labelled), score(method, tcpd)
        fa_all = sum(1 for s in noise + extra if run_method(method, s))
        sens_rows.append([label, mean(syn.f1), f"{fa_all} / {len(noise) + len(extra)}",
                          mean(tc.f1), mean(tc.cover)])  # fmt: skip
    print()
    print(table(["sensitivity", "synthetic F1", "false alarms", "TCPD F1", "TCPD cover"],
                sens_rows))  # fmt: skip

    default = ours()
    found = sum(
        1 for s in floor if any(abs(c - s.annotations[0][0]) <= MARGIN for c in default(s.dims[0]))
    )
    print(f"\nbelow the floor (steps of 1-2 noise CVs): {found} / {len(floor)} found (not scored)")

    if args.per_series and tcpd:
        tc = results["perfsleuth (defaults)"][1]
        print()
        print(table(["TCPD series", "F1", "change points"],
                    [[k, f"{f:.3f}", v] for k, (f, v) in tc.by_name.items()]))  # fmt: skip

    syn, tc, fa = results["perfsleuth (defaults)"]
    print()
    print(f"synthetic F1 >= 0.9: {verdict(statistics.fmean(syn.f1) >= 0.9)}")
    print(f"0 false alarms on {len(noise)} noise-only series: {verdict(fa == 0)}")
    tcpd_ok = statistics.fmean(tc.f1) > PUBLISHED_BINSEG_F1 if tc.f1 else None
    print(f"TCPD F1 (defaults) > binseg's published {PUBLISHED_BINSEG_F1}: {verdict(tcpd_ok)}")
    overall = time.perf_counter() - t_all
    print(f"runtime: {total:.1f} s for the table's methods, {overall:.1f} s in all")


if __name__ == "__main__":
    run_main(main)

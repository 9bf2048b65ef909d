"""Labelled synthetic nightly series for the change-point benchmark (changepoint_eval.py).

Used by `benchmarks/changepoint_eval.py`; nothing in perfsleuth imports it. Every series
is drawn from a seeded `random.Random`, so a seed names one fixed data set.

What a series looks like: one value a night for 30-150 nights, either a latency (ms,
higher is worse) or a throughput (req/s, lower is worse), around a level that is
multiplied by lognormal noise with a coefficient of variation (CV) of 2-6% and a little
night-to-night persistence (AR(1) in log space, phi 0-0.3: a shared CI host has good
and bad days). About 3% of nights are heavy-tail nights (a noisy neighbour: latency
x1.2-3, throughput /1.2-3), and some series carry deliberate isolated outlier nights.
Neither is a change point.

Families (`family` of a `Labelled`):

- `step`: one step of 5-40% (log-uniform, either direction) at a random night with at
  least 6 nights before and 5 after.
- `two_steps`: two such steps at least 10 nights apart.
- `ramp`: a creep of 2-5% a night (compounded) over 5-15 nights, then flat again.
- `ramp_to_end`: a creep that is still going on the last night (at least 5 nights of it).
- `step_ramp`: one step and one ramp in the same series, at least 10 nights apart.
- `outliers`: no change; 1-3 isolated outlier nights (x1.5-3) on top of the noise.
- `noise` (the separate `noise_only` set): 100 series of 30-60 nights, no change.

How changes are labelled: a step at its first night on the new level (the detector's
`index` convention). A ramp at its first night off the old level (the ramp's start),
not its middle or end: the start is the night the regression was introduced, which is
the commit range a user has to bisect, and a ramp spans 5-15 nights, so a label at its
middle or end would be up to 14 nights (three F1 margins) from the commit that caused it.
A detector that only reports "somewhere in the ramp" is therefore scored as a miss when
it is more than 5 nights from the start; that is deliberate.

Detectability floor: a step (or a ramp's total change) is drawn again until it is at
least twice the noise CV. A 5% step in 6% noise is not visible in two months of nightly
values (its t statistic with 5 nights after it is ~1.7); finding it is the job of a
per-run comparison with thousands of samples, not of the nightly history. The
`below_floor` set holds such steps (1-2x the CV) and is reported apart, not in the F1.

Run as a script, it prints what a seed's sets hold (`--list`: every series):

    python benchmarks/changepoint_data.py [--seed N] [--list]
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
from dataclasses import dataclass

DEFAULT_SEED = 20_251_125

HEAVY_NIGHT_P = 0.03
PHI_MAX = 0.3
CV_RANGE = (0.02, 0.06)
STEP_RANGE = (0.05, 0.40)
RAMP_RATE_RANGE = (0.02, 0.05)
RAMP_LEN_RANGE = (5, 15)
FLOOR_CVS = 2.0


@dataclass(frozen=True)
class Labelled:
    """One labelled series: `changes` are the true change points (0-based indices)."""

    name: str
    family: str
    values: list[float]
    changes: list[int]
    note: str


@dataclass(frozen=True)
class _Noise:
    base: float
    cv: float
    phi: float
    latency: bool  # False: a throughput (heavy nights and regressions go down)


def _noise_params(rng: random.Random) -> _Noise:
    latency = rng.random() < 0.6
    base = math.exp(rng.uniform(math.log(5.0), math.log(500.0)))
    if not latency:
        base = math.exp(rng.uniform(math.log(200.0), math.log(5000.0)))
    return _Noise(base, rng.uniform(*CV_RANGE), rng.uniform(0.0, PHI_MAX), latency)


def _render(rng: random.Random, noise: _Noise, levels: list[float]) -> list[float]:
    """Levels (multiples of the base) -> noisy nightly values."""
    sigma = math.sqrt(math.log(1.0 + noise.cv**2))
    # The AR(1) innovation is scaled so the stationary log-noise sd stays `sigma`.
    innov = sigma * math.sqrt(1.0 - noise.phi**2)
    e = rng.gauss(0.0, sigma)
    out = []
    for level in levels:
        e = noise.phi * e + rng.gauss(0.0, innov)
        v = noise.base * level * math.exp(e - sigma**2 / 2.0)
        if rng.random() < HEAVY_NIGHT_P:
            factor = min(3.0, 1.2 + rng.expovariate(1.0 / 0.3))
            v = v * factor if noise.latency else v / factor
        out.append(v)
    return out


def _step_size(rng: random.Random, cv: float, lo_cvs: float = FLOOR_CVS) -> float:
    """A signed relative step of 5-40% that is at least `lo_cvs` noise CVs."""
    lo, hi = STEP_RANGE
    while True:
        size = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        if size >= lo_cvs * cv:
            return size if rng.random() < 0.5 else -size / (1.0 + size)


def _ramp(rng: random.Random, cv: float, max_len: int) -> tuple[float, int]:
    """A signed per-night rate and a length whose total change clears the floor."""
    while True:
        rate = rng.uniform(*RAMP_RATE_RANGE)
        length = rng.randint(RAMP_LEN_RANGE[0], min(RAMP_LEN_RANGE[1], max_len))
        if (1.0 + rate) ** length - 1.0 >= FLOOR_CVS * cv:
            return (rate if rng.random() < 0.5 else 1.0 / (1.0 + rate) - 1.0), length


def _apply_step(levels: list[float], at: int, size: float) -> None:
    for i in range(at, len(levels)):
        levels[i] *= 1.0 + size


def _apply_ramp(levels: list[float], start: int, rate: float, length: int) -> None:
    for i in range(start, len(levels)):
        levels[i] *= (1.0 + rate) ** min(i - start + 1, length)


def _step_series(rng: random.Random, name: str, n_steps: int) -> Labelled:
    noise = _noise_params(rng)
    n = rng.randint(30 + 30 * (n_steps - 1), 120 + 30 * (n_steps - 1))
    while True:
        ats = sorted(rng.randint(6, n - 5) for _ in range(n_steps))
        if all(b - a >= 10 for a, b in itertools.pairwise(ats)):
            break
    levels = [1.0] * n
    notes = []
    for at in ats:
        size = _step_size(rng, noise.cv)
        _apply_step(levels, at, size)
        notes.append(f"step {size:+.0%}@{at}")
    family = "step" if n_steps == 1 else "two_steps"
    note = f"{' '.join(notes)} cv {noise.cv:.1%} phi {noise.phi:.2f}"
    return Labelled(name, family, _render(rng, noise, levels), ats, note)


def _ramp_series(rng: random.Random, name: str, to_end: bool) -> Labelled:
    noise = _noise_params(rng)
    n = rng.randint(40, 120)
    if to_end:
        rate, length = _ramp(rng, noise.cv, RAMP_LEN_RANGE[1])
        start = n - length
        family = "ramp_to_end"
    else:
        rate, length = _ramp(rng, noise.cv, RAMP_LEN_RANGE[1])
        start = rng.randint(8, n - length - 6)
        family = "ramp"
    levels = [1.0] * n
    _apply_ramp(levels, start, rate, length)
    note = f"ramp {rate:+.1%}/night x{length}@{start} cv {noise.cv:.1%} phi {noise.phi:.2f}"
    return Labelled(name, family, _render(rng, noise, levels), [start], note)


def _step_ramp_series(rng: random.Random, name: str) -> Labelled:
    noise = _noise_params(rng)
    n = rng.randint(70, 150)
    rate, length = _ramp(rng, noise.cv, RAMP_LEN_RANGE[1])
    size = _step_size(rng, noise.cv)
    while True:
        start = rng.randint(8, n - length - 6)
        at = rng.randint(6, n - 5)
        if at < start - 10 or at > start + length + 10:
            break
    levels = [1.0] * n
    _apply_ramp(levels, start, rate, length)
    _apply_step(levels, at, size)
    note = (
        f"ramp {rate:+.1%}/night x{length}@{start} step {size:+.0%}@{at} "
        f"cv {noise.cv:.1%} phi {noise.phi:.2f}"
    )
    return Labelled(name, "step_ramp", _render(rng, noise, levels), sorted([start, at]), note)


def _outlier_series(rng: random.Random, name: str) -> Labelled:
    noise = _noise_params(rng)
    n = rng.randint(30, 120)
    values = _render(rng, noise, [1.0] * n)
    spots = rng.sample(range(n), rng.randint(1, 3))
    for i in spots:
        factor = rng.uniform(1.5, 3.0)
        values[i] = values[i] * factor if noise.latency else values[i] / factor
    note = f"outliers at {sorted(spots)} cv {noise.cv:.1%} phi {noise.phi:.2f}"
    return Labelled(name, "outliers", values, [], note)


def labelled_set(seed: int = DEFAULT_SEED) -> list[Labelled]:
    """The labelled synthetic set: 60 step, 30 two_steps, 40 ramp, 15 ramp_to_end,
    20 step_ramp and 30 outliers series (195 in all)."""
    rng = random.Random(seed)
    out: list[Labelled] = []
    out += [_step_series(rng, f"step-{k}", 1) for k in range(60)]
    out += [_step_series(rng, f"two_steps-{k}", 2) for k in range(30)]
    out += [_ramp_series(rng, f"ramp-{k}", False) for k in range(40)]
    out += [_ramp_series(rng, f"ramp_to_end-{k}", True) for k in range(15)]
    out += [_step_ramp_series(rng, f"step_ramp-{k}") for k in range(20)]
    out += [_outlier_series(rng, f"outliers-{k}") for k in range(30)]
    return out


def noise_only(seed: int = DEFAULT_SEED, count: int = 100) -> list[Labelled]:
    """`count` change-free series of 30-60 nights (a couple of months of nightly runs)."""
    rng = random.Random(seed + 1)
    out = []
    for k in range(count):
        noise = _noise_params(rng)
        n = rng.randint(30, 60)
        note = f"noise cv {noise.cv:.1%} phi {noise.phi:.2f}"
        out.append(Labelled(f"noise-{k}", "noise", _render(rng, noise, [1.0] * n), [], note))
    return out


def below_floor(seed: int = DEFAULT_SEED, count: int = 40) -> list[Labelled]:
    """Single steps of only 1-2 noise CVs: reported apart from the F1 (see the docstring)."""
    rng = random.Random(seed + 2)
    out = []
    for k in range(count):
        noise = _noise_params(rng)
        n = rng.randint(30, 120)
        at = rng.randint(6, n - 5)
        size = noise.cv * rng.uniform(1.0, 2.0)
        size = size if rng.random() < 0.5 else -size / (1.0 + size)
        levels = [1.0] * n
        _apply_step(levels, at, size)
        note = f"step {size:+.1%}@{at} cv {noise.cv:.1%} phi {noise.phi:.2f}"
        values = _render(rng, noise, levels)
        out.append(Labelled(f"below_floor-{k}", "below_floor", values, [at], note))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"[{DEFAULT_SEED}]")
    ap.add_argument("--list", action="store_true", help="one line per series")
    a = ap.parse_args(argv)
    for title, series in (
        ("labelled", labelled_set(a.seed)),
        ("noise_only", noise_only(a.seed)),
        ("below_floor", below_floor(a.seed)),
    ):
        families: dict[str, list[Labelled]] = {}
        for one in series:
            families.setdefault(one.family, []).append(one)
        print(f"{title}: {len(series)} series (seed {a.seed})")
        for family, members in families.items():
            nights = [len(m.values) for m in members]
            changes = sum(len(m.changes) for m in members)
            print(
                f"  {family:<12} {len(members):>4} series, {min(nights)}-{max(nights)} nights, "
                f"{changes} change points"
            )
            if a.list:
                for m in members:
                    print(f"    {m.name:<16} {len(m.values):>4} nights {m.changes} {m.note}")


if __name__ == "__main__":
    main()

"""Statistics behind `tracker.analysis.changepoints`: Student's t tail, robust scale, the
outlier clipper, and prefix sums that make every segment statistic O(1).

Used only by `tracker.analysis.changepoints` (and its tests). Pure Python on purpose:
numpy/scipy are not perfsleuth dependencies and `perfsleuth history` must import fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Median of a chi-square(1) variable: turns a median of squares into a variance, and
# 1.4826 (= 1 / Phi^-1(3/4)) turns a median absolute deviation into a Gaussian sigma.
MAD_TO_SIGMA = 1.482602218505602
_TINY = 1e-300


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    # The continued fraction converges fast only below the mean; use the symmetry above.
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + num / c
        c = c if abs(c) > _TINY else _TINY
        f *= c * d
        if abs(1.0 - c * d) < 1e-14:
            break
    return math.exp(log_front) * (f - 1.0) / a


def t_two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value of Student's t with `df` degrees of freedom."""
    if math.isnan(t) or df <= 0.0:
        return 1.0
    if math.isinf(t):
        return 0.0
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


def diff_sigma(x: Sequence[float]) -> float:
    """Noise sigma from consecutive differences: blind to level shifts and slow trends.

    The median absolute difference (Gaussian-consistent, / sqrt 2) ignores the few
    differences that straddle a change or an outlier. Quantised series (counts, many
    equal neighbours) can have a zero median; the mean absolute difference then stands in.
    """
    diffs = [abs(x[i] - x[i - 1]) for i in range(1, len(x))]
    if not diffs:
        return 0.0
    sigma = MAD_TO_SIGMA * median(diffs) / math.sqrt(2.0)
    if sigma <= 0.0:
        sigma = math.sqrt(math.pi / 2.0) * (sum(diffs) / len(diffs)) / math.sqrt(2.0)
    return sigma


def clip_outliers(
    x: Sequence[float], half_window: int, k: float, *, sharp_edges: bool = False
) -> list[float]:
    """Hampel-style clipping: a value more than k sigma from the median of its window
    (half_window values either side) is pulled back to that distance.

    A burst of up to `half_window` bad values in a window of 2*half_window+1 leaves the
    window median on the normal level, so the burst is clipped; a real shift lasting
    longer moves the median with it and survives. Values are clipped, not replaced by
    the median, so a value keeps its side of a large real step.

    Next to a large step the centred median sits between the two levels and clipping
    turns the step into a short slope. `sharp_edges` measures each value against the
    nearest of the centred, left-only and right-only window medians instead: a step's
    edge matches one side and stays as it is, an isolated outlier matches none and is
    clipped, but bursts longer than about half_window / 2 are no longer clipped.
    """
    sigma = diff_sigma(x)
    if sigma <= 0.0:
        return list(x)
    n = len(x)
    limit = k * sigma
    out = list(x)
    for i in range(n):
        lo, hi = max(0, i - half_window), min(n, i + half_window + 1)
        centre = median(x[lo:hi])
        if sharp_edges:
            sides = (centre, median(x[lo : i + 1]), median(x[i:hi]))
            centre = min(sides, key=lambda c: abs(x[i] - c))
        if x[i] > centre + limit:
            out[i] = centre + limit
        elif x[i] < centre - limit:
            out[i] = centre - limit
    return out


class PrefixSums:
    """Cumulative sums of x, x^2, x*i and x_i*x_(i-1): any segment's mean, sum of squared
    deviations, lag-1 autocovariance and linear-ramp fit in O(1)."""

    def __init__(self, x: Sequence[float]) -> None:
        s, q, si, p = [0.0], [0.0], [0.0], [0.0, 0.0]
        for i, v in enumerate(x):
            s.append(s[-1] + v)
            q.append(q[-1] + v * v)
            si.append(si[-1] + i * v)
            if i >= 1:
                p.append(p[-1] + v * x[i - 1])
        self.s, self.q, self.si, self.p = s, q, si, p
        self.n = len(x)

    def total(self, a: int, b: int) -> float:
        return self.s[b] - self.s[a]

    def mean(self, a: int, b: int) -> float:
        return (self.s[b] - self.s[a]) / (b - a)

    def sse(self, a: int, b: int) -> float:
        """Sum of squared deviations from the segment mean over [a, b)."""
        tot = self.s[b] - self.s[a]
        return max(0.0, self.q[b] - self.q[a] - tot * tot / (b - a))

    def lag1(self, a: int, b: int) -> float:
        """Sum over [a, b) of (x_i - m)(x_(i-1) - m), m the segment mean."""
        if b - a < 2:
            return 0.0
        m = self.mean(a, b)
        cross = self.p[b] - self.p[a + 1]
        right = self.s[b] - self.s[a + 1]  # x_i for i in a+1..b-1
        left = self.s[b - 1] - self.s[a]  # x_(i-1) for the same i
        return cross - m * (right + left) + (b - a - 1) * m * m

    def ramp_fit(self, a: int, u: int, w: int, b: int) -> tuple[float, float, float]:
        """(SSE, L1, L2) over [a, b) of the least-squares "flat, linear ramp, flat" fit:
        level L1 on [a, u), L1 -> L2 in equal steps over the ramp's values [u, w), L2 on
        [w, b) (with w == b the ramp is still going at the end). w == u is a plain step.

        Each value is modelled as L1*(1-g) + L2*g with g = 0, (i - u + 1) / (w - u + 1)
        or 1, so L1 and L2 solve 2x2 normal equations built from the prefix sums.
        """
        s, si = self.s, self.si
        m = w - u
        a11, a22, a12 = float(u - a), float(b - w), 0.0
        r1, r2 = s[u] - s[a], s[b] - s[w]
        if m > 0:
            k = m + 1.0
            # In the ramp g = j / k for j = 1..m, with j = i - (u - 1).
            sum_g = m * (m + 1) / 2.0 / k
            sum_gg = m * (m + 1) * (2 * m + 1) / 6.0 / (k * k)
            sum_x = s[w] - s[u]
            sum_gx = (si[w] - si[u] - (u - 1) * sum_x) / k
            a11 += m - 2.0 * sum_g + sum_gg
            a22 += sum_gg
            a12 += sum_g - sum_gg
            r1 += sum_x - sum_gx
            r2 += sum_gx
        det = a11 * a22 - a12 * a12
        if det <= 1e-12:
            mean = self.mean(a, b)
            return self.sse(a, b), mean, mean
        level1 = (r1 * a22 - r2 * a12) / det
        level2 = (a11 * r2 - a12 * r1) / det
        return max(0.0, self.q[b] - self.q[a] - (level1 * r1 + level2 * r2)), level1, level2

"""Analysis: computation over plain records (tracker.records), with no database, screen
or command line.

- Inside one run: `detect` flags degraded intervals against the run's steady state,
  `attribute` and `causes` name their likely cause with evidence.
- Across runs: `run_metrics` estimates each comparable metric with its standard error,
  `compare` judges a run against a baseline metric by metric, `changepoints` finds level
  shifts in a scenario's nightly series.

Names are imported from their modules on first use, so `import tracker.analysis.compare`
loads only what a comparison needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tracker._lazy import lazy_exports

if TYPE_CHECKING:
    from tracker.analysis.attribute import ProbeSeries, attribute_run, headline
    from tracker.analysis.changepoints import ChangePoint, detect
    from tracker.analysis.compare import Comparison, Options, RunSide, compare_runs
    from tracker.analysis.detect import Degradation, OnlineDetector
    from tracker.analysis.run_metrics import Estimate, load_estimates, probe_estimates

_HOMES = {
    "ProbeSeries": "attribute",
    "attribute_run": "attribute",
    "headline": "attribute",
    "ChangePoint": "changepoints",
    "detect": "changepoints",
    "Comparison": "compare",
    "Options": "compare",
    "RunSide": "compare",
    "compare_runs": "compare",
    "Degradation": "detect",
    "OnlineDetector": "detect",
    "Estimate": "run_metrics",
    "load_estimates": "run_metrics",
    "probe_estimates": "run_metrics",
}
__all__ = [
    "ChangePoint",
    "Comparison",
    "Degradation",
    "Estimate",
    "OnlineDetector",
    "Options",
    "ProbeSeries",
    "RunSide",
    "attribute_run",
    "compare_runs",
    "detect",
    "headline",
    "load_estimates",
    "probe_estimates",
]

__getattr__ = lazy_exports(__name__, _HOMES)

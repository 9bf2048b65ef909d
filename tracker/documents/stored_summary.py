"""The summary stored with a finished run: what `history` lists and `compare` weighs
without reading the run's windows again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracker.analysis.run_metrics import load_estimates, probe_estimates

if TYPE_CHECKING:
    from tracker.store import Store


def estimates_for_summary(
    store: Store, run_id: int, document: dict[str, Any]
) -> dict[str, list[float]]:
    """The comparison estimates of a run, as stored in its summary at the end of the run."""
    estimates = load_estimates(document, store.iter_windows(run_id))
    estimates.update(probe_estimates(document, store.iter_samples(run_id)))
    return {name: e.to_json() for name, e in estimates.items()}


def summary_for_history(store: Store, run_id: int, doc: dict[str, Any]) -> dict[str, Any]:
    """Headline figures, and each comparable metric with its standard error
    (`tracker.regressions.baseline` reads them back)."""
    summary = {
        key: doc.get(key)
        for key in (
            "requests",
            "throughput_rps",
            "latency_ms",
            "llm",
            "driver",
            "measured_s",
            "slo",
        )
    }
    summary["abandoned"] = doc["requests"].get("abandoned", 0)
    # What the run knew of each host (an agent's URL, version, clock, gaps): kept here.
    summary["probes_hosts"] = [
        {k: v for k, v in host.items() if k not in ("probes", "samples")}
        for host in doc.get("probes_hosts") or []
    ]
    summary["metrics"] = estimates_for_summary(store, run_id, doc)
    return summary

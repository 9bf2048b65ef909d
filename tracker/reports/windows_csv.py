"""`perfsleuth export --format csv`: a run's per-second windows as a CSV table.

One row per window and histogram, percentiles in milliseconds, with the window's counters
on every row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from tracker.records.window import (
    PERCENTILES,
    Window,
)
from tracker.reports.windows import (
    WindowExport,
    check_exported,
    check_selection,
    metric_order,
    selected,
    summary_ms,
)

CSV_COLUMNS = (
    "window", "start_s", "duration_s", "warmup", "metric", "count",
    *(f"{name}_ms" for name, _ in PERCENTILES), "max_ms", "mean_ms",
    "sent", "completed", "ok", "errors", "dropped", "output_tokens",
)  # fmt: skip


def csv_table(
    windows: Iterable[Window],
    *,
    run_id: int,
    metrics: Sequence[str] = (),
    include_warmup: bool = False,
) -> WindowExport:
    """One CSV row per window and histogram (`CSV_COLUMNS`), times in milliseconds.

    Every window has a row for every exported histogram, with `count` 0 and empty
    percentiles where it recorded nothing, so a time series has no silent gaps. The
    window's counters repeat on each of its rows: filter on one metric before summing them.

    Raises:
        UsageError: no windows to export, or a `metrics` name the run does not have.
    """
    seen: set[str] = set()
    # Only numbers are kept between the two passes: a decoded window holds ~190 KB per
    # histogram, and the set of metrics (the rows of every window) is known at the end.
    kept: list[tuple[list[Any], dict[str, dict[str, float]]]] = []
    skipped = 0
    for w in windows:
        seen.update(w.histograms)
        if w.warmup and not include_warmup:
            skipped += 1
            continue
        head = [w.index, round(w.start_s, 3), round(w.duration_s, 3), int(w.warmup)]
        counters = [w.sent, w.completed, w.ok, w.errors, w.dropped, w.output_tokens]
        stats = {
            name: summary
            for name in selected(w.histograms, metrics)
            if (summary := summary_ms(w.histograms[name])) is not None
        }
        kept.append(([*head, *counters], stats))
    check_selection(metrics, seen, run_id)
    check_exported(len(kept), skipped, run_id, "csv")
    names = metric_order(metrics) if metrics else metric_order(seen)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    empty = [""] * (len(PERCENTILES) + 2)
    for fields, stats in kept:
        head, counters = fields[:4], fields[4:]
        for name in names:
            s = stats.get(name)
            if s is None:
                writer.writerow([*head, name, 0, *empty, *counters])
                continue
            values = [s[p] for p, _ in PERCENTILES]
            writer.writerow([*head, name, int(s["count"]), *values, s["max"], s["mean"], *counters])
    return WindowExport(
        text=out.getvalue(),
        windows=len(kept),
        histograms=len(kept) * len(names),
        metrics=tuple(names),
    )


def render(
    windows: Iterable[Window],
    *,
    run_id: int,
    started_at: datetime,
    scenario: str = "",
    metrics: Sequence[str] = (),
    include_warmup: bool = False,
) -> WindowExport:
    """`csv_table`, called as every window format is (the CSV has no header for the run's
    start or scenario)."""
    return csv_table(windows, run_id=run_id, metrics=metrics, include_warmup=include_warmup)

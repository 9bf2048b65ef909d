"""`perfsleuth export --format hdr`: a run's per-second windows as an HdrHistogram
interval log.

The `.hlog` text of HdrHistogram's `HistogramLogWriter` (format 1.3), one interval line per
window and histogram, tagged with the histogram's name, so HdrHistogram's
HistogramLogProcessor, hdrh's HistogramLogReader and other readers of the format can merge
any time range of the run exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from tracker.records.window import (
    Window,
)
from tracker.reports.windows import (
    WindowExport,
    check_exported,
    check_selection,
    hdr_of,
    metric_order,
    selected,
)

HLOG_FORMAT_VERSION = "1.3"


HLOG_LEGEND = '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'


# HistogramLogWriter refuses tags with commas, spaces or line breaks, and the Java reader
# splits its tokens on exactly those; tabs are mapped too, since no reader promises them.
_TAG_ILLEGAL = re.compile(r"[,\s]")


def hlog_tag(name: str) -> str:
    """The interval-log tag of a histogram: its name, with commas and spaces mapped to `_`.

    `|` (per-request keys such as `latency|chat`) is legal in a tag and kept, so tags and
    `--metric` names are the same words (quote them in a shell).
    """
    return _TAG_ILLEGAL.sub("_", name)


def hdr_log(
    windows: Iterable[Window],
    *,
    run_id: int,
    started_at: datetime,
    scenario: str = "",
    metrics: Sequence[str] = (),
    include_warmup: bool = False,
) -> WindowExport:
    """The run's window histograms as an HdrHistogram interval log (`.hlog`).

    Timestamps are seconds since the load started (a window's `start_s`), made absolute by
    `#[BaseTime]`, the time the run was stored (the load starts 0.2 s or more after it).
    Values are microseconds, as recorded; `Interval_Max` is in milliseconds.

    Raises:
        UsageError: no windows to export, or a `metrics` name the run does not have.
    """
    tags: dict[str, str] = {}
    seen: set[str] = set()
    body: list[str] = []
    exported = skipped = lines = 0
    for w in windows:
        seen.update(w.histograms)
        if w.warmup and not include_warmup:
            skipped += 1
            continue
        exported += 1
        if w.warmup:
            body.append(
                f"#[warm-up window {w.index} ({w.start_s:.3f} s): perfsleuth's summary "
                "leaves it out]"
            )
        for name in selected(w.histograms, metrics):
            hist = w.histograms[name]
            if not hist.count:
                continue
            tag = tags.get(name)
            if tag is None:
                tag = tags[name] = _unique_tag(name, tags.values())
            body.append(
                f"Tag={tag},{w.start_s:.3f},{w.duration_s:.3f},"
                f"{hdr_of(hist).get_max_value() / 1000.0:.3f},{hist.encode()}"
            )
            lines += 1
    check_selection(metrics, seen, run_id)
    check_exported(exported, skipped, run_id, "hdr")
    title = " ".join(scenario.split())  # a line break would end the comment line
    epoch = started_at.timestamp()
    iso = started_at.astimezone(UTC).isoformat(timespec="milliseconds")
    header = [
        f"#[perfsleuth run {run_id}{f' ({title})' if title else ''}: one interval per "
        "second of load and histogram, Tag = the histogram's name]",
        f"#[Histogram log format version {HLOG_FORMAT_VERSION}]",
        f"#[StartTime: {epoch:.3f} (seconds since epoch), {iso}]",
        f"#[BaseTime: {epoch:.3f} (seconds since epoch)]",
        "#[Values are microseconds (1 us to 1 h, 3 significant digits); Interval_Max is "
        "milliseconds. HistogramLogProcessor: -tag latency -outputValueUnitRatio 1000 "
        "prints milliseconds]",
        "#[Timestamps are seconds since the load started; BaseTime is when the run was "
        "stored, shortly before]",
    ]
    if skipped:
        header.append(
            f"#[{skipped} warm-up windows left out, as perfsleuth's summary does "
            "(export --include-warmup keeps them)]"
        )
    header.append(HLOG_LEGEND)
    return WindowExport(
        text="\n".join([*header, *body]) + "\n",
        windows=exported,
        histograms=lines,
        metrics=tuple(metric_order(tags)),
    )


def _unique_tag(name: str, taken: Iterable[str]) -> str:
    # Two names that map to one tag (`a b` and `a_b`) would be merged by every reader.
    tag = hlog_tag(name)
    used = set(taken)
    candidate, n = tag, 2
    while candidate in used:
        candidate, n = f"{tag}~{n}", n + 1
    return candidate


render = hdr_log

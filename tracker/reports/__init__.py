"""Output formats: one module per format, and the registry that lists them.

A format renders one kind of input (`Kind`): a run document, a compare document, a run's
per-second windows, or its stack samples. Each module has a `render` function with the
signature of its kind (`RENDER_SIGNATURES`). The CLI takes its `--format` choices from
`names()`, and tests/unit/test_reports.py renders every registered format against a
reference output. Adding a format: one module, one line in `FORMATS`, one reference file.

Importing this package stays cheap: a format's module is imported when it is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["run", "compare", "windows", "stacks"]

#: What `render` takes and returns, per kind.
RENDER_SIGNATURES: dict[Kind, str] = {
    "run": "render(doc: dict) -> str  (the run JSON document)",
    "compare": "render(doc: dict) -> str  (the compare JSON document)",
    "windows": "render(windows, *, run_id, started_at, scenario, metrics, include_warmup)"
    " -> WindowExport",
    "stacks": "render(stacks: Mapping[str, int], *, run_id: int) -> str",
}


@dataclass(frozen=True)
class ReportFormat:
    kind: Kind
    name: str  # what --format says
    module: str
    description: str

    def renderer(self) -> Callable[..., Any]:
        render: Callable[..., Any] = importlib.import_module(self.module).render
        return render


FORMATS: tuple[ReportFormat, ...] = (
    ReportFormat("run", "text", "tracker.reports.run_text", "the summary a person reads"),
    ReportFormat("run", "json", "tracker.reports.run_json", "the run JSON document"),
    ReportFormat("compare", "text", "tracker.reports.compare_text", "terminal text"),
    ReportFormat("compare", "md", "tracker.reports.compare_markdown", "Markdown (PR comment)"),
    ReportFormat("compare", "json", "tracker.reports.compare_json", "the compare JSON document"),
    ReportFormat("compare", "junit", "tracker.reports.compare_junit", "JUnit XML"),
    ReportFormat("stacks", "speedscope", "tracker.reports.stacks_speedscope", "speedscope JSON"),
    ReportFormat("stacks", "collapsed", "tracker.reports.stacks_collapsed", "collapsed stacks"),
    ReportFormat("windows", "hdr", "tracker.reports.windows_hdr", "HdrHistogram interval log"),
    ReportFormat("windows", "csv", "tracker.reports.windows_csv", "CSV, per window and metric"),
)  # fmt: skip


def names(*kinds: Kind) -> tuple[str, ...]:
    """The format names of these kinds, in registry order (the CLI's --format choices)."""
    return tuple(f.name for f in FORMATS if f.kind in kinds)


def get(kind: Kind, name: str) -> ReportFormat:
    for fmt in FORMATS:
        if fmt.kind == kind and fmt.name == name:
            return fmt
    raise KeyError(f"no {kind} format {name!r}; known: {', '.join(names(kind))}")


def kind_of(name: str, *kinds: Kind) -> Kind:
    """The kind, among `kinds`, that has a format called `name` (`export` serves two)."""
    for fmt in FORMATS:
        if fmt.kind in kinds and fmt.name == name:
            return fmt.kind
    raise KeyError(name)


def render(kind: Kind, name: str, *args: Any, **kwargs: Any) -> Any:
    return get(kind, name).renderer()(*args, **kwargs)


__all__ = [
    "FORMATS",
    "RENDER_SIGNATURES",
    "Kind",
    "ReportFormat",
    "get",
    "kind_of",
    "names",
    "render",
]

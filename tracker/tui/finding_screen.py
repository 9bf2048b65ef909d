"""A finding opened from the live screen's findings panel: what moved, the ranked causes
with their scores, every evidence line and the advice.

Used by `tracker.tui.live`. The findings a run stores at its end are attributed over the
whole run; the one shown here is the live attribution so far (it says so).
"""

from __future__ import annotations

from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tracker.analysis.attribute import headline
from tracker.records import FindingRecord


def finding_text(f: FindingRecord, *, live: bool) -> str:
    """The finding as Rich markup, most important first."""
    lines = [f"[b]{escape(headline(f))}[/b]", ""]
    flagged = f", flagged at {f.flagged_at_s:.0f}s" if f.flagged_at_s is not None else ""
    lines.append(f"from {f.start_s:.0f}s to {f.end_s:.0f}s{flagged}")
    if f.causes:
        ranked = ", ".join(f"{c['cause']} {float(c['score']):.2f}" for c in f.causes)
        lines.append(f"causes ranked: {escape(ranked)}")
    lines += ["", "[b]evidence[/b]"]
    lines += [f"  • {escape(line)}" for line in f.evidence] or ["  (none yet)"]
    if f.advice:
        lines += ["", "[b]next step[/b]", f"  {escape(f.advice)}"]
    if live:
        lines += [
            "",
            f"[dim]Attributed on the seconds up to {f.end_s:.0f}s (again every 5 s while it "
            "lasts, and when it ends); the run attributes it once more, over the whole run, "
            "when it ends (`perfsleuth show latest`).[/dim]",
        ]
    return "\n".join(lines)


class FindingScreen(ModalScreen[None]):
    """One finding in full; escape or enter closes it."""

    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("enter", "dismiss", "Close", show=False),
        Binding("o", "dismiss", "Close", show=False),
    ]

    def __init__(self, finding: FindingRecord, *, live: bool = True) -> None:
        super().__init__()
        self.finding = finding
        self.live = live

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="finding-box"):
            yield Static(finding_text(self.finding, live=self.live), id="finding-text")

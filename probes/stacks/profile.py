"""Collapsed-stack profiles: the shape stack samples are kept in, and what is read from them.

Used by ``probes.stacks.probe`` (one profile per window) and by the tracker's store,
reports and exports (speedscope, collapsed stacks). A profile maps a collapsed stack --
frame labels from the root to the leaf joined by ``;``, the format of flamegraph.pl and
``py-spy record --format raw`` -- to the number of samples that saw it.
A frame label is ``name (file:line)``, or ``name (file)`` / ``name`` when less is known.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

CollapsedStacks = dict[str, int]
"""Collapsed stack ("root;...;leaf") -> samples."""

FRAME_SEP = ";"

_LABEL = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame label taken apart.

    Attributes:
        name: Function name, e.g. ``Handler.do_GET`` or ``gc_collect_main``.
        file: Short file name or native library, "" when unknown.
        line: Line number, 0 when unknown (native frames, ``--nolineno``).
    """

    name: str
    file: str = ""
    line: int = 0

    @property
    def function(self) -> str:
        """The frame without its line: ``name (file)``, the key top functions group by."""
        return f"{self.name} ({self.file})" if self.file else self.name


@dataclass(frozen=True, slots=True)
class FunctionTime:
    """Time attributed to one function over a profile.

    Attributes:
        function: ``name (file)``.
        self_samples: Samples with the function as the leaf (running its own code).
        total_samples: Samples with the function anywhere on the stack (counted once
            per sample, so recursion does not inflate it).
        self_pct: ``self_samples`` as a share of all samples, 0-100.
        total_pct: ``total_samples`` as a share of all samples, 0-100.
    """

    function: str
    self_samples: int
    total_samples: int
    self_pct: float
    total_pct: float


def frame_label(name: str, file: str = "", line: int = 0) -> str:
    """Build a frame label; ``;`` (the frame separator) is replaced so stacks stay parseable."""
    label = f"{name} ({file}:{line})" if file and line else f"{name} ({file})" if file else name
    return label.replace(FRAME_SEP, ",")


def parse_frame(label: str) -> Frame:
    """Take a frame label apart; a label without ``(file)`` is all name."""
    match = _LABEL.match(label)
    if match is None:
        return Frame(label)
    line = match.group("line")
    return Frame(match.group("name"), match.group("file"), int(line) if line else 0)


def split_stack(stack: str) -> list[str]:
    """Return the frame labels of a collapsed stack, root first."""
    return stack.split(FRAME_SEP) if stack else []


def merge(profiles: Iterable[Mapping[str, int]]) -> CollapsedStacks:
    """Sum several profiles (e.g. the windows of a run) into one."""
    total: CollapsedStacks = {}
    for profile in profiles:
        for stack, count in profile.items():
            total[stack] = total.get(stack, 0) + count
    return total


def top_functions(
    stacks: Mapping[str, int], limit: int = 10, *, by: str = "self"
) -> list[FunctionTime]:
    """Rank functions by self or total samples.

    Args:
        stacks: A profile.
        limit: How many functions to return.
        by: ``"self"`` (own code) or ``"total"`` (own code plus callees).

    Returns:
        The top ``limit`` functions, largest first; ties keep the function name order.

    Raises:
        ValueError: ``by`` is neither "self" nor "total".
    """
    if by not in ("self", "total"):
        raise ValueError(f"by must be 'self' or 'total', got {by!r}")
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for stack, count in stacks.items():
        functions = [parse_frame(label).function for label in split_stack(stack)]
        if not functions or count <= 0:
            continue
        samples += count
        own[functions[-1]] = own.get(functions[-1], 0) + count
        for function in set(functions):
            total[function] = total.get(function, 0) + count
    if samples == 0:
        return []
    ranking = own if by == "self" else total
    names = sorted(total, key=lambda f: (-ranking.get(f, 0), f))[:limit]
    return [
        FunctionTime(
            function=f,
            self_samples=own.get(f, 0),
            total_samples=total[f],
            self_pct=100.0 * own.get(f, 0) / samples,
            total_pct=100.0 * total[f] / samples,
        )
        for f in names
    ]


def parse_collapsed(text: str) -> CollapsedStacks:
    """Read collapsed stacks (``stack count`` per line), e.g. ``py-spy record --format raw``.

    Lines that do not end in a count are skipped; repeated stacks are summed.
    """
    stacks: CollapsedStacks = {}
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks[stack] = stacks.get(stack, 0) + int(count)
    return stacks


def format_collapsed(stacks: Mapping[str, int]) -> str:
    """Write a profile as collapsed stacks, one ``stack count`` line each, heaviest first."""
    lines = [f"{s} {c}" for s, c in sorted(stacks.items(), key=lambda kv: (-kv[1], kv[0]))]
    return "".join(line + "\n" for line in lines)

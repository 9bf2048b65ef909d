"""`perfsleuth export --format collapsed`: a run's merged stack samples as collapsed stacks,
one `root;caller;callee count` line each (flamegraph.pl, speedscope and inferno read it)."""

from __future__ import annotations

from collections.abc import Mapping

from probes.stacks.profile import format_collapsed


def render(stacks: Mapping[str, int], *, run_id: int) -> str:
    return format_collapsed(stacks)

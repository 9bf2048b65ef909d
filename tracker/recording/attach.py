"""`perfsleuth attach`: probes only, no load — watch a running server and store what it did.

Used by `perfsleuth attach` (`tracker.cli.attach`). The run is stored like any other
(load model "none", no windows), so `show`, `history` and later comparisons treat it the
same way; its JSON has the run document's shape with the load sections empty.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from probes import Probe, Target
from probes.stacks.profile import FunctionTime
from tracker.recording.agent_feed import AgentLink, start_feeds, target_died
from tracker.recording.control import RunControl
from tracker.recording.environment import fingerprint
from tracker.recording.recording import Recording, RunIdentity, RunResult
from tracker.records import DRIVER_SOURCE, SampleRecord
from tracker.store import Store


class AttachView(Protocol):
    """The live screen's side of an attach (`tracker.tui.screen_link.ScreenFeed`)."""

    def probes(self, t_s: float, probes: dict[str, float]) -> None: ...

    def note(self, message: str) -> None: ...

    def stacks(self, end_s: float, duration_s: float, top: list[FunctionTime]) -> None: ...


class AttachProgress:
    """One plain line per second: what the probes see (the TUI replaces it later)."""

    def __init__(self, total_s: float | None) -> None:
        self._total = total_s
        self._next = 1.0

    def sample(self, t_s: float, metrics: dict[str, float]) -> str | None:
        if t_s < self._next:
            return None
        self._next = float(int(t_s) + 1)
        total = f"/{self._total:.0f}s" if self._total else "s"
        parts = [f"[{t_s:4.0f}{total}]"]
        for name, label, unit in (
            ("cpu.process_pct", "cpu", "%"),
            ("cpu.ctx_switches_involuntary_per_s", "invcs", "/s"),
            ("cpu.run_delay_ms_per_s", "run-delay", "ms/s"),
            ("mem.rss_mb", "rss", "MB"),
            ("gc.pause_ms_per_s", "gc", "ms/s"),
            ("disk.write_iops", "wr", "iops"),
        ):
            if name in metrics:
                parts.append(f"{label} {metrics[name]:.0f}{unit}")
        return " ".join(parts)


def execute_attach(
    target: Target | None,
    store: Store,
    *,
    duration_s: float | None,
    interval_s: float,
    tag: str | None = None,
    echo: bool = True,
    extra_probes: Sequence[Probe] = (),
    view: AttachView | None = None,
    control: RunControl | None = None,
    agents: Sequence[AgentLink] = (),
) -> RunResult:
    """Sample `target` for `duration_s` (until Ctrl-C when None) and store the run.

    Ctrl-C / SIGTERM (as KeyboardInterrupt), or a stop request through `control` (the live
    screen's `q`), end it early: `interrupted` with a duration, `completed` without one
    (that is how an open-ended attach ends). The target dying ends nothing — host metrics
    go on — but the run is then `failed` with the reason, as `run` does. With `view`, the
    readings go to the live screen instead of plain lines. With `agents` and no `target`
    the server is watched from its own host (the first agent's); the local probes then
    watch this host.
    """
    import click

    if target is not None:
        described, pid, where = target.label, target.pid, None
    else:
        hello = agents[0].hello
        described = f"{hello.target or 'the host'} on {hello.hostname}"
        pid, where = None, agents[0].url
    identity = RunIdentity(
        scenario=f"attach {described}",
        scenario_key=f"attach:{described}",
        scenario_json={
            "attach": {"pid": pid, "name": described, "agent": where},
            "probe_interval_s": interval_s,
            "duration_s": duration_s,
        },
        environment=fingerprint(),
        tag=tag,
        load_model="none",
    )
    progress = AttachProgress(duration_s)

    def on_sample(sample: SampleRecord) -> None:
        if view is not None:
            view.probes(sample.t_s, sample.metrics)
            if sample.note:
                view.note(sample.note)
            return
        line = progress.sample(sample.t_s, sample.metrics)
        if echo and line is not None:
            click.echo(line, err=True)
        if echo and sample.note:
            click.echo(f"  » {sample.note}", err=True)

    done = threading.Event()
    with Recording(store, identity, target=target, probes=extra_probes, view=view) as recording:
        if control is not None:
            control.bind(done.set)
            recording.before_stop(lambda: control.bind(None))
        if agents:
            recording.local_source = DRIVER_SOURCE
        recording.start_sampling(interval_s, on_sample)
        feeds = start_feeds(recording, agents, view.note if view is not None else _echo_note)
        try:
            stopped = done.wait(duration_s)  # Ctrl-C / SIGTERM interrupt this wait
        except KeyboardInterrupt:
            if duration_s is not None:
                raise
            # Without --duration, Ctrl-C is how an attach session ends: not an interruption.
            stopped = False
        # Stopped from the live screen: early when a duration was asked for.
        recording.settle("interrupted" if stopped and duration_s is not None else "completed")
        if recording.status == "completed":
            recording.fail(target_died(feeds))
    return recording.result


def _echo_note(message: str) -> None:
    import click

    click.echo(f"  » {message}", err=True)

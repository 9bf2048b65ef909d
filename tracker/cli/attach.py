"""`perfsleuth attach`: probe a running process tree without load, and store what it did."""

from __future__ import annotations

import sys

import click

from tracker.cli.options import (
    DURATION,
    agent_options,
    connect_agents,
    db_option,
    gc_log_option,
    json_option,
    no_tui_option,
    refresh_option,
    tag_option,
)
from tracker.cli.output import check_json_path, exit_interrupted, write_json
from tracker.cli.terminal import wants_tui
from tracker.errors import EXIT_RUN_FAILED, UsageError
from tracker.scenario.flags import MIN_PROBE_INTERVAL_S


@click.command("attach")
@click.argument("pid", type=int, required=False)
@click.option("--name", default=None, metavar="NAME", help="Attach to the process matching NAME.")
@gc_log_option
@click.option("--duration", type=DURATION, default=None, help="How long to watch [until Ctrl-C].")
@click.option(
    "--probe-interval", type=DURATION, default="250ms", show_default=True, help="Sampling interval."
)
@agent_options
@no_tui_option
@refresh_option
@json_option
@tag_option
@db_option
def command(
    pid: int | None,
    name: str | None,
    agents: tuple[str, ...],
    agent_token_env: str | None,
    gc_log: str | None,
    duration: float | None,
    probe_interval: float,
    no_tui: bool,
    refresh: float,
    json_path: str | None,
    tag: str | None,
    db_url: str | None,
) -> None:
    """Probe a running process tree (PID or --name, or --agent URL on another host)
    without load, and store what it did."""
    attach(
        pid=pid,
        name=name,
        agents=agents,
        agent_token_env=agent_token_env,
        duration=duration,
        probe_interval=probe_interval,
        json_path=json_path,
        tag=tag,
        db_url=db_url,
        gc_log=gc_log,
        no_tui=no_tui,
        refresh_s=refresh,
    )


def attach(
    *,
    pid: int | None,
    name: str | None,
    duration: float | None,
    probe_interval: float,
    json_path: str | None,
    tag: str | None,
    db_url: str | None,
    gc_log: str | None = None,
    no_tui: bool = False,
    refresh_s: float = 1.0,
    agents: tuple[str, ...] = (),
    agent_token_env: str | None = None,
) -> None:
    """Probes only; exit codes as for `run`."""
    from probes import Probe, ProbeError, Target
    from probes.runtimes import attached_probes, close_probes
    from tracker.recording.attach import execute_attach
    from tracker.recording.recording import RunResult
    from tracker.reports.run_text import render_run
    from tracker.store import Store

    given = [x for x in (pid, name, agents or None) if x is not None]
    if len(given) != 1:
        raise UsageError(
            "give a PID, --name NAME or --agent URL (one of them), e.g. perfsleuth attach 4242"
        )
    if duration is not None and duration <= 0:
        raise UsageError(
            "--duration: must be positive, e.g. 30s (leave it out to stop with Ctrl-C)"
        )
    if probe_interval < MIN_PROBE_INTERVAL_S:
        raise UsageError(
            f"--probe-interval: must be at least {MIN_PROBE_INTERVAL_S * 1000:.0f}ms, e.g. 250ms"
        )
    check_json_path(json_path)
    links = connect_agents(agents, agent_token_env)
    if links and gc_log is not None:
        raise UsageError("--gc-log is read where the server runs: give it to `perfsleuth agent`")
    target = None
    extra: list[Probe] = []
    try:
        if not links:
            target = Target.from_pid(pid) if pid is not None else Target.from_name(name or "")
            extra = attached_probes(target, gc_log=gc_log, interval_s=probe_interval)
    except ProbeError as exc:
        raise UsageError(str(exc)) from None
    try:
        store = Store.open(db_url)

        def plain() -> RunResult:
            return execute_attach(
                target, store, duration_s=duration, interval_s=probe_interval, tag=tag,
                extra_probes=extra, agents=links,
            )  # fmt: skip

        if wants_tui(no_tui or json_path == "-", refresh_s):
            from tracker.tui.screen_link import run_live
            from tracker.tui.state import LiveState

            watched = (
                (f"attach {target.label}", f"pid {target.pid}")
                if target is not None
                else (f"attach {links[0].hello.hostname}", links[0].url)
            )
            state = LiveState(*watched, duration or 0.0, "probes only, no load")
            result = run_live(
                state,
                lambda feed, control: execute_attach(
                    target, store, duration_s=duration, interval_s=probe_interval, tag=tag,
                    extra_probes=extra, view=feed, control=control, agents=links,
                ),
                plain=plain, refresh_s=refresh_s,
            )  # fmt: skip
        else:
            result = plain()
    finally:
        close_probes(extra)
    click.echo(render_run(result.document), err=json_path == "-")
    if json_path:
        write_json(json_path, result.document)
    if result.status == "failed":
        sys.exit(EXIT_RUN_FAILED)
    if result.status == "interrupted" and duration is not None:
        click.echo(f"run {result.run_id} was interrupted; what ran is stored", err=True)
        exit_interrupted()

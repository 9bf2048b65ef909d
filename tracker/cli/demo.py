"""`perfsleuth demo`: the example LLM server, a streaming load, a fault switched on halfway,
and what changed (tracker.demo holds the server, the scenario and the report)."""

from __future__ import annotations

import shlex
import sys

import click

from tracker.cli.options import DURATION, db_option, json_option, no_tui_option, refresh_option
from tracker.cli.output import check_json_path, exit_interrupted, write_json
from tracker.cli.terminal import run_with_view, target_log, wants_tui
from tracker.errors import EXIT_RUN_FAILED, UsageError


@click.command("demo")
@click.option("--duration", type=DURATION, default="40s", show_default=True, help="Load duration.")
@click.option(
    "--fault",
    type=click.Choice(["none", "cpu", "gc", "io"]),
    default="cpu",
    show_default=True,
    help="Fault switched on in the example server halfway through.",
)
@click.option("--rate", type=float, default=4.0, show_default=True, help="Requests per second.")
@no_tui_option
@refresh_option
@json_option
@db_option
def command(
    duration: float,
    fault: str,
    rate: float,
    no_tui: bool,
    refresh: float,
    json_path: str | None,
    db_url: str | None,
) -> None:
    """Start the example LLM server, load it, inject a fault halfway, show what changed."""
    demo(
        duration=duration,
        fault=fault,
        rate=rate,
        json_path=json_path,
        db_url=db_url,
        no_tui=no_tui,
        refresh_s=refresh,
    )


def demo(
    *,
    duration: float,
    fault: str,
    rate: float,
    json_path: str | None,
    db_url: str | None,
    no_tui: bool = False,
    refresh_s: float = 1.0,
) -> None:
    """`perfsleuth demo`: example server, streaming load, a fault at half time, before/after."""
    from probes.runtimes import close_probes, stack_probes
    from tracker.demo import example_server, halves
    from tracker.recording.runner import TimedAction, execute_run
    from tracker.reports.run_text import render_run
    from tracker.store import Store

    if duration < 10:
        raise UsageError("--duration: the demo needs at least 10s (two halves of 5s)")
    if not rate > 0:
        raise UsageError(f"--rate: must be a positive number of requests per second, got {rate}")
    check_json_path(json_path)
    store = Store.open(db_url)
    port = example_server.free_port()
    tui = wants_tui(no_tui or json_path == "-", refresh_s)
    click.echo(f"starting the example LLM server on http://127.0.0.1:{port} ...", err=True)
    log = target_log(tui)
    try:
        launched = example_server.start_server(port, output=log)
    except BaseException:
        if log is not None:
            log.close()
        raise
    target = launched.target
    launched.probes.extend(stack_probes(target, launched=True))
    split = duration / 2
    scenario = example_server.demo_scenario(port, duration, rate)
    actions: list[TimedAction] = []
    if fault != "none":
        actions.append(example_server.fault_action(port, fault, split))
    click.echo(
        f"driving {rate:g} streaming completions/s for {duration:g}s"
        + (f"; fault '{fault}' switches on at {split:g}s" if fault != "none" else ""),
        err=True,
    )
    try:
        result = run_with_view(
            scenario,
            tui,
            lambda progress, control: execute_run(
                scenario, store, tag="demo", target=target, actions=actions,
                progress=progress, extra_probes=launched.probes, control=control,
            ),
            notes=[f"the example server's output goes to {log.name}"] if log else [],
            refresh_s=refresh_s,
        )  # fmt: skip
    finally:
        target.terminate()
        close_probes(launched.probes)
        if log is not None:
            log.close()
    click.echo(render_run(result.document), err=json_path == "-")
    labels = ("before fault", "fault on") if fault != "none" else ("first half", "second half")
    parts = halves.phases(
        store.iter_windows(result.run_id), store.samples(result.run_id), split, labels
    )
    label = f"fault '{fault}'" if fault != "none" else "no fault"
    click.echo("")
    if parts[-1].window.completed == 0:
        click.echo(f"the run stopped before its second half ({label} from {split:g}s)")
    else:
        click.echo(f"first half vs second half ({label} from {split:g}s):")
        click.echo(halves.render_phases(parts))
        change = halves.slowdown_pct(parts)
        if change is not None:
            click.echo(f"\nmedian latency changed by {change:+.0f}% in the second half ({label}).")
    click.echo("\n" + halves.verdict_line(fault, result.document.get("findings") or []))
    if json_path:
        write_json(json_path, result.document)
    click.echo(f"\nstored as run {result.run_id} in {store.location}; look again with:")
    db_flag = f" --db {shlex.quote(db_url)}" if db_url else ""
    click.echo(f"  perfsleuth show {result.run_id}{db_flag}")
    click.echo(f"  perfsleuth show {result.run_id} --json{db_flag}")
    if result.status == "interrupted":
        exit_interrupted()
    if result.status == "failed":
        sys.exit(EXIT_RUN_FAILED)

"""The `perfsleuth` command line (DESIGN.md §3): parse, call, print — nothing more.

Every PerfsleuthError becomes one line on stderr and its exit code; nothing prints a
traceback unless PERFSLEUTH_DEBUG=1.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from tracker.errors import EXIT_RUN_FAILED, PerfsleuthError, RunFailedError, UsageError
from tracker.units import parse_duration

F = TypeVar("F", bound=Callable[..., Any])


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """A click parameter for `500ms`, `10s`, `5m`, `1h`."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(value, what=param.name if param and param.name else "duration")
        except UsageError as exc:
            self.fail(str(exc).split(": ", 1)[-1], param, ctx)


DURATION = DurationType()


def db_option(func: F) -> F:
    return click.option(
        "--db",
        "db_url",
        metavar="URL",
        default=None,
        help="Database URL (default $PERFSLEUTH_DB or sqlite:///perfsleuth.db in the cwd).",
    )(func)


def _fail(message: str, code: int) -> None:
    click.echo(f"perfsleuth: error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="perfsleuth", prog_name="perfsleuth")
def cli() -> None:
    """Drive load at an HTTP service while watching the server; store, compare, explain."""


def _write_json(path: str, document: dict[str, Any]) -> None:
    text = json.dumps(document, indent=2, default=str)
    if path == "-":
        click.echo(text)
        return
    try:
        Path(path).write_text(text + "\n")
    except OSError as exc:
        raise UsageError(f"--json: cannot write {path}: {exc.strerror}") from None


@cli.command()
@click.option("--url", required=True, help="Target URL, e.g. http://127.0.0.1:8000/v1/completions.")
@click.option("--rate", type=float, default=None, help="Open model: requests per second.")
@click.option("--users", type=int, default=None, help="Closed model: concurrent users (default 1).")
@click.option("--duration", type=DURATION, default="10s", show_default=True, help="Load duration.")
@click.option(
    "--warmup", type=DURATION, default="0s", show_default=True, help="Excluded from the summary."
)
@click.option("--path", default=None, help="Request path (overrides the URL's path).")
@click.option("--method", default=None, help="HTTP method (default GET, or POST with --body).")
@click.option("--body", default=None, metavar="JSON", help="JSON request body.")
@click.option(
    "--stream", type=click.Choice(["sse"]), default=None, help="Read the response as SSE."
)
@click.option(
    "--timeout", type=DURATION, default="60s", show_default=True, help="Total deadline per request."
)
@click.option(
    "--attach", "attach_pid", type=int, default=None, metavar="PID", help="Probe this process tree."
)
@click.option(
    "--attach-name", default=None, metavar="NAME", help="Probe the process matching NAME."
)
@click.option(
    "--launch", default=None, metavar="CMD", help="Start CMD, probe it, stop it at the end."
)
@click.option("--probe-interval", type=DURATION, default="250ms", show_default=True)
@click.option(
    "--no-tui", is_flag=True, help="Plain progress lines (the default until the TUI lands)."
)
@click.option(
    "--json", "json_path", default=None, metavar="FILE", help="Write the run JSON (- for stdout)."
)
@click.option("--tag", default=None, help="Label the run, e.g. a build or branch name.")
@db_option
def run(
    url: str,
    rate: float | None,
    users: int | None,
    duration: float,
    warmup: float,
    path: str | None,
    method: str | None,
    body: str | None,
    stream: str | None,
    timeout: float,
    attach_pid: int | None,
    attach_name: str | None,
    launch: str | None,
    probe_interval: float,
    no_tui: bool,
    json_path: str | None,
    tag: str | None,
    db_url: str | None,
) -> None:
    """Drive load at --url (and probe a server process), store the run, print a summary."""
    from tracker.scenario import TargetSpec, build_scenario

    chosen = [x for x in (attach_pid, attach_name, launch) if x is not None]
    if len(chosen) > 1:
        raise UsageError("give at most one of --attach, --attach-name and --launch")
    target_spec = None
    if attach_pid is not None:
        target_spec = TargetSpec(pid=attach_pid)
    elif attach_name is not None:
        target_spec = TargetSpec(name=attach_name)
    elif launch is not None:
        argv = tuple(shlex.split(launch))
        if not argv:
            raise UsageError("--launch: empty command")
        target_spec = TargetSpec(launch=argv)
    if probe_interval <= 0:
        raise UsageError("--probe-interval: must be longer than 0s, e.g. 250ms")
    scenario = build_scenario(
        url=url,
        rate=rate,
        users=users,
        duration_s=duration,
        warmup_s=warmup,
        method=method,
        path=path,
        body=body,
        stream="sse" if stream == "sse" else None,
        timeout_s=timeout,
        target=target_spec,
        probe_interval_s=probe_interval,
    )
    _run_scenario(scenario, db_url=db_url, tag=tag, json_path=json_path)


def _run_scenario(
    scenario: Any, *, db_url: str | None, tag: str | None, json_path: str | None
) -> None:
    from probes import ProbeError, Target
    from tracker.progress import ProgressPrinter
    from tracker.report import render_run
    from tracker.runner import execute_run, wait_until_reachable
    from tracker.store import Store

    store = Store.open(db_url)
    target = None
    spec = scenario.target
    try:
        if spec is not None and spec.pid is not None:
            target = Target.from_pid(spec.pid)
        elif spec is not None and spec.name is not None:
            target = Target.from_name(spec.name)
        elif spec is not None and spec.launch is not None:
            target = Target.launch(list(spec.launch))
            wait_until_reachable(scenario.base_url, target, timeout_s=60.0)
    except ProbeError as exc:
        raise UsageError(str(exc)) from None
    try:
        result = execute_run(
            scenario,
            store,
            tag=tag,
            target=target,
            progress=ProgressPrinter(scenario.load.duration_s),
        )
    finally:
        if target is not None and target.owned:
            target.terminate()
    click.echo(render_run(result.document))
    if json_path:
        _write_json(json_path, result.document)
    if result.status == "failed":
        sys.exit(EXIT_RUN_FAILED)
    if result.status == "interrupted":
        click.echo(f"run {result.run_id} was interrupted; what ran is stored", err=True)
        sys.exit(130)


@cli.command()
@click.option("--duration", type=DURATION, default="40s", show_default=True, help="Load duration.")
@click.option(
    "--fault",
    type=click.Choice(["none", "cpu", "gc", "io"]),
    default="cpu",
    show_default=True,
    help="Fault switched on in the example server halfway through.",
)
@click.option("--rate", type=float, default=4.0, show_default=True, help="Requests per second.")
@click.option(
    "--no-tui", is_flag=True, help="Plain progress lines (the default until the TUI lands)."
)
@click.option(
    "--json", "json_path", default=None, metavar="FILE", help="Write the run JSON (- for stdout)."
)
@db_option
def demo(
    duration: float,
    fault: str,
    rate: float,
    no_tui: bool,
    json_path: str | None,
    db_url: str | None,
) -> None:
    """Start the example LLM server, load it, inject a fault halfway, show what changed."""
    from tracker import demo as demo_mod
    from tracker.progress import ProgressPrinter
    from tracker.report import render_run
    from tracker.runner import TimedAction, execute_run
    from tracker.store import Store

    if duration < 10:
        raise UsageError("--duration: the demo needs at least 10s (two halves of 5s)")
    if not rate > 0:
        raise UsageError(f"--rate: must be a positive number of requests per second, got {rate}")
    store = Store.open(db_url)
    port = demo_mod.free_port()
    click.echo(f"starting the example LLM server on http://127.0.0.1:{port} ...", err=True)
    target = demo_mod.start_server(port)
    split = duration / 2
    scenario = demo_mod.demo_scenario(port, duration, rate)
    actions: list[TimedAction] = []
    if fault != "none":
        actions.append(demo_mod.fault_action(port, fault, split))
    click.echo(
        f"driving {rate:g} streaming completions/s for {duration:g}s"
        + (f"; fault '{fault}' switches on at {split:g}s" if fault != "none" else ""),
        err=True,
    )
    try:
        result = execute_run(
            scenario,
            store,
            tag="demo",
            target=target,
            actions=actions,
            progress=ProgressPrinter(duration),
        )
    finally:
        target.terminate()
    click.echo(render_run(result.document))
    labels = ("before fault", "fault on") if fault != "none" else ("first half", "second half")
    parts = demo_mod.phases(
        store.iter_windows(result.run_id), store.samples(result.run_id), split, labels
    )
    label = f"fault '{fault}'" if fault != "none" else "no fault"
    click.echo("")
    if parts[-1].window.completed == 0:
        click.echo(f"the run stopped before its second half ({label} from {split:g}s)")
    else:
        click.echo(f"first half vs second half ({label} from {split:g}s):")
        click.echo(demo_mod.render_phases(parts))
        change = demo_mod.slowdown_pct(parts)
        if change is not None:
            click.echo(f"\nmedian latency changed by {change:+.0f}% in the second half ({label}).")
    if json_path:
        _write_json(json_path, result.document)
    click.echo(f"\nstored as run {result.run_id} in {store.location}; look again with:")
    db_flag = f" --db {shlex.quote(db_url)}" if db_url else ""
    click.echo(f"  perfsleuth show {result.run_id}{db_flag}")
    click.echo(f"  perfsleuth show {result.run_id} --json{db_flag}")
    if result.status == "interrupted":
        sys.exit(130)


@cli.command()
@click.argument("run_spec", metavar="RUN", default="latest")
@click.option("--json", "as_json", is_flag=True, help="Print the run JSON document.")
@db_option
def show(run_spec: str, as_json: bool, db_url: str | None) -> None:
    """Show a stored run (an id, or `latest`)."""
    from tracker.report import render_run
    from tracker.store import Store
    from tracker.summary import run_document

    store = Store.open(db_url)
    run_record = store.get_run(run_spec)
    doc = run_document(
        run_record,
        store.iter_windows(run_record.id),
        store.samples(run_record.id),
        store.findings(run_record.id),
    )
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        click.echo(render_run(doc))


@cli.command()
@click.option("--limit", type=int, default=20, show_default=True)
@db_option
def history(limit: int, db_url: str | None) -> None:
    """List stored runs, newest first."""
    from tracker.store import Store

    store = Store.open(db_url)
    runs = store.list_runs(limit)
    if not runs:
        click.echo(f"no runs stored yet in {store.url}")
        return
    click.echo(
        f"{'id':>5}  {'started (UTC)':<19}  {'status':<11}  {'p50 ms':>9}  {'p99 ms':>9}  scenario"
    )
    for r in runs:
        latency = (r.summary or {}).get("latency_ms") or {}
        p50 = f"{latency['p50']:.1f}" if "p50" in latency else "-"
        p99 = f"{latency['p99']:.1f}" if "p99" in latency else "-"
        started = r.started_at.strftime("%Y-%m-%d %H:%M:%S")
        tag = f" [{r.tag}]" if r.tag else ""
        click.echo(
            f"{r.id:>5}  {started:<19}  {r.status:<11}  {p50:>9}  {p99:>9}  {r.scenario}{tag}"
        )


@cli.group()
def db() -> None:
    """Database schema: upgrade it or show its revision."""


@db.command("upgrade")
@db_option
def db_upgrade(db_url: str | None) -> None:
    """Migrate the database to the newest schema."""
    from tracker.store import Store
    from tracker.store.database import current_revision

    store = Store.open(db_url)
    click.echo(f"{store.url} is at revision {current_revision(store.engine)}")


@db.command("current")
@db_option
def db_current(db_url: str | None) -> None:
    """Print the database's schema revision and the newest one."""
    from tracker.store import Store
    from tracker.store.database import current_revision, head_revision

    store = Store.open(db_url, upgrade=False)
    current = current_revision(store.engine)
    head = head_revision()
    state = "up to date" if current == head else "needs `perfsleuth db upgrade`"
    click.echo(f"{store.url}: revision {current or 'none'} (newest {head}; {state})")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    started = time.monotonic()
    try:
        cli.main(args=argv, prog_name="perfsleuth", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("perfsleuth: aborted", err=True)
        sys.exit(130)
    except PerfsleuthError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        click.echo(f"perfsleuth: interrupted after {time.monotonic() - started:.0f}s", err=True)
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("PERFSLEUTH_DEBUG"):
            raise
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (rerun with PERFSLEUTH_DEBUG=1 "
            "for the traceback, and please report it)",
            EXIT_RUN_FAILED,
        )
    sys.exit(0)


__all__ = ["RunFailedError", "cli", "main"]

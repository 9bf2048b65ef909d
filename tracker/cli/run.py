"""`perfsleuth run`: drive load (a scenario file, or --url and flags) while probing a
server, store the run, report it, and exit per the contract (tracker.errors)."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal

import click

from tracker.cli.compare import CompareSettings, compare_after_run, exit_code, parse_thresholds
from tracker.cli.options import (
    DURATION,
    agent_options,
    comparison_options,
    connect_agents,
    db_option,
    gc_log_option,
    group_option,
    json_option,
    no_tui_option,
    refresh_option,
    tag_option,
)
from tracker.cli.output import check_json_path, exit_interrupted, write_json
from tracker.cli.terminal import run_with_view, target_log, wants_tui
from tracker.errors import EXIT_REGRESSION, EXIT_RUN_FAILED, RunFailedError, UsageError
from tracker.recording.run_health import DEFAULT_MAX_ERROR_RATE
from tracker.scenario.flags import MIN_PROBE_INTERVAL_S, check_workers

if TYPE_CHECKING:
    from tracker.scenario import Scenario, TargetSpec


@dataclass(frozen=True)
class LoadFlags:
    """`run`'s flags that describe the load and its target (a scenario file says most)."""

    url: str | None = None
    rate: float | None = None
    users: int | None = None
    duration: float = 10.0
    warmup: float = 0.0
    arrival: Literal["constant", "poisson"] = "constant"
    seed: int = 0
    max_inflight: int | None = None
    on_full: Literal["queue", "drop"] = "queue"
    workers: int = 1
    path: str | None = None
    method: str | None = None
    body: str | None = None
    stream: str | None = None
    timeout: float = 60.0
    attach_pid: int | None = None
    attach_name: str | None = None
    launch: str | None = None
    probe_interval: float | None = None


# The flags a scenario file sets itself; of the load flags it takes only --duration and
# --workers (and the target flags).
_SCENARIO_SETS = ("url", "rate", "users", "warmup", "arrival", "seed", "max_inflight",
                  "on_full", "path", "method", "body", "stream", "timeout")  # fmt: skip


@click.command("run")
@click.argument("scenario_file", metavar="[SCENARIO.toml]", required=False)
@click.option("--url", default=None, help="Target URL, e.g. http://127.0.0.1:8000/v1/completions.")
@click.option("--rate", type=float, default=None, help="Open model: requests per second.")
@click.option("--users", type=int, default=None, help="Closed model: concurrent users (default 1).")
@click.option("--duration", type=DURATION, default="10s", show_default=True, help="Load duration.")
@click.option(
    "--warmup", type=DURATION, default="0s", show_default=True, help="Excluded from the summary."
)
@click.option(
    "--arrival",
    type=click.Choice(["constant", "poisson"]),
    default="constant",
    show_default=True,
    help="Open model: evenly spaced or Poisson (seeded) arrivals.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for Poisson / picks.")
@click.option(
    "--max-inflight",
    type=int,
    default=None,
    metavar="N",
    help="Open model: cap on requests in flight.",
)
@click.option(
    "--on-full",
    type=click.Choice(["queue", "drop"]),
    default="queue",
    show_default=True,
    help="At the cap: wait for a slot (latency still from the intended time) or drop.",
)
@click.option(
    "--workers", type=int, default=1, show_default=True, help="Driver processes sharing the load."
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
@click.option(
    "--probe-interval", type=DURATION, default=None, help="Probe sampling interval [250ms]."
)
@agent_options
@click.option(
    "--baseline",
    default=None,
    metavar="SPEC",
    help="Compare with a run id, tag:NAME, last:N or best:N; exit 1 on regression.",
)
@click.option(
    "--max-error-rate",
    type=click.FloatRange(0, 1),
    default=DEFAULT_MAX_ERROR_RATE,
    show_default=True,
    metavar="FRACTION",
    help="Fail the run (exit 4) when more of its requests fail; 0 turns this off.",
)
@group_option
@comparison_options
@gc_log_option
@no_tui_option
@refresh_option
@json_option
@tag_option
@db_option
@click.pass_context
def command(
    ctx: click.Context,
    /,
    scenario_file: str | None,
    *,
    url: str | None,
    rate: float | None,
    users: int | None,
    duration: float,
    warmup: float,
    arrival: Literal["constant", "poisson"],
    seed: int,
    max_inflight: int | None,
    on_full: Literal["queue", "drop"],
    workers: int,
    path: str | None,
    method: str | None,
    body: str | None,
    stream: str | None,
    timeout: float,
    attach_pid: int | None,
    attach_name: str | None,
    launch: str | None,
    probe_interval: float | None,
    agents: tuple[str, ...],
    agent_token_env: str | None,
    max_error_rate: float,
    baseline: str | None,
    group: str | None,
    thresholds: tuple[str, ...],
    gate_probes: bool,
    fail_on_inconclusive: bool,
    alpha: float,
    gc_log: str | None,
    no_tui: bool,
    refresh: float,
    json_path: str | None,
    tag: str | None,
    db_url: str | None,
) -> None:
    """Drive load (a SCENARIO.toml file, or --url and flags), probe a server, store the run.

    Exits 1 when an [slo] threshold of the scenario fails, 4 when the run failed (the
    target unreachable or gone, more than --max-error-rate of the requests failed).
    """
    flags = LoadFlags(
        url=url, rate=rate, users=users, duration=duration, warmup=warmup, arrival=arrival,
        seed=seed, max_inflight=max_inflight, on_full=on_full, workers=workers, path=path,
        method=method, body=body, stream=stream, timeout=timeout, attach_pid=attach_pid,
        attach_name=attach_name, launch=launch, probe_interval=probe_interval,
    )  # fmt: skip
    given = frozenset(
        f.name
        for f in fields(LoadFlags)
        if ctx.get_parameter_source(f.name) is not click.core.ParameterSource.DEFAULT
    )
    comparing = compare_settings(
        baseline,
        CompareSettings("", thresholds, gate_probes, fail_on_inconclusive, alpha),
    )
    run(
        scenario_file,
        flags,
        given=given,
        comparing=comparing,
        gc_log=gc_log,
        max_error_rate=max_error_rate,
        no_tui=no_tui,
        refresh_s=refresh,
        json_path=json_path,
        tag=tag,
        group=group,
        db_url=db_url,
        agents=agents,
        agent_token_env=agent_token_env,
    )


def compare_settings(baseline: str | None, tuning: CompareSettings) -> CompareSettings | None:
    """`run --baseline` and its tuning flags, checked before the run starts."""
    from tracker.regressions.baseline import parse_spec

    if baseline is None:
        if tuning.thresholds or tuning.gate_probes or tuning.fail_on_inconclusive:
            raise UsageError(
                "--threshold, --gate-probes and --fail-on-inconclusive need --baseline SPEC"
            )
        return None
    parse_spec(baseline)
    parse_thresholds(tuning.thresholds)
    return replace(tuning, baseline=baseline)


def _target_from_flags(flags: LoadFlags) -> TargetSpec | None:
    from tracker.scenario import TargetSpec

    chosen = [f for f in (flags.attach_pid, flags.attach_name, flags.launch) if f is not None]
    if len(chosen) > 1:
        raise UsageError("give at most one of --attach, --attach-name and --launch")
    if flags.attach_pid is not None:
        return TargetSpec(pid=flags.attach_pid)
    if flags.attach_name is not None:
        return TargetSpec(name=flags.attach_name)
    if flags.launch is not None:
        try:
            argv = tuple(shlex.split(flags.launch))
        except ValueError as exc:
            raise UsageError(
                f"--launch: cannot split {flags.launch!r} ({exc}); check its quotes"
            ) from None
        if not argv:
            raise UsageError("--launch: empty command")
        return TargetSpec(launch=argv)
    return None


def build_run_scenario(
    scenario_file: str | None, flags: LoadFlags, given: frozenset[str] = frozenset()
) -> Scenario:
    """The Scenario for `run`: from the file, or from --url and the load flags; `given`
    names the flags set on the command line (not defaults)."""
    from tracker.scenario import build_scenario
    from tracker.scenario.toml_file import load_scenario

    interval = flags.probe_interval
    if interval is not None and interval < MIN_PROBE_INTERVAL_S:
        raise UsageError(
            f"--probe-interval: must be at least {MIN_PROBE_INTERVAL_S * 1000:.0f}ms, e.g. 250ms"
        )
    target = _target_from_flags(flags)
    if scenario_file is not None:
        clash = [f for f in _SCENARIO_SETS if f in given]
        if clash:
            flag = "--" + clash[0].replace("_", "-")
            raise UsageError(
                f"{flag}: a scenario file sets the load; change {scenario_file} instead"
            )
        scenario = load_scenario(scenario_file)
        if "duration" in given:
            scenario = _with_duration(scenario, flags.duration, scenario_file)
        if target is not None:
            scenario = replace(scenario, target=target)
        if interval is not None:
            scenario = replace(scenario, probe_interval_s=interval)
        if "workers" in given:
            # How many processes drive the load does not change what is measured.
            workers = check_workers(flags.workers)
            scenario = replace(scenario, load=replace(scenario.load, workers=workers))
        return scenario
    if flags.url is None:
        raise UsageError(
            "give a scenario file or --url, e.g. perfsleuth run --url http://127.0.0.1:8000/"
        )
    return build_scenario(
        url=flags.url,
        rate=flags.rate,
        users=flags.users,
        duration_s=flags.duration,
        warmup_s=flags.warmup,
        method=flags.method,
        path=flags.path,
        body=flags.body,
        stream="sse" if flags.stream == "sse" else None,
        timeout_s=flags.timeout,
        target=target,
        probe_interval_s=interval if interval is not None else 0.25,
        arrival=flags.arrival,
        seed=flags.seed,
        max_inflight=flags.max_inflight,
        on_full=flags.on_full,
        workers=flags.workers,
    )


def _with_duration(scenario: Scenario, duration_s: float, scenario_file: str) -> Scenario:
    """The scenario held at its rate (or users) for `duration_s` instead: a nightly job
    runs the file a CI smoke test runs briefly, without a copy of it."""
    load = scenario.load
    if load.stages or load.throttle or load.user_stages:
        raise UsageError(
            f"--duration: the stages of {scenario_file} set its length; change them there"
        )
    if duration_s <= load.warmup_s:
        raise UsageError(
            f"--duration: must be longer than the scenario's warm-up ({load.warmup_s:g}s)"
        )
    return replace(scenario, load=replace(load, duration_s=duration_s))


def run(
    scenario_file: str | None,
    flags: LoadFlags,
    *,
    given: frozenset[str] = frozenset(),
    comparing: CompareSettings | None = None,
    gc_log: str | None = None,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    no_tui: bool = False,
    refresh_s: float = 1.0,
    json_path: str | None = None,
    tag: str | None = None,
    group: str | None = None,
    db_url: str | None = None,
    agents: tuple[str, ...] = (),
    agent_token_env: str | None = None,
) -> None:
    """`perfsleuth run`: build the scenario, run it, report, exit per the contract."""
    from probes import Probe, ProbeError, Target
    from probes.runtimes import (
        attached_probes,
        close_probes,
        launch_with_gc_probes,
        launched_probes,
    )
    from tracker.driver.loop import event_loop_name
    from tracker.recording.runner import (
        execute_run,
        store_before_load,
        wait_until_reachable,
    )
    from tracker.reports.run_text import render_run
    from tracker.store import Store

    scenario = build_run_scenario(scenario_file, flags, given)
    check_json_path(json_path)
    event_loop_name()  # a bad $PERFSLEUTH_EVENT_LOOP fails before anything starts
    if agents and scenario.target is not None:
        raise UsageError(
            "--agent watches the server on its own host: drop --attach, --attach-name and "
            "--launch (and the scenario's [target])"
        )
    links = connect_agents(agents, agent_token_env)
    store = Store.open(db_url)
    target = None
    extra: list[Probe] = []
    spec = scenario.target
    interval = scenario.probe_interval_s
    tui = wants_tui(no_tui or json_path == "-", refresh_s)
    log = None
    try:
        try:
            if spec is not None and spec.launch is not None:
                log = target_log(tui)
                launched = launch_with_gc_probes(
                    list(spec.launch),
                    gc_log=gc_log,
                    stderr_sink=_stderr_sink(),
                    interval_s=interval,
                    output=log,
                )
                target = launched.target
                extra.extend(launched.probes)  # closed on every way out
                try:
                    wait_until_reachable(scenario.base_url, target, timeout_s=60.0)
                except (RunFailedError, KeyboardInterrupt) as exc:
                    early = store_before_load(
                        scenario, store, exc, tag=tag, group=group, target=target
                    )
                    click.echo(f"run {early.run_id} was interrupted before its load", err=True)
                    exit_interrupted()
                extra[:] = launched_probes(launched, interval_s=interval)
            elif spec is not None:
                target = (
                    Target.from_pid(spec.pid) if spec.pid else Target.from_name(spec.name or "")
                )
                extra.extend(attached_probes(target, gc_log=gc_log, interval_s=interval))
            elif gc_log is not None:
                raise UsageError("--gc-log needs a target: add --attach, --attach-name or --launch")
        except ProbeError as exc:
            raise UsageError(str(exc)) from None
        result = run_with_view(
            scenario,
            tui,
            lambda progress, control: execute_run(
                scenario,
                store,
                tag=tag,
                group=group,
                target=target,
                progress=progress,
                extra_probes=extra,
                control=control,
                max_error_rate=max_error_rate,
                agents=links,
            ),
            notes=[f"the launched command's output goes to {log.name}"] if log else [],
            refresh_s=refresh_s,
        )
    finally:
        close_probes(extra)
        # Launched targets live in their own session (a terminal's Ctrl-C does not reach
        # them), so they are stopped here on every way out.
        if target is not None and target.owned:
            target.terminate()
        if log is not None:
            log.close()
            click.echo(f"the launched command's output is in {log.name}", err=True)
    # With `--json -` stdout carries the JSON alone, so the summary goes to stderr.
    click.echo(render_run(result.document), err=json_path == "-")
    comparison = None
    if comparing is not None and result.status == "completed":
        from tracker.reports.compare_text import render_text

        comparison = compare_after_run(result.run_id, comparing, db_url, result.document)
        click.echo("\n" + render_text(comparison.to_json()), err=json_path == "-")
    if json_path:
        write_json(json_path, result.document)
    if result.status == "failed":
        sys.exit(EXIT_RUN_FAILED)
    if result.status == "interrupted":
        click.echo(f"run {result.run_id} was interrupted; what ran is stored", err=True)
        exit_interrupted()
    if result.slo_failed:
        for failed in result.slo_failed:
            click.echo(f"perfsleuth: SLO failed: {failed.describe()}", err=True)
        sys.exit(EXIT_REGRESSION)
    if comparison is not None and comparing is not None:
        sys.exit(exit_code(comparison, comparing.fail_on_inconclusive))


def _stderr_sink() -> Any:
    """Where a launched target's stderr goes when it passes through perfsleuth."""
    return sys.stderr.buffer

"""What `perfsleuth run` and `perfsleuth demo` do once click has parsed their flags.

Used by `tracker.cli`, which only declares the commands. Output goes through click so
that tests with CliRunner and real terminals behave the same.
"""

from __future__ import annotations

import json
import shlex
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

from tracker.commands_compare import (
    CompareSettings,
    compare_after_run,
    exit_code,
    parse_thresholds,
)
from tracker.errors import EXIT_REGRESSION, EXIT_RUN_FAILED, UsageError
from tracker.scenario import Scenario, TargetSpec
from tracker.scenario.flags import MIN_PROBE_INTERVAL_S, check_workers

if TYPE_CHECKING:
    from tracker.progress import ProgressView
    from tracker.runner import RunControl, RunResult

# `run` flags that describe the load; with a scenario file the file says these.
_LOAD_FLAGS = ("url", "rate", "users", "duration", "warmup", "arrival", "seed", "max_inflight",
               "on_full", "path", "method", "body", "stream", "timeout")  # fmt: skip
_EXIT_INTERRUPTED = 130
#: The live screen's refresh: faster than the 1 s windows shows nothing new, and past a
#: minute it no longer reads as live.
MIN_REFRESH_S, MAX_REFRESH_S = 0.1, 60.0


def write_json(path: str, document: dict[str, Any]) -> None:
    text = json.dumps(document, indent=2, default=str)
    if path == "-":
        click.echo(text)
        return
    try:
        Path(path).write_text(text + "\n")
    except OSError as exc:
        raise UsageError(f"--json: cannot write {path}: {exc.strerror}") from None


def check_json_path(path: str | None) -> None:
    """Fail before the run, not after it, when --json cannot be written."""
    if path is None or path == "-":
        return
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise UsageError(f"--json: directory {parent} does not exist; create it or choose another")


def _target_from_flags(options: dict[str, Any]) -> TargetSpec | None:
    chosen = [k for k in ("attach_pid", "attach_name", "launch") if options.get(k) is not None]
    if len(chosen) > 1:
        raise UsageError("give at most one of --attach, --attach-name and --launch")
    if options.get("attach_pid") is not None:
        return TargetSpec(pid=options["attach_pid"])
    if options.get("attach_name") is not None:
        return TargetSpec(name=options["attach_name"])
    if options.get("launch") is not None:
        argv = tuple(shlex.split(options["launch"]))
        if not argv:
            raise UsageError("--launch: empty command")
        return TargetSpec(launch=argv)
    return None


def build_run_scenario(
    scenario_file: str | None, options: dict[str, Any], given: set[str]
) -> Scenario:
    """The Scenario for `run`: from the file, or from --url and the load flags."""
    from dataclasses import replace

    from tracker.scenario import build_scenario
    from tracker.scenario.toml_file import load_scenario

    interval = options.get("probe_interval")
    if interval is not None and interval < MIN_PROBE_INTERVAL_S:
        raise UsageError(
            f"--probe-interval: must be at least {MIN_PROBE_INTERVAL_S * 1000:.0f}ms, e.g. 250ms"
        )
    target = _target_from_flags(options)
    if scenario_file is not None:
        clash = [f for f in _LOAD_FLAGS if f in given and f != "duration"]
        if clash:
            flag = "--" + clash[0].replace("_", "-")
            raise UsageError(
                f"{flag}: a scenario file sets the load; change {scenario_file} instead"
            )
        scenario = load_scenario(scenario_file)
        if "duration" in given:
            scenario = _with_duration(scenario, options["duration"], scenario_file)
        if target is not None:
            scenario = replace(scenario, target=target)
        if interval is not None:
            scenario = replace(scenario, probe_interval_s=interval)
        if "workers" in given:
            # How many processes drive the load does not change what is measured.
            workers = check_workers(options["workers"])
            scenario = replace(scenario, load=replace(scenario.load, workers=workers))
        return scenario
    if options.get("url") is None:
        raise UsageError(
            "give a scenario file or --url, e.g. perfsleuth run --url http://127.0.0.1:8000/"
        )
    return build_scenario(
        url=options["url"],
        rate=options["rate"],
        users=options["users"],
        duration_s=options["duration"],
        warmup_s=options["warmup"],
        method=options["method"],
        path=options["path"],
        body=options["body"],
        stream="sse" if options["stream"] == "sse" else None,
        timeout_s=options["timeout"],
        target=target,
        probe_interval_s=interval if interval is not None else 0.25,
        arrival=options["arrival"],
        seed=options["seed"],
        max_inflight=options["max_inflight"],
        on_full=options["on_full"],
        workers=options["workers"],
    )


def _exit_interrupted() -> NoReturn:
    """Exit 130 after an interrupted run was stored. A Ctrl-C from here on (a second press
    that came late) is ignored: raised while the interpreter shuts down, it would turn the
    exit status into death by SIGINT (-2) and could print a traceback."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(_EXIT_INTERRUPTED)


def _with_duration(scenario: Scenario, duration_s: float, scenario_file: str) -> Scenario:
    """The scenario held at its rate (or users) for `duration_s` instead: a nightly job
    runs the file a CI smoke test runs briefly, without a copy of it."""
    from dataclasses import replace

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


def run(scenario_file: str | None, options: dict[str, Any], given: set[str]) -> None:
    """`perfsleuth run`: build the scenario, run it, report, exit per the contract."""
    from probes import Probe, ProbeError, Target
    from probes.runtimes import (
        attach_gc_probes,
        close_probes,
        launch_with_gc_probes,
        stack_probes,
    )
    from tracker.driver.loop import event_loop_name
    from tracker.report import render_run
    from tracker.runner import execute_run, wait_until_reachable
    from tracker.store import Store

    comparing = _compare_settings(options)
    scenario = build_run_scenario(scenario_file, options, given)
    json_path = options.get("json_path")
    check_json_path(json_path)
    event_loop_name()  # a bad $PERFSLEUTH_EVENT_LOOP fails before anything starts
    store = Store.open(options.get("db_url"))
    target = None
    extra: list[Probe] = []
    spec = scenario.target
    gc_log = options.get("gc_log")
    interval = scenario.probe_interval_s
    refresh_s = options.get("refresh")
    refresh_s = 1.0 if refresh_s is None else refresh_s
    tui = wants_tui(options.get("no_tui", False) or json_path == "-", refresh_s)
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
                extra.extend(launched.probes)
                wait_until_reachable(scenario.base_url, target, timeout_s=60.0)
                if not extra:
                    extra.extend(attach_gc_probes(target, interval_s=interval))
                extra.extend(stack_probes(target, launched=True))
            elif spec is not None:
                target = (
                    Target.from_pid(spec.pid) if spec.pid else Target.from_name(spec.name or "")
                )
                extra.extend(attach_gc_probes(target, gc_log=gc_log, interval_s=interval))
                extra.extend(stack_probes(target, launched=False))
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
                tag=options.get("tag"),
                group=options.get("group"),
                target=target,
                progress=progress,
                extra_probes=extra,
                control=control,
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
        from tracker.compare_report import render_text

        comparison = compare_after_run(
            result.run_id, comparing, options.get("db_url"), result.document
        )
        click.echo("\n" + render_text(comparison.to_json()), err=json_path == "-")
    if json_path:
        write_json(json_path, result.document)
    if result.status == "failed":
        sys.exit(EXIT_RUN_FAILED)
    if result.status == "interrupted":
        click.echo(f"run {result.run_id} was interrupted; what ran is stored", err=True)
        _exit_interrupted()
    if result.slo_failed:
        for failed in result.slo_failed:
            click.echo(f"perfsleuth: SLO failed: {failed.describe()}", err=True)
        sys.exit(EXIT_REGRESSION)
    if comparison is not None and comparing is not None:
        sys.exit(exit_code(comparison, comparing.fail_on_inconclusive))


def _compare_settings(options: dict[str, Any]) -> CompareSettings | None:
    """`run --baseline` and its tuning flags, checked before the run starts; the flags
    are taken out of `options` (they are not part of the scenario)."""
    from tracker.comparing import parse_spec

    baseline = options.pop("baseline", None)
    settings = CompareSettings(
        baseline or "",
        tuple(options.pop("thresholds", ()) or ()),
        bool(options.pop("gate_probes", False)),
        bool(options.pop("fail_on_inconclusive", False)),
        float(options.pop("alpha", 0.05)),
    )
    if baseline is None:
        if settings.thresholds or settings.gate_probes or settings.fail_on_inconclusive:
            raise UsageError(
                "--threshold, --gate-probes and --fail-on-inconclusive need --baseline SPEC"
            )
        return None
    parse_spec(baseline)
    parse_thresholds(settings.thresholds)
    return settings


def _stderr_sink() -> Any:
    """Where a launched target's stderr goes when it passes through perfsleuth."""
    return sys.stderr.buffer


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
) -> None:
    """`perfsleuth attach`: probes only; exit codes as for `run`."""
    from probes import ProbeError, Target
    from probes.runtimes import attach_gc_probes, close_probes, stack_probes
    from tracker.attach import execute_attach
    from tracker.report import render_run
    from tracker.store import Store

    if (pid is None) == (name is None):
        raise UsageError("give a PID or --name NAME (one of them), e.g. perfsleuth attach 4242")
    if duration is not None and duration <= 0:
        raise UsageError(
            "--duration: must be positive, e.g. 30s (leave it out to stop with Ctrl-C)"
        )
    if probe_interval < MIN_PROBE_INTERVAL_S:
        raise UsageError(
            f"--probe-interval: must be at least {MIN_PROBE_INTERVAL_S * 1000:.0f}ms, e.g. 250ms"
        )
    check_json_path(json_path)
    try:
        target = Target.from_pid(pid) if pid is not None else Target.from_name(name or "")
        extra = attach_gc_probes(target, gc_log=gc_log, interval_s=probe_interval)
        extra.extend(stack_probes(target, launched=False))
    except ProbeError as exc:
        raise UsageError(str(exc)) from None
    try:
        store = Store.open(db_url)

        def plain() -> RunResult:
            return execute_attach(
                target, store, duration_s=duration, interval_s=probe_interval, tag=tag,
                extra_probes=extra,
            )  # fmt: skip

        if wants_tui(no_tui or json_path == "-", refresh_s):
            from tracker.attach import target_name
            from tracker.tui.session import run_live
            from tracker.tui.state import LiveState

            state = LiveState(
                f"attach {target_name(target)}", f"pid {target.pid}", duration or 0.0,
                "probes only, no load",
            )  # fmt: skip
            result = run_live(
                state,
                lambda feed, control: execute_attach(
                    target, store, duration_s=duration, interval_s=probe_interval, tag=tag,
                    extra_probes=extra, view=feed, control=control,
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
        _exit_interrupted()


def wants_tui(plain: bool, refresh_s: float = 1.0) -> bool:
    """The live screen, unless asked for plain lines (`--no-tui`, `--json -`) or any of
    stdin / stdout / stderr is not a terminal (CI logs, pipes, redirections)."""
    from tracker.terminal import interactive

    if not MIN_REFRESH_S <= refresh_s <= MAX_REFRESH_S:
        raise UsageError(
            f"--refresh: give {MIN_REFRESH_S * 1000:.0f}ms to {MAX_REFRESH_S:.0f}s, e.g. 2s"
        )
    return not plain and interactive()


def target_log(tui: bool) -> IO[bytes] | None:
    """Where a launched command's output goes: a log file under the live screen (it would
    scribble over it), else (None) the terminal, as before."""
    if not tui:
        return None
    # Closed by the caller once the run (and the command) ended.
    return tempfile.NamedTemporaryFile(prefix="perfsleuth-target-", suffix=".log", delete=False)


def run_with_view(
    scenario: Scenario,
    tui: bool,
    execute: Callable[[ProgressView, RunControl | None], RunResult],
    notes: Sequence[str] = (),
    refresh_s: float = 1.0,
) -> RunResult:
    """`execute(progress, control)` under the live screen (`tui`), else with plain progress
    lines; `notes` open the screen's note line."""
    from tracker.progress import ProgressPrinter

    def plain() -> RunResult:
        printer = ProgressPrinter(scenario.load.duration_s)
        try:
            return execute(printer, None)
        finally:
            printer.close()

    if not tui:
        return plain()
    from tracker.tui.session import run_live
    from tracker.tui.state import LiveState

    load = scenario.load
    label = (
        f"closed {load.users or 0} users"
        if load.model == "closed"
        else f"open {load.rate:g} req/s"
        if load.rate
        else "open (staged)"
    )
    state = LiveState(scenario.name, scenario.url, load.duration_s, label)
    for note in notes:
        state.add_note(note)
    return run_live(state, execute, plain=plain, refresh_s=refresh_s)


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
    from tracker import demo as demo_mod
    from tracker.report import render_run
    from tracker.runner import TimedAction, execute_run
    from tracker.store import Store

    if duration < 10:
        raise UsageError("--duration: the demo needs at least 10s (two halves of 5s)")
    if not rate > 0:
        raise UsageError(f"--rate: must be a positive number of requests per second, got {rate}")
    check_json_path(json_path)
    store = Store.open(db_url)
    port = demo_mod.free_port()
    tui = wants_tui(no_tui or json_path == "-", refresh_s)
    click.echo(f"starting the example LLM server on http://127.0.0.1:{port} ...", err=True)
    log = target_log(tui)
    try:
        launched = demo_mod.start_server(port, output=log)
    except BaseException:
        if log is not None:
            log.close()
        raise
    target = launched.target
    launched.probes.extend(stack_probes(target, launched=True))
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
    click.echo("\n" + demo_mod.verdict_line(fault, result.document.get("findings") or []))
    if json_path:
        write_json(json_path, result.document)
    click.echo(f"\nstored as run {result.run_id} in {store.location}; look again with:")
    db_flag = f" --db {shlex.quote(db_url)}" if db_url else ""
    click.echo(f"  perfsleuth show {result.run_id}{db_flag}")
    click.echo(f"  perfsleuth show {result.run_id} --json{db_flag}")
    if result.status == "interrupted":
        _exit_interrupted()
    if result.status == "failed":
        sys.exit(EXIT_RUN_FAILED)


def export(
    run_spec: str,
    *,
    fmt: str,
    out: str,
    db_url: str | None,
    metrics: tuple[str, ...] = (),
    include_warmup: bool = False,
) -> None:
    """`perfsleuth export`: the run's stack samples, merged, as speedscope or collapsed; or
    its per-window histograms as an HdrHistogram interval log (hdr) or a CSV table."""
    from tracker.runs import load_run
    from tracker.store import Store

    windowed = fmt in ("hdr", "csv")
    if not windowed and (metrics or include_warmup):
        raise UsageError("--metric and --include-warmup apply to --format hdr and csv only")
    if out != "-":
        # Fail before reading the run, not after: an hour's windows take a while.
        parent = Path(out).expanduser().resolve().parent
        if not parent.is_dir():
            raise UsageError(
                f"--out: directory {parent} does not exist; create it or choose another"
            )
    loaded = load_run(Store.open(db_url), run_spec)
    run = loaded.record
    if windowed:
        from tracker.export_windows import csv_table, hdr_log

        windows = loaded.windows()
        if fmt == "hdr":
            exported = hdr_log(
                windows,
                run_id=run.id,
                started_at=run.started_at,
                scenario=run.scenario,
                metrics=metrics,
                include_warmup=include_warmup,
            )
            what = f"{exported.histograms} interval histograms"
        else:
            exported = csv_table(
                windows, run_id=run.id, metrics=metrics, include_warmup=include_warmup
            )
            what = f"{exported.histograms} rows"
        text = exported.text
        done = f"wrote {what} ({exported.windows} windows) of run {run.id} to {out}"
    else:
        from probes.stacks_profile import format_collapsed, merge
        from probes.stacks_speedscope import speedscope_document

        stacks = merge(p.stacks for p in loaded.profiles())
        if not stacks:
            raise UsageError(
                f"run {run.id} has no stack samples: they are taken of Python targets "
                "(--attach/--launch a Python server) when py-spy can attach"
            )
        if fmt == "collapsed":
            text = format_collapsed(stacks)
        else:
            document = speedscope_document(
                {f"run {run.id}": stacks}, name=f"perfsleuth run {run.id}"
            )
            text = json.dumps(document, separators=(",", ":"))
        done = f"wrote {sum(stacks.values())} stack samples of run {run.id} to {out}"
    if out == "-":
        click.echo(text, nl=not text.endswith("\n"))
        return
    try:
        Path(out).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--out: cannot write {out}: {exc.strerror}") from None
    click.echo(done, err=True)

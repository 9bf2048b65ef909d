"""`perfsleuth export`: a stored run's stack profile or its per-second histograms, in a
registered format (tracker.reports: the `stacks` and `windows` kinds)."""

from __future__ import annotations

import click

from tracker import reports
from tracker.cli.options import db_option
from tracker.cli.output import check_parent_dir, write_out
from tracker.errors import UsageError


@click.command("export")
@click.argument("run_spec", metavar="RUN", default="latest")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(reports.names("stacks", "windows")),
    default="speedscope",
    show_default=True,
    help="Stack profile: speedscope JSON (https://www.speedscope.app) or collapsed stacks "
    "(flamegraph.pl). Per-second histograms: hdr (HdrHistogram interval log, values in µs) "
    "or csv (one row per window and metric, ms).",
)
@click.option("--out", required=True, metavar="FILE", help="Where to write it (- for stdout).")
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="NAME",
    help="hdr/csv: only this histogram (repeatable), e.g. latency, ttft, 'latency|chat'. "
    "Default: all.",
)
@click.option(
    "--include-warmup",
    is_flag=True,
    help="hdr/csv: keep the warm-up windows (left out by default, as in the run's summary).",
)
@db_option
def command(
    run_spec: str,
    fmt: str,
    out: str,
    metrics: tuple[str, ...],
    include_warmup: bool,
    db_url: str | None,
) -> None:
    """Export a stored run's stack profile or per-second histograms (RUN: an id or `latest`)."""
    export(
        run_spec,
        fmt=fmt,
        out=out,
        db_url=db_url,
        metrics=metrics,
        include_warmup=include_warmup,
    )


def export(
    run_spec: str,
    *,
    fmt: str,
    out: str,
    db_url: str | None,
    metrics: tuple[str, ...] = (),
    include_warmup: bool = False,
) -> None:
    """The run's stack samples, merged; or its per-window histograms."""
    from tracker.documents.stored_run import load_run
    from tracker.store import Store

    kind = reports.kind_of(fmt, "stacks", "windows")
    if kind != "windows" and (metrics or include_warmup):
        raise UsageError("--metric and --include-warmup apply to --format hdr and csv only")
    # Fail before reading the run, not after: an hour's windows take a while.
    check_parent_dir(out, "--out")
    loaded = load_run(Store.open(db_url, for_reading=True), run_spec)
    run = loaded.record
    if kind == "windows":
        exported = reports.render(
            "windows",
            fmt,
            loaded.windows(),
            run_id=run.id,
            started_at=run.started_at,
            scenario=run.scenario,
            metrics=metrics,
            include_warmup=include_warmup,
        )
        rows = "interval histograms" if fmt == "hdr" else "rows"
        text: str = exported.text
        done = (
            f"wrote {exported.histograms} {rows} ({exported.windows} windows) of run {run.id} "
            f"to {out}"
        )
    else:
        from probes.stacks.profile import merge

        stacks = merge(p.stacks for p in loaded.profiles())
        if not stacks:
            raise UsageError(
                f"run {run.id} has no stack samples: they are taken of Python targets "
                "(--attach/--launch a Python server) when py-spy can attach"
            )
        text = reports.render("stacks", fmt, stacks, run_id=run.id)
        done = f"wrote {sum(stacks.values())} stack samples of run {run.id} to {out}"
    if out == "-":
        click.echo(text, nl=not text.endswith("\n"))
        return
    write_out(out, text)
    click.echo(done, err=True)

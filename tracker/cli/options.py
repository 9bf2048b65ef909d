"""Options several commands share, declared once so that their spelling, defaults and
help read the same everywhere (asv's `common_args.py` plays this part)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import click

from tracker.errors import UsageError
from tracker.units import parse_duration

if TYPE_CHECKING:
    from tracker.recording.agent_feed import AgentLink

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


gc_log_option = click.option(
    "--gc-log",
    default=None,
    metavar="FILE",
    help="The target JVM's GC log (-Xlog:gc:file=FILE), read for GC pauses.",
)
no_tui_option = click.option(
    "--no-tui",
    is_flag=True,
    help="Plain progress lines instead of the live screen (also when output is not a terminal).",
)
refresh_option = click.option(
    "--refresh",
    type=DURATION,
    default="1s",
    show_default=True,
    help="How often the live screen redraws (e.g. 3s over a slow SSH link).",
)
json_option = click.option(
    "--json", "json_path", default=None, metavar="FILE", help="Write the run JSON (- for stdout)."
)


def _label(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Tags and group names fit their 100-character columns (PostgreSQL enforces it)."""
    if value is not None and not 0 < len(value) <= 100:
        raise click.BadParameter("give 1 to 100 characters")
    return value


tag_option = click.option(
    "--tag", default=None, callback=_label, help="Label the run, e.g. a build or branch name."
)
group_option = click.option(
    "--group",
    default=None,
    callback=_label,
    metavar="NAME",
    help="One of several hosts driving one test: runs of a group read as one (group:NAME).",
)


def comparison_options(func: F) -> F:
    """The flags that tune a comparison, shared by `compare` and `run --baseline`."""
    for option in reversed(
        (
            click.option(
                "--threshold",
                "thresholds",
                multiple=True,
                metavar="NAME=PCT",
                help="Minimum effect for a metric (glob), e.g. latency_ms.p99=15 "
                "[p50 5, p90/p99 10, throughput 5, error_rate 1 point].",
            ),
            click.option(
                "--gate-probes",
                is_flag=True,
                help="Probe deltas can fail too (by default they only explain).",
            ),
            click.option(
                "--fail-on-inconclusive",
                is_flag=True,
                help="Exit 3 when the data cannot tell (too noisy, no baseline yet).",
            ),
            click.option(
                "--alpha",
                type=float,
                default=0.05,
                show_default=True,
                help="False discovery rate over the metrics compared.",
            ),
        )
    ):
        func = option(func)
    return func


def agent_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """`--agent URL` (repeatable) and `--agent-token-env VAR`."""
    function = click.option(
        "--agent-token-env",
        default=None,
        metavar="VAR",
        help="Environment variable holding the agents' token [PERFSLEUTH_AGENT_TOKEN].",
    )(function)
    return click.option(
        "--agent",
        "agents",
        multiple=True,
        metavar="URL",
        help="A `perfsleuth agent` on the server's host (repeat for more hosts; the first "
        "watches the server).",
    )(function)


def connect_agents(urls: tuple[str, ...], token_env: str | None) -> list[AgentLink]:
    """Reach each `--agent` before the run (one line, exit 2, when one cannot be)."""
    if not urls:
        if token_env is not None:
            raise UsageError("--agent-token-env needs --agent URL")
        return []
    from tracker.recording.agent_feed import connect
    from tracker.scenario.flags import validate_url
    from tracker.scenario.secrets import without_userinfo

    name = token_env or "PERFSLEUTH_AGENT_TOKEN"
    token = os.environ.get(name) or None
    if token_env is not None and token is None:
        raise UsageError(f"--agent-token-env: ${name} is not set; export the agent's token in it")
    links = []
    for url in urls:
        checked = validate_url(url, what="--agent")
        if urlsplit(checked).username is not None:
            shown = without_userinfo(checked)[0]
            raise UsageError(f"--agent: {shown}: give the token in ${name}, not in the URL")
        links.append(connect(checked, token, name))
    sources = [link.source for link in links]
    if len(set(sources)) < len(sources):
        raise UsageError("--agent: the same agent is given twice")
    return links

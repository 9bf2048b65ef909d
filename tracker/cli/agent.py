"""`perfsleuth agent`: run the probes on the server's host and stream their samples to
the drivers that connect (`run --agent URL`, `attach --agent URL`).

Security: it listens on 127.0.0.1 unless told otherwise, and a non-loopback address needs
a token, read from an environment variable (never a flag: flags show in `ps`). It only
reads: no endpoint starts, stops or signals anything. Deployment: docs/agent.md.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import socket
import ssl
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from tracker.cli.options import DURATION, gc_log_option
from tracker.errors import UsageError
from tracker.scenario.flags import MIN_PROBE_INTERVAL_S

if TYPE_CHECKING:
    from tracker.agent.observe import TargetChoice

DEFAULT_PORT = 7207
DEFAULT_TOKEN_ENV = "PERFSLEUTH_AGENT_TOKEN"


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name: it may resolve to anything


def parse_listen(value: str) -> Listen:
    """`HOST:PORT`, `[IPv6]:PORT`, or `HOST` (port 7207)."""
    host, port = value, str(DEFAULT_PORT)
    if value.startswith("["):
        inside, _, rest = value[1:].partition("]")
        host, port = inside, rest.removeprefix(":") or port
    elif value.count(":") == 1:
        host, port = value.split(":")
    elif ":" in value:
        raise UsageError(f"--listen: {value!r}: write an IPv6 address as [ADDR]:PORT")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen: {value!r} is not HOST:PORT, e.g. 127.0.0.1:{DEFAULT_PORT}")
    return Listen(host, int(port))


def read_token(token_env: str | None) -> str | None:
    """The token from the variable `--token-env` names (PERFSLEUTH_AGENT_TOKEN if not
    given, where it may be unset)."""
    name = token_env or DEFAULT_TOKEN_ENV
    token = os.environ.get(name, "")
    if token_env is not None and not token:
        raise UsageError(f"--token-env: ${name} is not set; export the token in it")
    if token and (len(token) < 16 or any(c.isspace() for c in token)):
        raise UsageError(
            f"${name}: the token must be at least 16 characters with no spaces; "
            "make one with `openssl rand -hex 32`"
        )
    return token or None


@click.command("agent")
@click.argument("pid", type=int, required=False)
@click.option(
    "--name",
    default=None,
    metavar="NAME",
    help="Watch the process matching NAME (followed if it restarts).",
)
@click.option("--launch", default=None, metavar="CMD", help="Start CMD and watch it.")
@click.option(
    "--listen",
    default=f"127.0.0.1:{DEFAULT_PORT}",
    show_default=True,
    metavar="HOST:PORT",
    help="Where drivers connect; beyond loopback a token is required.",
)
@click.option(
    "--token-env",
    default=None,
    metavar="VAR",
    help=f"Environment variable holding the token drivers must send [{DEFAULT_TOKEN_ENV}].",
)
@click.option(
    "--probe-interval", type=DURATION, default="250ms", show_default=True, help="Sampling interval."
)
@gc_log_option
@click.option(
    "--no-stacks",
    is_flag=True,
    help="Do not sample a Python target's stacks with py-spy (nor estimate its GC).",
)
@click.option("--tls-cert", default=None, metavar="FILE", help="Serve HTTPS with this certificate.")
@click.option("--tls-key", default=None, metavar="FILE", help="The certificate's private key.")
def command(
    pid: int | None,
    name: str | None,
    launch: str | None,
    listen: str,
    token_env: str | None,
    probe_interval: float,
    gc_log: str | None,
    no_stacks: bool,
    tls_cert: str | None,
    tls_key: str | None,
) -> None:
    """Probe a server on this host (PID, --name or --launch; none: the host alone) and
    stream the samples to drivers on other hosts (`perfsleuth run --agent URL`).

    \b
    As a systemd service (docs/agent.md has the whole unit):
      [Service]
      Environment=PERFSLEUTH_AGENT_TOKEN=...   (or EnvironmentFile=)
      ExecStart=perfsleuth agent --name vllm --listen 0.0.0.0:7207
    In Kubernetes, a sidecar in the server's pod with shareProcessNamespace: true
    (docs/agent.md has the manifest).
    """
    from tracker.agent.observe import TargetChoice

    chosen = [x for x in (pid, name, launch) if x is not None]
    if len(chosen) > 1:
        raise UsageError("give at most one of PID, --name and --launch")
    if probe_interval < MIN_PROBE_INTERVAL_S:
        raise UsageError(
            f"--probe-interval: must be at least {MIN_PROBE_INTERVAL_S * 1000:.0f}ms, e.g. 250ms"
        )
    where = parse_listen(listen)
    token = read_token(token_env)
    if token is None and not where.loopback:
        raise UsageError(
            f"--listen: {where.host} is reachable from other hosts, so drivers must send a "
            f"token: export one in ${token_env or DEFAULT_TOKEN_ENV} (e.g. `openssl rand -hex "
            "32`), or listen on 127.0.0.1"
        )
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    for flag, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path is not None and not os.access(path, os.R_OK):
            raise UsageError(f"{flag}: cannot read {path}")
    if tls_cert is not None and tls_key is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls_cert, tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(
                f"--tls-cert / --tls-key: not a certificate and its key in PEM ({exc})"
            ) from None
    argv = None
    if launch is not None:
        try:
            argv = shlex.split(launch)
        except ValueError as exc:
            raise UsageError(
                f"--launch: cannot split {launch!r} ({exc}); check its quotes"
            ) from None
        if not argv:
            raise UsageError("--launch: empty command")
    serve(
        TargetChoice(pid=pid, name=name, launch=argv),
        where,
        token=token,
        interval_s=probe_interval,
        gc_log=gc_log,
        tls=(tls_cert, tls_key) if tls_cert and tls_key else None,
        stacks=not no_stacks,
    )


def _bind(where: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in where.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((where.host, where.port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"--listen: cannot listen on {where.host}:{where.port} ({exc.strerror or exc})"
        ) from None
    sock.listen(128)
    return sock


def serve(
    choice: TargetChoice,
    where: Listen,
    *,
    token: str | None,
    interval_s: float,
    gc_log: str | None,
    tls: tuple[str, str] | None,
    stacks: bool = True,
) -> None:
    """Run the agent until SIGINT / SIGTERM / SIGHUP; exit 0 then."""
    import uvicorn

    from probes import ProbeError
    from tracker import __version__
    from tracker.agent.observe import AgentClock, Observer
    from tracker.agent.protocol import PROTOCOL, Hello
    from tracker.agent.server import AgentServer, Hub, agent_app

    sock = _bind(where)
    hub = Hub()
    clock = AgentClock.from_env()
    observer = Observer(
        choice, hub.publish, interval_s=interval_s, gc_log=gc_log, clock=clock, stacks=stacks
    )
    try:
        observer.start()
    except ProbeError as exc:
        sock.close()
        raise UsageError(str(exc)) from None
    hostname = socket.gethostname()

    def hello() -> Hello:
        return Hello(__version__, PROTOCOL, hostname, interval_s, observer.target_described)

    config = uvicorn.Config(
        agent_app(hub, hello, clock.now, token),
        log_level="warning",
        access_log=False,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
        timeout_graceful_shutdown=2,
    )
    server = AgentServer(config, on_exit=hub.close)
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    shown_host = f"[{host}]" if ":" in host else host
    described = observer.target_described or "this host"
    click.echo(
        f"perfsleuth agent {__version__}: watching {described}; drivers connect to "
        f"{scheme}://{shown_host}:{port}" + (" (token required)" if token else ""),
        err=True,
    )
    if not where.loopback and tls is None:
        click.echo(
            "perfsleuth agent: without --tls-cert the token and the samples cross the "
            "network unencrypted",
            err=True,
        )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        hub.close()
        observer.stop()
        sock.close()
    click.echo("perfsleuth agent: stopped", err=True)
    sys.exit(0)

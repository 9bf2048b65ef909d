"""The process tree perfsleuth watches: found by pid or name, or launched by us.

Used by ``probes.sampler`` (which asks it for the live processes every tick) and by
the tracker CLI, which builds a ``Target`` from ``--pid``, ``--name`` or a command.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import IO, Any

import psutil

from probes._proc import describe_wait_status, read_exit_status

log = logging.getLogger(__name__)

_Output = int | IO[Any] | None

# Bounds the ancestor walk in from_name; real trees are far shallower.
_MAX_TREE_DEPTH = 128


class ProbeError(Exception):
    """A target or probe problem the user can fix; the message is one line saying how."""


class Target:
    """A root process plus all its descendants, looked up afresh on every call.

    Build one with :meth:`from_pid`, :meth:`from_name` or :meth:`launch`. Only a
    launched target is owned: :meth:`terminate` refuses to kill anything else.
    """

    def __init__(
        self,
        root: psutil.Process,
        *,
        popen: subprocess.Popen[bytes] | None = None,
        selection_note: str | None = None,
    ) -> None:
        """Wrap an already-found root process; prefer the ``from_*``/``launch`` constructors.

        Args:
            root: The root of the tree.
            popen: Set when perfsleuth started the process and owns it.
            selection_note: Why this root was picked, when the choice was ambiguous.
        """
        self._root = root
        self._popen = popen
        self._death_reason: str | None = None
        self.selection_note = selection_note
        self._tree: list[psutil.Process] = []
        self._tree_at = -float("inf")

    @classmethod
    def from_pid(cls, pid: int) -> Target:
        """Watch an existing process and its descendants.

        Args:
            pid: Process id of the root.

        Raises:
            ProbeError: No such process, or it already exited.
        """
        if pid <= 0:
            raise ProbeError(f"invalid pid {pid}: pass a positive process id (see `ps`)")
        try:
            root = psutil.Process(pid)
            status = root.status()
        except psutil.NoSuchProcess:
            raise ProbeError(f"no process with pid {pid}: check the pid with `ps`") from None
        except psutil.AccessDenied:
            raise ProbeError(
                f"permission denied inspecting pid {pid}: run as root or as its user"
            ) from None
        if status == psutil.STATUS_ZOMBIE:
            raise ProbeError(f"process {pid} has already exited: start it again and retry")
        return cls(root)

    @classmethod
    def from_name(cls, pattern: str) -> Target:
        """Watch the process whose name or command line contains ``pattern``.

        perfsleuth itself and its ancestors (e.g. the shell that started it) are
        never matched. When several unrelated trees match, the oldest root wins
        and :attr:`selection_note` says so (it is also logged).

        Args:
            pattern: Case-sensitive substring of the process name or command line.

        Raises:
            ProbeError: Empty pattern or nothing matches.
        """
        if not pattern:
            raise ProbeError("empty process pattern: pass part of the target's name or command")
        me = psutil.Process()
        excluded = {me.pid, *(p.pid for p in me.parents())}
        parent_of: dict[int, int] = {}
        matches: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["ppid", "name", "cmdline", "status"]):
            info = proc.info
            parent_of[proc.pid] = info["ppid"] or 0
            if proc.pid in excluded or info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(info["cmdline"] or ())
            if pattern in (info["name"] or "") or pattern in cmdline:
                matches[proc.pid] = proc
        if not matches:
            raise ProbeError(
                f"no process name or command line contains {pattern!r}: "
                f"check with `ps -eo pid,args | grep -- {pattern!r}`"
            )
        roots = [p for p in matches.values() if not _has_ancestor_in(p.pid, parent_of, matches)]
        roots.sort(key=_create_time_or_inf)
        chosen = roots[0]
        note = None
        if len(roots) > 1:
            others = ", ".join(str(p.pid) for p in roots[1:6])
            note = (
                f"{len(roots)} process trees match {pattern!r}; watching the oldest, "
                f"pid {chosen.pid} (others: {others}): pass a pid to choose another"
            )
            log.warning(note)
        return cls(chosen, selection_note=note)

    @classmethod
    def launch(
        cls,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        stdout: _Output = None,
        stderr: _Output = None,
    ) -> Target:
        """Start a command and watch it; the returned target owns the process.

        The child gets its own session (so a terminal Ctrl-C reaches perfsleuth,
        which then shuts the target down in order) and stdin from /dev/null (so it
        cannot steal keystrokes from the TUI).

        Args:
            argv: Program and arguments; no shell is involved.
            env: Variables added to (overriding) perfsleuth's own environment.
            cwd: Working directory for the child.
            stdout: Where the child's stdout goes (as for ``subprocess.Popen``).
            stderr: Where the child's stderr goes (as for ``subprocess.Popen``).

        Raises:
            ProbeError: Empty command, program not found or not executable.
        """
        if not argv:
            raise ProbeError("empty command: pass the program to launch and its arguments")
        program = argv[0]
        full_env = {**os.environ, **env} if env is not None else None
        try:
            popen = subprocess.Popen(
                list(argv),
                env=full_env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=_dies_with_perfsleuth(),
            )
        except FileNotFoundError:
            raise ProbeError(
                f"cannot launch {program!r}: command not found: check the spelling and PATH"
            ) from None
        except PermissionError:
            raise ProbeError(
                f"cannot launch {program!r}: permission denied: check it is executable"
            ) from None
        except OSError as exc:
            raise ProbeError(
                f"cannot launch {program!r}: {exc.strerror}: check the command"
            ) from None
        # The pid cannot be recycled before we poll() it, so this lookup is safe.
        return cls(psutil.Process(popen.pid), popen=popen)

    @property
    def pid(self) -> int:
        """Process id of the root."""
        return self._root.pid

    @property
    def label(self) -> str:
        """`name[pid]` of the root process, or `pid N` once it is gone."""
        try:
            return f"{self._root.name()}[{self.pid}]"
        except psutil.Error:
            return f"pid {self.pid}"

    @property
    def owned(self) -> bool:
        """True when perfsleuth launched the process and may terminate it."""
        return self._popen is not None

    @property
    def alive(self) -> bool:
        """True while the root process runs (a zombie counts as dead)."""
        if self._death_reason is not None:
            return False
        reason = self._check_death()
        if reason is None:
            return True
        self._death_reason = reason
        return False

    @property
    def death_reason(self) -> str | None:
        """Why the root is gone, e.g. "exited with code 3"; None while it is alive."""
        return None if self.alive else self._death_reason

    def processes(self, max_age_s: float = 0.0) -> list[psutil.Process]:
        """Return the root and all its live descendants.

        Workers forked since the last call are included, exited ones dropped.
        Never raises because a process vanished; a dead root yields ``[]``.

        Args:
            max_age_s: How old the list of descendants may be. Finding descendants
                means reading every process's parent on the host (~17 µs a process),
                so the sampler reuses the list for up to a second and only drops the
                processes that exited meanwhile; 0 looks afresh.
        """
        if not self.alive:
            return []
        now = time.monotonic()
        if now - self._tree_at < max_age_s:
            return [p for p in self._tree if _is_live(p)]
        self._tree = self._scan()
        self._tree_at = now
        return list(self._tree)

    def _scan(self) -> list[psutil.Process]:
        try:
            children = self._root.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return []
        except psutil.AccessDenied:
            children = []
        procs = [self._root]
        for child in children:
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    procs.append(child)
            except psutil.Error:
                continue
        return procs

    def terminate(self, timeout: float = 5.0) -> None:
        """Stop a launched target: SIGTERM its process group, SIGKILL what remains.

        Idempotent. Descendants that left the process group are killed too.

        Args:
            timeout: Seconds to wait for a graceful exit before SIGKILL.

        Raises:
            ProbeError: The target was not launched by perfsleuth.
        """
        popen = self._popen
        if popen is None:
            raise ProbeError(f"refusing to terminate pid {self.pid}: perfsleuth did not start it")
        descendants = self.processes()[1:]
        _signal_group(popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        try:
            # Reap the root through Popen: psutil.wait_procs would reap it behind
            # Popen's back and the exit status ("killed by SIGTERM") would be lost.
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
        remaining = _wait_gone(descendants, deadline)
        for proc in remaining:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _signal_group(popen.pid, signal.SIGKILL)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("pid %d did not exit after SIGKILL", popen.pid)
        _ = self.alive  # records the death reason while the exit status is at hand

    def close(self) -> None:
        """Terminate the target if perfsleuth owns it; do nothing otherwise."""
        if self.owned:
            self.terminate()

    def __enter__(self) -> Target:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "alive" if self.alive else f"dead: {self._death_reason}"
        return f"Target(pid={self.pid}, owned={self.owned}, {state})"

    def _check_death(self) -> str | None:
        """Return the death reason if the root is gone, else None."""
        if self._popen is not None:
            code = self._popen.poll()
            if code is None:
                return None
            if code < 0:
                return describe_wait_status(-code)  # Popen encodes "killed by N" as -N
            return f"exited with code {code}"
        try:
            if not self._root.is_running():
                return f"process {self.pid} vanished"
            if self._root.status() != psutil.STATUS_ZOMBIE:
                return None
        except psutil.NoSuchProcess:
            return f"process {self.pid} vanished"
        except psutil.AccessDenied:
            return None
        status = read_exit_status(self.pid)
        if status is None:
            return f"process {self.pid} exited"
        return describe_wait_status(status)


def _has_ancestor_in(pid: int, parent_of: Mapping[int, int], candidates: Mapping[int, Any]) -> bool:
    """True when some ancestor of ``pid`` is also a candidate (so pid is not a root)."""
    current = parent_of.get(pid, 0)
    for _ in range(_MAX_TREE_DEPTH):
        if current <= 0:
            return False
        if current in candidates:
            return True
        current = parent_of.get(current, 0)
    return False


def _create_time_or_inf(proc: psutil.Process) -> float:
    try:
        return proc.create_time()
    except psutil.Error:
        return float("inf")


def _is_gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _wait_gone(procs: list[psutil.Process], deadline: float) -> list[psutil.Process]:
    """Wait until ``deadline`` for processes to exit; return those still running.

    Unlike ``psutil.wait_procs`` a zombie counts as gone: orphans are reaped by
    pid 1, which in some containers takes seconds.
    """
    remaining = [p for p in procs if not _is_gone(p)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.02)
        remaining = [p for p in remaining if not _is_gone(p)]
    return remaining


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _is_live(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


#: PR_SET_PDEATHSIG from <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1


def _dies_with_perfsleuth() -> Callable[[], None] | None:
    """A preexec_fn that has Linux send the launched command SIGTERM when perfsleuth dies,
    by SIGKILL too: a launched server must not outlive the run holding its port. (The
    signal comes when the launching *thread* exits: commands are launched from the main
    thread.) None where prctl is not to be had."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def in_the_child() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # perfsleuth died before the request was made
            os.kill(os.getpid(), signal.SIGTERM)

    return in_the_child

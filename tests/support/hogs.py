"""External fault generators: busy CPU hogs and fsync'd writers, outside the target's tree.

Used by ``benchmarks/attribution_matrix.py`` (its ``ext_cpu`` and ``ext_io`` conditions,
imported with ``tests/`` put on ``sys.path``) and by the attribution tests, which need a
neighbour that slows a server down without being part of the process tree perfsleuth
probes (the example server's own ``/admin/fault`` hogs are its children, so they are).

Each generator is a plain ``python -I -S -c`` child of the *caller*. It stops on
``stop()`` / leaving the ``with`` block, and also by itself: after ``max_s`` seconds, or as
soon as its parent is gone (``os.getppid()`` changes when the caller dies, even by SIGKILL,
when no cleanup of ours can run). A writer deletes its file on the way out; its directory
is removed by the caller.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# One child program for both kinds keeps the self-stopping rules in one place. The checks
# run every ~20,000 iterations (a millisecond or two) or every write, so a child outlives
# its deadline or its parent by at most that plus one fsync.
_CHILD = r"""
import os, signal, sys, time
kind, parent, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
# A terminated writer still removes its file (the finally below), as on Ctrl-C.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

def wanted():
    return os.getppid() == parent and time.monotonic() < deadline

if kind == "perfsleuth-hog-cpu":
    x = 1
    while wanted():
        for i in range(20000):
            x = (x * 1103515245 + i) & 0xFFFFFFFF
else:
    path, chunk, limit = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    buf = os.urandom(chunk)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    offset = 0
    try:
        while wanted():
            os.pwrite(fd, buf, offset)
            os.fsync(fd)
            offset = offset + chunk if offset + 2 * chunk <= limit else 0
    finally:
        os.close(fd)
        os.unlink(path)
"""


@dataclass
class Generators:
    """Running generator processes (children of the caller, not of any target)."""

    procs: list[subprocess.Popen[bytes]]
    directory: Path | None = None  # the writers' private directory, removed on stop()
    files: list[Path] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def running(self) -> int:
        """How many are still running."""
        return sum(1 for p in self.procs if p.poll() is None)

    def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``; idempotent."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def _spawn(kind: str, max_s: float, *extra: str) -> subprocess.Popen[bytes]:
    # -I -S: no site, no user environment, so no sitecustomize (e.g. perfsleuth's GC agent
    # on a PYTHONPATH) loads into a hog, and startup stays ~20 ms. No inherited stdio: a
    # caller reading its own output must still see EOF while the generators run.
    argv = [sys.executable, "-I", "-S", "-c", _CHILD, kind, str(os.getpid()), str(max_s)]
    null = subprocess.DEVNULL
    return subprocess.Popen([*argv, *extra], stdin=null, stdout=null, stderr=null)


def _check_max_s(max_s: float) -> None:
    if not 0 < max_s < float("inf"):
        raise ValueError(f"max_s must be a finite number of seconds > 0, got {max_s}")


@contextlib.contextmanager
def cpu_hogs(n: int | None = None, *, max_s: float = 120.0) -> Iterator[Generators]:
    """``n`` busy pure-Python processes (default: one per CPU) until the block exits.

    Each holds a core like the example server's engine thread does, so on a machine with
    fewer free cores than hogs plus the server, the server's threads wait for a CPU.
    """
    _check_max_s(max_s)
    count = (os.cpu_count() or 1) if n is None else n
    if count < 1:
        raise ValueError(f"n must be >= 1, got {count}")
    gens = Generators([])
    try:
        for _ in range(count):
            gens.procs.append(_spawn("perfsleuth-hog-cpu", max_s))
        yield gens
    finally:
        gens.stop()


@contextlib.contextmanager
def fsync_writer(
    directory: str | os.PathLike[str] | None = None,
    *,
    writers: int = 1,
    chunk_bytes: int = 64 * 1024,
    max_bytes: int = 64 * 1024 * 1024,
    max_s: float = 120.0,
) -> Iterator[Generators]:
    """``writers`` processes each writing ``chunk_bytes`` then fsync-ing, in a loop.

    Each overwrites its own file in turn, so it never holds more than ``max_bytes`` on
    disk; the files live in a fresh directory under ``directory`` (default: the temp
    directory) that is removed when the block exits. Each fsync waits for the device, so
    the writes load the disk (and its queue) rather than the page cache. On tmpfs fsync
    costs nothing: put ``directory`` on a real disk.
    """
    _check_max_s(max_s)
    if writers < 1:
        raise ValueError(f"writers must be >= 1, got {writers}")
    if not 0 < chunk_bytes <= max_bytes:
        raise ValueError(f"need 0 < chunk_bytes <= max_bytes, got {chunk_bytes}, {max_bytes}")
    where = Path(tempfile.mkdtemp(prefix="perfsleuth-fsync-", dir=directory))
    gens = Generators([], directory=where)
    try:
        for i in range(writers):
            path = where / f"writer{i}.bin"
            gens.files.append(path)
            extra = (str(path), str(chunk_bytes), str(max_bytes))
            gens.procs.append(_spawn("perfsleuth-hog-fsync", max_s, *extra))
        yield gens
    finally:
        gens.stop()

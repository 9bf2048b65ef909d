"""The machine shared between the suite's parallel workers (pytest-xdist).

Most tests tolerate another test running beside them (they assert relations measured in
the same run, with margins for a busy machine). A few measure the machine itself: they
inject a fault and check that perfsleuth attributes it (CPU hogs, disk writers, a GC
storm), or that a quiet run raises no alarm; another worker's load is then a second,
uncontrolled fault. Those are marked `alone` and hold the machine exclusively; every
other test holds it shared. A readers-writer lock over two files with flock(2), with
writer preference so that an `alone` test is not starved by a stream of shared ones:
it takes the turnstile, which shared takers must pass, before waiting for the lock.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def machine_held(directory: Path, *, alone: bool) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "turnstile", "a") as turnstile, open(directory / "machine", "a") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            if alone:
                fcntl.flock(lock, fcntl.LOCK_EX)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        if not alone:
            fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

"""GC estimate for an attached Python process: share of native py-spy samples inside the GC.

Used by the tracker for Python targets it did not launch (a launched one gets exact pauses
from the in-process agent). CPython runs its cyclic collector holding the GIL, so
``py-spy record --native --gil`` sees the collector's C function on the GIL holder's stack
for the share of time a collection runs; that share times 1000 is ``gc.pause_ms_per_s``,
estimated. py-spy names C frames from the ELF symbol table, and the collector is a
``static`` function: a stripped interpreter (Debian's ``/usr/bin/python3``) shows no
such frame, so the probe checks the table first and says why when the estimate cannot run.
"""

from __future__ import annotations

import logging
import re
import struct
import time
from pathlib import Path
from typing import BinaryIO, ClassVar

import psutil

from probes.stacks.profile import parse_frame, split_stack
from probes.stacks.pyspy import Failure, PySpyError, PySpyWorker, RecordedWindow

log = logging.getLogger(__name__)

DEFAULT_GC_RATE_HZ = 10
"""Native samples per second; each stops the target while py-spy unwinds (docs/probes.md)."""

# py-spy stops every thread of the target for each native sample, ~15 us per thread
# (1.6 ms with 110 threads, measured). The rate is capped so that thread-samples stay under
# this many per second, i.e. the target stays stopped well under 1% of the time.
_THREAD_SAMPLES_PER_S = 600

DEFAULT_GC_WINDOW_S = 5
"""Seconds per py-spy run: a native start-up costs ~37 ms of CPU, so windows are longer."""

GC_FUNCTIONS = frozenset(
    {
        "gc_collect_main",  # CPython 3.10-3.13 (3.8 and 3.9: "collect", see gc_symbol_in)
        "gc_collect_region",  # 3.14 incremental collector: young, increment and full
        "gc_collect_young",
        "gc_collect_increment",
        "gc_collect_full",
        "gc_collect_internal",  # free-threaded builds
    }
)
"""C functions that run a collection; GCC may add suffixes (``.lto_priv.0``, ``.isra.0``).
py-spy keeps a libpython frame in native stacks only if its name starts with one of a few
prefixes, ``gc`` among them (``native_stack_trace.rs``), so these are visible."""

_GC_NAME = re.compile(
    rb"\x00(?:"
    + b"|".join(re.escape(n.encode()) for n in sorted(GC_FUNCTIONS))
    + rb")(?:\.[\w.]*)?\x00"
)
_LIBPYTHON = re.compile(r"libpython\d+\.\d+[a-z]*\.so")
_SHT_SYMTAB = 2
# Slack on top of a window's length before its estimate counts as stale (py-spy stalled).
_STALE_AFTER_S = 3.0


def is_gc_stack(stack: str) -> bool:
    """True when a collapsed native stack is inside the cyclic garbage collector."""
    return any(
        parse_frame(label).name.split(".")[0] in GC_FUNCTIONS for label in split_stack(stack)
    )


def gc_share(window: RecordedWindow) -> float | None:
    """Fraction of sampled instants spent in a collection, or None if nothing was sampled."""
    if window.intervals <= 0:
        return None
    in_gc = sum(count for stack, count in window.stacks.items() if is_gc_stack(stack))
    return min(1.0, in_gc / window.intervals)


def interpreter_binary(pid: int) -> Path:
    """Return the ELF file holding the target's interpreter: its libpython, else its executable.

    Raises:
        OSError: The process is gone or its maps cannot be read.
    """
    maps = Path(f"/proc/{pid}/maps").read_text()
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and _LIBPYTHON.search(Path(parts[5]).name):
            # Through /proc/PID/root, so a target in another mount namespace resolves.
            inside = Path(f"/proc/{pid}/root{parts[5]}")
            return inside if inside.exists() else Path(parts[5])
    return Path(f"/proc/{pid}/exe")


def gc_symbol_in(path: Path) -> bool | None:
    """Say whether the ELF file's symbol table (``.symtab``) names a collector function.

    Only ``.symtab`` counts: py-spy does not read separate debug files (checked with
    Debian's python3.11-dbg installed), and the collector is not in ``.dynsym``.

    Returns:
        True when found; False when there is a symbol table without one (CPython 3.9
        and older call it ``collect``, a name py-spy drops from native stacks); None
        when there is no symbol table at all (a stripped binary).

    Raises:
        OSError: The file cannot be read.
        ValueError: It is not an ELF file.
    """
    with open(path, "rb") as f:
        tables = _symtab_string_tables(f)
        for offset, size in tables:
            f.seek(offset)
            if _GC_NAME.search(b"\x00" + f.read(size)):
                return True
    return False if tables else None


def _symtab_string_tables(f: BinaryIO) -> list[tuple[int, int]]:
    """Return (offset, size) of the string table of every SHT_SYMTAB section."""
    ident = f.read(16)
    if ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise ValueError("not an ELF file")
    is64 = ident[4] == 2
    order = "<" if ident[5] == 1 else ">"
    header = struct.Struct(order + ("HHIQQQIHHHHHH" if is64 else "HHIIIIIHHHHHH"))
    fields = header.unpack(f.read(header.size))
    shoff, shentsize, shnum = fields[5], fields[10], fields[11]
    section = struct.Struct(order + ("IIQQQQIIQQ" if is64 else "IIIIIIIIII"))
    if shoff == 0 or shentsize < section.size:
        return []
    f.seek(shoff)
    first = section.unpack(f.read(section.size))
    if shnum == 0:  # more sections than fit the header: the count is in section 0
        shnum = first[5]
    headers = [first]
    for _ in range(1, min(shnum, 65536)):
        f.seek(shoff + len(headers) * shentsize)
        headers.append(section.unpack(f.read(section.size)))
    tables = []
    for sh in headers:
        link = sh[6]
        if sh[1] == _SHT_SYMTAB and link < len(headers):
            tables.append((headers[link][4], headers[link][5]))
    return tables


class GcEstimateProbe(PySpyWorker):
    """Samples ``gc.pause_ms_per_s_estimate`` for an attached Python process.

    Runs back-to-back one-second ``py-spy record --native --gil`` windows on its own
    thread (started by the first :meth:`sample`); each sample pauses the target while
    py-spy unwinds the GIL holder's C stack. Call :meth:`close` when the run ends.
    """

    name = "gc_estimate"
    thread_label = "gc-estimate"
    METRICS: ClassVar[dict[str, tuple[str, str]]] = {
        "gc.pause_ms_per_s_estimate": (
            "ms/s",
            "estimated Python GC time per second: share of py-spy native samples in the "
            "collector (attached targets; an estimate)",
        ),
    }

    def __init__(
        self,
        pid: int,
        rate_hz: int = DEFAULT_GC_RATE_HZ,
        *,
        window_s: int = DEFAULT_GC_WINDOW_S,
        py_spy: str | None = None,
    ) -> None:
        """Configure the probe; nothing runs until the first :meth:`sample`.

        Args:
            pid: The Python process to sample.
            rate_hz: Native samples per second (whole: py-spy's ``--rate``); lowered for
                targets with many threads, see :meth:`rate_for`.
            window_s: Seconds each estimate covers (whole: py-spy's ``--duration``).
            py_spy: Path of the py-spy binary; default: next to this Python, then PATH.

        Raises:
            ValueError: ``rate_hz`` is below 1 or a window would hold fewer than 2 instants.
        """
        if rate_hz < 1 or window_s < 1 or rate_hz * window_s < 2:
            raise ValueError(
                f"need rate_hz >= 1, window_s >= 1, 2+ instants a window: {rate_hz}, {window_s}"
            )
        super().__init__(pid, py_spy)
        self.rate_hz = int(rate_hz)
        self.window_s = int(window_s)
        self._latest: tuple[float, float] | None = None  # (end_mono, ms per s)

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        """Return the estimate from the last complete window.

        Args:
            now: ``time.monotonic()`` of this tick.
            procs: Target tree; empty means no live target, so nothing is returned.

        Returns:
            ``{"gc.pause_ms_per_s_estimate": ...}``, or nothing before the first window.
        """
        if self.unavailable or not procs:
            return {}
        self._start()
        with self._lock:
            latest = self._latest
        if latest is None or now - latest[0] > self.window_s + _STALE_AFTER_S:
            return {}
        return {"gc.pause_ms_per_s_estimate": latest[1]}

    def rate_for(self, threads: int) -> int:
        """Samples per second used for a target with ``threads`` threads (2 at least)."""
        return max(2, min(self.rate_hz, _THREAD_SAMPLES_PER_S // max(1, threads)))

    def latest(self) -> tuple[float, float] | None:
        """Return (``time.monotonic()`` at its end, ms per s) of the last window, if any."""
        with self._lock:
            return self._latest

    def _threads(self) -> int:
        try:
            return psutil.Process(self.pid).num_threads()
        except psutil.Error:
            return 1  # gone or hidden: py-spy will say which

    def _symbol_problem(self) -> str | None:
        try:
            binary = interpreter_binary(self.pid)
            found = gc_symbol_in(binary)
            shown = binary.resolve() if binary.name == "exe" else binary
        except (OSError, ValueError) as exc:
            return f"cannot read pid {self.pid}'s interpreter to find its GC symbol: {exc}"
        shown_text = str(shown).removeprefix(f"/proc/{self.pid}/root")
        if found:
            return None
        if found is None:
            return (
                f"GC estimate needs an interpreter with a symbol table; {shown_text} is "
                "stripped (e.g. Debian's python3): use a pyenv or python.org build"
            )
        return (
            f"GC estimate needs CPython 3.10+: {shown_text} has no gc_collect_* function "
            "for py-spy to show"
        )

    def _run(self) -> None:
        failures = 0
        checked = False
        ever_sampled = False
        while not self._stop.is_set():
            try:
                window = self._spy.record(
                    seconds=self.window_s,
                    rate_hz=self.rate_for(self._threads()),
                    native=True,
                    gil_only=True,
                )
            except PySpyError as exc:
                if exc.kind is Failure.GONE:
                    if not ever_sampled and not self._stop.is_set():
                        self.unavailable = f"no live process with pid {self.pid} to sample"
                    break
                failures += 1
                # NOT_PYTHON while a launched interpreter starts up: retry for a while.
                if exc.kind in (Failure.PERMISSION, Failure.MISSING) or failures >= 5:
                    self.unavailable = exc.reason
                    break
                log.debug("py-spy record of pid %d failed: %s", self.pid, exc.reason)
                self._stop.wait(1.0)
                continue
            failures = 0
            ever_sampled = True
            if not checked:
                # Checked only now that py-spy found the interpreter: before that, a
                # just-launched process may not have mapped its libpython yet.
                problem = self._symbol_problem()
                if problem:
                    self.unavailable = problem
                    break
                checked = True
            share = gc_share(window) if window.complete else None
            if share is None:
                continue  # stopped early: the target exited or we are closing
            with self._lock:
                self._latest = (time.monotonic(), 1000.0 * share)

"""perfsleuth's GC agent entry point, imported by Python's ``site`` at interpreter start.

``PythonGcProbe.launch_env`` (``probes.gc.python``) puts this directory first on the
PYTHONPATH of a server perfsleuth launches. Here: start the agent when
PERFSLEUTH_GC_SOCKET is set and the interpreter is CPython 3.8+, then run the
environment's own ``sitecustomize`` (Debian's, a venv's...) that this module shadows.

Top-level statements only, in syntax every Python parses: an old interpreter that finds
this file must neither fail nor print anything. Every Python process of the target pays
for this file at start, so it imports only what the interpreter has already loaded.
"""

import os
import sys

if (
    os.environ.get("PERFSLEUTH_GC_SOCKET")
    and sys.version_info >= (3, 8)
    and sys.implementation.name == "cpython"
):
    try:
        __import__("perfsleuth_gc_agent").install(os.environ["PERFSLEUTH_GC_SOCKET"])
    except Exception as exc:  # noqa: BLE001  (the server must start regardless)
        sys.stderr.write("perfsleuth GC agent not started: %r\n" % (exc,))  # noqa: UP031

# Run the next sitecustomize on sys.path, skipping this directory (listed once or more).
if sys.version_info >= (3, 5):  # noqa: UP036  (old Pythons read this file too)
    try:
        # importlib's frozen core is loaded at startup already; importlib.util would
        # pull in contextlib and collections (~3 ms) in every process.
        from _frozen_importlib import module_from_spec
        from _frozen_importlib_external import PathFinder
    except ImportError:
        from importlib.machinery import PathFinder
        from importlib.util import module_from_spec

    _here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    _after = []
    _seen = False
    for _entry in sys.path:
        _mine = os.path.realpath(os.path.abspath(_entry or os.curdir)) == _here
        _seen = _seen or _mine
        if _seen and not _mine:
            _after.append(_entry)
    _spec = PathFinder.find_spec("sitecustomize", _after)
    if _spec is not None and _spec.loader is not None:
        _module = module_from_spec(_spec)
        # Replaces this module: `import sitecustomize` later finds the environment's own.
        sys.modules["sitecustomize"] = _module
        _spec.loader.exec_module(_module)

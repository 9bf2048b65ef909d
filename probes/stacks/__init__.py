"""Stack sampling of Python targets with py-spy.

`probe` (the `StackProbe`: one profile per window, GIL and idle shares), `pyspy` (running
py-spy), `profile` (the collapsed-stack shape profiles are kept in, and what is read from
them), `gc_estimate` (the GC share of an attached process's native stacks).
"""

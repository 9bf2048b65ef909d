"""perfsleuth: drive load at an HTTP service while watching the server, store and explain it.

Kept cheap to import: the CLI, the store (SQLAlchemy) and the TUI (Textual) load lazily.
"""

__version__ = "0.1.0"

"""The Textual screens: the live screen of `run`, `demo` and `attach` (drawn by a process
of its own, fed by `screen_link`), and the history and compare screens.

The only package that imports textual. Names are imported from their modules on first
use: the run's process needs `state` and `screen_link` without loading Textual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tracker._lazy import lazy_exports

if TYPE_CHECKING:
    from tracker.tui.history_app import HistoryApp
    from tracker.tui.history_data import Source
    from tracker.tui.live import LiveApp, LiveFeed
    from tracker.tui.screen_link import ScreenFeed, run_live
    from tracker.tui.state import LiveState, WindowPoints

_HOMES = {
    "HistoryApp": "history_app",
    "Source": "history_data",
    "LiveApp": "live",
    "LiveFeed": "live",
    "ScreenFeed": "screen_link",
    "run_live": "screen_link",
    "LiveState": "state",
    "WindowPoints": "state",
}
__all__ = [
    "HistoryApp",
    "LiveApp",
    "LiveFeed",
    "LiveState",
    "ScreenFeed",
    "Source",
    "WindowPoints",
    "run_live",
]

__getattr__ = lazy_exports(__name__, _HOMES)

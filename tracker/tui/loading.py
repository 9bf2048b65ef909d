"""Ending a widget's loading state so that the footer shows its keys again."""

from __future__ import annotations

from textual.widget import Widget


def stop_loading(widget: Widget) -> None:
    """Clear `widget.loading` and have the footer redrawn from the current bindings.

    Textual leaves a loading widget's own bindings out of the screen's active bindings
    even when it has focus, and clearing `loading` does not tell the footer. A table that
    took focus while it was loading (auto-focus on mount) then kept a footer without its
    keys (no "⏎ Compare") until some other binding change happened to redraw it."""
    widget.loading = False
    widget.refresh_bindings()

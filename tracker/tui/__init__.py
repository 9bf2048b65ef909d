"""The Textual live, history and compare screens (only this package imports textual)."""

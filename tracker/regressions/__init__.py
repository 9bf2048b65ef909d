"""Regressions across runs: a baseline SPEC resolved to stored runs and a run compared
with it (`baseline`), and a scenario's nightly series with its change points and their
acceptance (`history`). The statistics live in `tracker.analysis`; this package reads the
store for them."""

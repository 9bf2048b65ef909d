"""Analysis of stored runs: comparison against a baseline (`compare`), change points
across a scenario's history (`changepoints`, `history`), and (later) degradation and
cause attribution inside a run.

Pure computation over plain records: nothing here speaks SQL or draws a screen.
"""

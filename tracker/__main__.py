"""`python -m tracker` runs the perfsleuth CLI (for tests, and when the script is not on PATH)."""

from tracker.cli import main

main()

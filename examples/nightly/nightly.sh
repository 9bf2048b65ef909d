#!/usr/bin/env bash
# Nightly performance check: start the example LLM server on loopback, drive a fixed
# load at it while probing it, compare tonight's run with the last nights, and write a
# Markdown report (for a PR / job summary) and a JUnit report (for the CI's test view).
#
# Exit status: 0 no regression; 1 a regression (or an SLO failed, or an unaccepted change
# point in the history); 2 bad input; 4 the run itself failed.
#
# Settings (environment): PERFSLEUTH_DB (the history; default a SQLite file here),
# BASELINE (default last:5), DURATION (default 30s), PORT (default 8731), OUT (report
# directory, default perf-report), PERFSLEUTH and PYTHON (the commands to use).
set -euo pipefail
cd "$(dirname "$0")/../.."

PERFSLEUTH=${PERFSLEUTH:-perfsleuth}
PYTHON=${PYTHON:-python3}
export PERFSLEUTH_DB=${PERFSLEUTH_DB:-sqlite:///perfsleuth-history.db}
BASELINE=${BASELINE:-last:5}
DURATION=${DURATION:-30s}
PORT=${PORT:-8731}
OUT=${OUT:-perf-report}
mkdir -p "$OUT"

# The service under test. A real pipeline starts tonight's build here instead; the
# port stays fixed because the URL is part of what makes runs comparable.
"$PYTHON" examples/llm_server.py --port "$PORT" 2>"$OUT/server.log" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
"$PYTHON" - "$PORT" <<'PY'
import sys, time, urllib.request
deadline = time.monotonic() + 30
while True:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1)
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("the server did not answer /health within 30 s")
        time.sleep(0.2)
PY

status=0
"$PERFSLEUTH" run --url "http://127.0.0.1:$PORT/v1/completions" \
    --body '{"model": "sim", "prompt": "Summarise the nightly build log", "max_tokens": 32, "stream": true}' \
    --stream sse --rate 4 --duration "$DURATION" --warmup 2s \
    --attach "$server" --tag nightly --json "$OUT/run.json" || status=$?

if [ "$status" -le 1 ]; then
    # One comparison, three renderings; the Markdown one decides the exit status.
    "$PERFSLEUTH" compare latest --baseline "$BASELINE" --format junit --out "$OUT/report.xml" || true
    "$PERFSLEUTH" compare latest --baseline "$BASELINE" --format json --out "$OUT/compare.json" || true
    "$PERFSLEUTH" compare latest --baseline "$BASELINE" --format md --out "$OUT/report.md" || status=$?
    cat "$OUT/report.md"
fi
exit "$status"

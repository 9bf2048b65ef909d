#!/usr/bin/env bash
# Installs the peers the benchmarks compare perfsleuth against. Idempotent; needs root
# (or sudo) for apt. Nothing here is a perfsleuth dependency: the peers live in their
# own venv (benchmarks/.venv, git-ignored) so pyproject.toml stays untouched.
#
#   bash benchmarks/install_peers.sh            # apt peers + bench venv
#   BENCH_VENV=/some/where bash benchmarks/install_peers.sh
#
# Afterwards run the drivers with the bench venv's Python, e.g.
#   benchmarks/.venv/bin/python benchmarks/driver_throughput.py --repeats 3
# They call the `perfsleuth` found next to the current venv, on PATH, or via --perfsleuth.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
venv="${BENCH_VENV:-$here/.venv}"

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- system peers: nginx (the target), wrk and hey (load generators) ------------------
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
command -v hey >/dev/null || missing+=(hey)
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    sudo_ apt-get update -qq
    for pkg in "${missing[@]}"; do
        # hey is optional (the fidelity driver reports "not available" without it).
        if ! sudo_ apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null; then
            echo "install_peers: apt package '$pkg' could not be installed" >&2
            [ "$pkg" = hey ] || exit 1
        fi
    done
fi
# The Debian package starts a system nginx on port 80; the benchmarks run their own
# instance from a temp dir, so stop the system one if it was just started (best effort).
if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
    sudo_ systemctl stop nginx || true
fi

# --- Python peers: Locust (FastHttpUser), aiohttp (reference clients), psutil, and -----
# --- perfsleuth itself so the bench venv is self-contained ------------------------------
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "locust>=2.20" "aiohttp>=3.9" "psutil>=5.9"
"$venv/bin/pip" install -q -e "$repo"

echo "install_peers: done"
echo "  nginx: $(command -v nginx || echo /usr/sbin/nginx)"
echo "  wrk:   $(command -v wrk || echo missing)"
echo "  hey:   $(command -v hey || echo missing)"
echo "  venv:  $venv ($("$venv/bin/python" -c 'import locust, aiohttp; print("locust", locust.__version__, "aiohttp", aiohttp.__version__)'))"

"""A misbehaving server gives classified errors, and the run still ends on time."""

from __future__ import annotations

import json
import time

import pytest
from cli_helpers import perfsleuth
from support.odd_server import running_odd_server


@pytest.fixture(scope="module")
def odd():
    with running_odd_server() as url:
        yield url


@pytest.mark.parametrize(
    ("path", "extra", "error_class"),
    [
        ("/trickle", ["--timeout", "1s"], "timeout"),
        ("/garbage-sse", ["--stream", "sse"], "protocol"),
        ("/reset", [], "protocol"),
    ],
)
def test_errors_are_classified_and_the_run_is_bounded(odd, tmp_path, path, extra, error_class):
    out = tmp_path / "r.json"
    started = time.monotonic()
    done = perfsleuth(
        "run", "--url", odd + path, "--users", "2", "--duration", "2s", *extra,
        "--json", str(out), "--db", f"sqlite:///{tmp_path / 'r.db'}", cwd=tmp_path,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    # Every request failed: the run measured a broken endpoint, and fails (--max-error-rate).
    assert done.returncode == 4, done.stderr
    doc = json.loads(out.read_text())
    assert doc["status"] == "failed"
    assert f"requests failed (mostly {error_class}" in doc["error"]
    assert doc["requests"]["errors"] >= 2
    assert doc["requests"]["errors_by_class"][error_class] == doc["requests"]["errors"]
    # The trickling server never finishes a body: the total deadline ends each request.
    assert elapsed < 15


def test_ok_path_is_fine(odd, tmp_path):
    out = tmp_path / "r.json"
    done = perfsleuth(
        "run", "--url", odd + "/ok", "--rate", "20", "--duration", "2s",
        "--json", str(out), "--db", f"sqlite:///{tmp_path / 'r.db'}", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["requests"]["ok"] >= 38
    assert doc["requests"]["errors"] == 0
    assert 19 <= doc["throughput_rps"] <= 21

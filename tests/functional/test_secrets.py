"""Secrets stay secret wherever a user puts them: in a header, the body, the query string
or the URL's userinfo, from the environment (`${NAME}`) or written literally in a URL.
The server gets them; the store's bytes, every output format and every error do not."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from cli_helpers import perfsleuth
from scenario_helpers import run_scenario
from support.llm_server import free_port
from support.sample_app import running_sample_app

ENV_SECRET = "sk-env-5ecret-0001"
USER_PASSWORD = "literal-pa55word-0002"
QUERY_SECRET = "literal-query-5ecret-0003"
FLAG_PASSWORD = "literal-pa55word-0004"
FLAG_QUERY_SECRET = "literal-query-5ecret-0005"
# What the server must get for the userinfo. The check below, written by this test, holds
# it; the header itself is redacted by name.
BASIC = base64.b64encode(f"user:{ENV_SECRET}".encode()).decode()
SECRETS = (ENV_SECRET, USER_PASSWORD, QUERY_SECRET, FLAG_PASSWORD, FLAG_QUERY_SECRET)


def _scenario(app: str) -> str:
    return f"""
        name = "secrets"
        url = "{app.replace("http://", "http://user:${PERFSLEUTH_TEST_KEY}@")}"
        [defaults.headers]
        X-Api-Key = "${{PERFSLEUTH_TEST_KEY}}"
        [load]
        rate = 10
        duration = "2s"
        [[requests]]
        method = "POST"
        path = "/echo?token=${{PERFSLEUTH_TEST_KEY}}&api_key={QUERY_SECRET}&model=m"
        json = {{prompt = "say ${{PERFSLEUTH_TEST_KEY}}"}}
        checks = [
            {{json = "headers.authorization", equals = "Basic {BASIC}"}},
            {{json = "headers.x-api-key", equals = "{ENV_SECRET}"}},
            {{json = "query.token", equals = "{ENV_SECRET}"}},
            {{json = "query.api_key"}},  # exists (its value here would be stored)
            {{json = "body.prompt", equals = "say {ENV_SECRET}"}},
        ]
    """


def _leaks(blob: str | bytes) -> list[str]:
    text = blob.decode("latin-1") if isinstance(blob, bytes) else blob
    return [s for s in SECRETS if s in text]


@pytest.mark.timeout(150)
def test_no_secret_reaches_the_store_an_output_or_an_error(tmp_path: Path) -> None:
    env = {"PERFSLEUTH_TEST_KEY": ENV_SECRET}
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    seen: dict[str, str | bytes] = {}

    def cli(label: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = perfsleuth(*args, "--db", db, cwd=tmp_path, env=env)
        seen[f"{label} stdout"], seen[f"{label} stderr"] = done.stdout, done.stderr
        return done

    with running_sample_app() as app:
        for attempt in (1, 2):  # two runs of one scenario, to compare
            code, doc, stdout, stderr = run_scenario(tmp_path, _scenario(app), env=env)
            assert code == 0, stderr
            # Every check passed: the server got each secret where it was put.
            assert doc is not None and doc["requests"]["errors"] == 0, doc["requests"]
            assert doc["requests"]["ok"] >= 10
            seen[f"scenario run {attempt}"] = stdout + stderr + json.dumps(doc)
        url = app.replace("http://", f"http://user:{FLAG_PASSWORD}@")
        flagged = f"{url}/echo?access_token={FLAG_QUERY_SECRET}"
        done = cli("flags run", "run", "--url", flagged, "--rate", "10", "--duration", "1s")
        assert done.returncode == 0, done.stderr

    # Nothing listens there now: the connect error, and the failed run it stores.
    closed = f"http://user:{FLAG_PASSWORD}@127.0.0.1:{free_port()}/x?key={FLAG_QUERY_SECRET}"
    assert cli("unreachable", "run", "--url", closed, "--duration", "1s").returncode == 4
    (tmp_path / "bad.toml").write_text(_scenario("http://127.0.0.1:99999"))
    assert cli("bad url", "run", str(tmp_path / "bad.toml")).returncode == 2
    assert "bad port" in str(seen["bad url stderr"])

    for run in ("1", "3"):
        cli(f"show {run}", "show", run)
        cli(f"show {run} json", "show", run, "--json")
    for fmt in ("text", "md", "json", "junit"):
        cli(f"compare {fmt}", "compare", "2", "--baseline", "1", "--format", fmt)
    for fmt in ("csv", "hdr"):
        assert cli(f"export {fmt}", "export", "2", "--format", fmt, "--out", "-").returncode == 0
    cli("history", "history", "--no-tui")
    cli("history json", "history", "--json")
    cli("history scenario", "history", "--scenario", "secrets", "--no-tui")
    for path in tmp_path.glob("runs.db*"):  # the database, its WAL and shared memory
        seen[path.name] = path.read_bytes()

    assert len(seen) > 20
    leaks = {label: found for label, blob in seen.items() if (found := _leaks(blob))}
    assert not leaks, leaks
    # The URL is still shown, with what identifies the endpoint.
    shown = json.loads(str(seen["show 3 json stdout"]))
    assert shown["url"].endswith("/echo?access_token=<redacted>"), shown["url"]
    assert "user" not in shown["url"]

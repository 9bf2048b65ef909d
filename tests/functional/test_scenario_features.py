"""Datasets, templating, checks, secrets and SLO thresholds, end to end."""

from __future__ import annotations

import json

import pytest
from scenario_helpers import run_scenario
from support.llm_server import running_llm_server
from support.sample_app import running_sample_app

SECRET = "sk-test-0123456789abcdef"


@pytest.fixture(scope="module")
def app():
    with running_sample_app() as url:
        yield url


def test_dataset_rows_fill_templates_and_unique_rows_run_out(app, tmp_path):
    rows = [{"prompt": f"question {i}", "max_tokens": i} for i in range(5)]
    (tmp_path / "prompts.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    toml = f"""
        name = "feed"
        url = "{app}"
        [datasets.prompts]
        file = "prompts.jsonl"
        mode = "unique"
        [load]
        rate = 20
        duration = "2s"
        [[requests]]
        path = "/echo"
        dataset = "prompts"
        json = {{prompt = "{{{{ prompt }}}}", max_tokens = "{{{{ max_tokens }}}}"}}
        checks = [
            {{json = "body.max_tokens", exists = true}},
            {{json = "body.prompt", equals = "question 0"}},
        ]
    """
    # Four of the five rows fail the second check by design: keep the run.
    code, doc, _, err = run_scenario(tmp_path, toml, "--max-error-rate", "0")
    assert code == 0, err
    # Five unique rows: five requests, then the request is retired.
    assert doc["requests"]["total"] == 5
    # The equals check passes for row 0 only: the rendered bodies really differ.
    assert doc["requests"]["ok"] == 1
    assert doc["requests"]["errors_by_class"]["check_failed"] == 4


def test_status_checks_and_contains(app, tmp_path):
    toml = f"""
        name = "checks"
        url = "{app}"
        [load]
        users = 1
        duration = "1s"
        [[requests]]
        name = "notfound-is-fine"
        path = "/status/404"
        checks = [{{status = [200, 404]}}]
        [[requests]]
        name = "wrong-text"
        path = "/ok"
        checks = [{{contains = "nope"}}]
    """
    # Half the requests fail their checks by design: keep the run (no --max-error-rate).
    code, doc, _, err = run_scenario(tmp_path, toml, "--max-error-rate", "0")
    assert code == 0, err
    by_name = doc["requests_by_name"]
    assert by_name["notfound-is-fine"]["errors"] == 0
    assert by_name["wrong-text"]["ok"] == 0
    assert doc["requests"]["errors_by_class"]["check_failed"] == by_name["wrong-text"]["errors"]


def test_secrets_from_the_environment_reach_the_server_but_never_the_store(app, tmp_path):
    toml = f"""
        name = "secret"
        url = "{app}"
        [defaults.headers]
        Authorization = "Bearer ${{PERFSLEUTH_TEST_KEY}}"
        X-Team = "${{PERFSLEUTH_TEST_KEY}}-t"
        [load]
        users = 1
        duration = "1s"
        [[requests]]
        path = "/echo"
        checks = [{{json = "headers.authorization", equals = "Bearer {SECRET}"}}]
    """
    code, doc, stdout, err = run_scenario(tmp_path, toml, env={"PERFSLEUTH_TEST_KEY": SECRET})
    assert code == 0, err
    assert doc["requests"]["ok"] >= 5
    assert doc["requests"]["errors"] == 0  # the server saw the real header
    for blob in (
        json.dumps(doc),
        stdout,
        err,
        (tmp_path / "runs.db").read_bytes().decode("latin-1"),
    ):
        assert SECRET not in blob
    wal = tmp_path / "runs.db-wal"
    if wal.exists():
        assert SECRET.encode() not in wal.read_bytes()


def test_missing_environment_variable_is_a_usage_error(app, tmp_path):
    toml = f"""
        name = "secret"
        url = "{app}"
        [defaults]
        headers = {{Authorization = "Bearer ${{PERFSLEUTH_SURELY_UNSET}}"}}
        [load]
        users = 1
        duration = "1s"
        [[requests]]
        path = "/ok"
    """
    code, doc, _, err = run_scenario(tmp_path, toml)
    assert code == 2
    assert doc is None
    assert "PERFSLEUTH_SURELY_UNSET" in err and "Traceback" not in err


@pytest.mark.timeout(120)
def test_slo_thresholds_and_goodput_on_the_llm_server(tmp_path):
    with running_llm_server() as server:
        base = f"""
            name = "llm-slo"
            url = "{server.url}"
            [load]
            rate = 4
            duration = "3s"
            [[requests]]
            path = "/v1/completions"
            stream = "sse"
            json = {{model = "m", prompt = "hello there", max_tokens = 8, stream = true}}
            [goodput]
            ttft = "5s"
            e2e = "10s"
        """
        passing = base + '[slo]\nlatency_p99 = "10s"\nerror_rate = 0.05\nttft_p95 = "5s"\n'
        code, doc, out, err = run_scenario(tmp_path, passing)
        assert code == 0, err
        assert all(r["passed"] for r in doc["slo"])
        assert len(doc["slo"]) == 3
        assert doc["llm"]["goodput_rps"] == pytest.approx(doc["throughput_rps"], rel=0.01)
        failing = base + '[slo]\nlatency_p50 = "1ms"\nthroughput_rps = 1\n'
        code, doc, out, err = run_scenario(tmp_path, failing)
        assert code == 1
        assert "SLO failed: latency_p50 <= 1 ms" in err
        assert [r["passed"] for r in doc["slo"]] == [False, True]
        assert "FAILED" in out

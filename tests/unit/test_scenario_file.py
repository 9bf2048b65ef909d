"""Scenario files: what they mean, and a clear error for everything they can get wrong."""

from __future__ import annotations

import textwrap

import pytest

from tracker.errors import UsageError
from tracker.scenario.fields import lookup_json_path, parse_json_path
from tracker.scenario.toml_file import load_scenario

BASE = """
name = "s"
url = "http://127.0.0.1:8000"
[load]
rate = 5
duration = "10s"
[[requests]]
path = "/v1/completions"
"""


def _load(tmp_path, text, env=None):
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(text))
    return load_scenario(path, environ=env or {})


def test_minimal_file(tmp_path):
    s = _load(tmp_path, BASE)
    assert s.name == "s" and s.base_url == "http://127.0.0.1:8000"
    assert s.load.model == "open" and s.load.rate == 5 and s.load.duration_s == 10
    assert s.request.method == "GET" and s.request.timeout_s == 60


def test_full_file(tmp_path):
    (tmp_path / "p.csv").write_text("prompt,n\nhello,1\n")
    s = _load(
        tmp_path,
        """
        name = "full"
        url = "http://127.0.0.1:8000"
        probe_interval = "100ms"
        [target]
        launch = "python server.py --port 8000"
        [defaults]
        headers = {Authorization = "Bearer ${KEY}"}
        timeout = "5s"
        stream = "sse"
        [datasets.p]
        file = "p.csv"
        mode = "random"
        seed = 4
        [load]
        stages = [{duration = "10s", target = 5}, {duration = "20s", target = 5}]
        warmup = "5s"
        arrival = "poisson"
        max_inflight = 8
        on_full = "drop"
        [[requests]]
        name = "chat"
        path = "/v1/chat/completions"
        dataset = "p"
        json = {messages = [{role = "user", content = "{{ prompt }}"}]}
        weight = 2
        checks = [{status = 200}, {json = "choices[0].message", exists = true}]
        [slo]
        latency_p99 = "2s"
        ttft_p95 = "500ms"
        error_rate = 0.05
        [goodput]
        ttft = "1s"
        tpot = "50ms"
        """,
        env={"KEY": "sk-1"},
    )
    assert s.probe_interval_s == pytest.approx(0.1)
    assert s.target is not None and s.target.launch == ("python", "server.py", "--port", "8000")
    req = s.request
    assert req.method == "POST" and req.stream == "sse" and req.timeout_s == 5
    assert dict(req.headers)["Authorization"] == "Bearer sk-1"
    assert req.dataset == "p" and req.weight == 2 and len(req.checks) == 2
    assert s.load.duration_s == 30 and s.load.stages == ((10.0, 5.0), (20.0, 5.0))
    assert s.load.max_inflight == 8 and s.load.on_full == "drop"
    assert [t.describe() for t in s.thresholds] == [
        "latency_p99 <= 2000 ms",
        "ttft_p95 <= 500 ms",
        "error_rate <= 0.05",
    ]
    assert s.goodput is not None and s.goodput.tpot_ms == 50
    stored = str(s.to_json())
    assert "sk-1" not in stored and "<redacted>" in stored
    assert (
        s.identity()
        == _load(tmp_path, (tmp_path / "s.toml").read_text(), {"KEY": "sk-1"}).identity()
    )


def test_closed_model_keys(tmp_path):
    s = _load(
        tmp_path,
        BASE.replace("rate = 5", 'users = 3\nthink_time = ["100ms", "300ms"]\npacing = "1s"'),
    )
    assert s.load.model == "closed" and s.load.users == 3
    assert s.load.think_time == (0.1, 0.3) and s.load.pacing_s == 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("rate = 5", "rat = 5"), "unknown key 'rat'; did you mean 'rate'?"),
        (("rate = 5", "rate = -5"), "load.rate: must be greater than 0"),
        (("rate = 5", 'rate = "fast"'), "load.rate: expected a number"),
        (('duration = "10s"', 'duration = "ten"'), "load.duration"),
        (('duration = "10s"', ""), "load.duration: is required"),
        (("rate = 5", "rate = 5\nusers = 2"), "users belongs to the closed model"),
        (("rate = 5", 'stages = [{duration = "5s", target = 3}]'), "the stages set the duration"),
        (("rate = 5", 'rate = 5\npacing = "1s"'), "belong to the closed model"),
        (('path = "/v1/completions"', 'path = "v1"'), "must start with '/'"),
        (('path = "/v1/completions"', 'path = "/x"\nmethod = "FETCH"'), "is not one of"),
        (('path = "/v1/completions"', 'path = "/x"\njson = {a = "{{ missing }}"}'), "'missing'"),
        (('path = "/v1/completions"', 'path = "/x"\ndataset = "nope"'), "no dataset named 'nope'"),
        (('path = "/v1/completions"', 'path = "/x"\nchecks = [{status = 999}]'), "HTTP status"),
        (('path = "/v1/completions"', 'path = "/x"\nchecks = [{json = "a..b"}]'), "bad JSON path"),
        (
            ('path = "/v1/completions"', 'path = "/x"\n[slo]\nlatency_p99 = 2000'),
            "give a duration with a unit",
        ),
        (
            ('path = "/v1/completions"', 'path = "/x"\n[slo]\nlatncy_p99 = "1s"'),
            "did you mean 'latency_p99'",
        ),
        (
            ('path = "/v1/completions"', 'path = "/x"\n[slo]\nerror_rate = 5'),
            "fraction between 0 and 1",
        ),
        (('url = "http://127.0.0.1:8000"', 'url = "127.0.0.1"'), "not an http(s) URL"),
        (('url = "http://127.0.0.1:8000"', 'url = "http://h/v1"'), "base URL only"),
        (
            ('path = "/v1/completions"', 'path = "/x"\nheaders = {X-A = "1\\r\\nX-B: 2"}'),
            "would split the request",
        ),
        (
            ('path = "/v1/completions"', 'path = "/x"\nheaders = {"X A" = "1"}'),
            "not a valid HTTP header name",
        ),
    ],
)
def test_errors_name_the_key_and_the_fix(tmp_path, change, message):
    old, new = change
    with pytest.raises(UsageError) as info:
        _load(tmp_path, BASE.replace(old, new, 1))
    assert message in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "s.toml"))


def test_file_level_errors(tmp_path):
    with pytest.raises(UsageError, match="no such scenario file"):
        load_scenario(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("name = \n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_scenario(tmp_path / "bad.toml")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(UsageError, match=r"empty\.jsonl"):
        _load(tmp_path, BASE + 'dataset = "d"\n[datasets.d]\nfile = "empty.jsonl"\n')


def test_json_paths():
    assert parse_json_path("choices[0].text") == ("choices", 0, "text")
    assert parse_json_path("choices.0.text") == ("choices", 0, "text")
    doc = {"choices": [{"text": "hi"}]}
    assert lookup_json_path(doc, ("choices", 0, "text")) == (True, "hi")
    assert lookup_json_path(doc, ("choices", 1, "text")) == (False, None)
    assert lookup_json_path(doc, ("nope",)) == (False, None)


def test_target_launch_reads_the_environment_and_its_quotes_are_checked(tmp_path):
    text = BASE + '[target]\nlaunch = "python server.py --key ${SERVER_KEY}"\n'
    s = _load(tmp_path, text, env={"SERVER_KEY": "k-123456789"})
    assert s.target is not None and s.target.launch[-1] == "k-123456789"
    assert "k-123456789" not in str(s.to_json())  # an environment value: a secret
    with pytest.raises(UsageError, match="check its quotes"):
        _load(tmp_path, BASE + "[target]\nlaunch = 'python \"unterminated'\n")


def test_more_users_than_the_driver_can_hold_connections_for(tmp_path):
    text = BASE.replace("rate = 5", "users = 100000000")
    with pytest.raises(UsageError, match=r"load.users: 100000000 concurrent.*ulimit -n"):
        _load(tmp_path, text)

"""Multi-turn sessions: extraction between steps, chat history, per-turn TTFT."""

from __future__ import annotations

import httpx
import pytest
from scenario_helpers import run_scenario
from support.llm_server import running_llm_server
from support.sample_app import running_sample_app


@pytest.fixture(scope="module")
def app():
    with running_sample_app() as url:
        yield url


def test_values_extracted_from_one_step_feed_the_next(app, tmp_path):
    toml = f"""
        name = "extract"
        url = "{app}"
        [load]
        rate = 5
        duration = "2s"
        [[requests]]
        name = "submit"
        path = "/echo"
        json = {{task_id = "task-42"}}
        [[requests]]
        name = "follow"
        path = "/echo"
        json = {{got = "{{{{ task_id }}}}", num = "{{{{ num }}}}", kind = "{{{{ kind }}}}"}}
        checks = [
            {{json = "body.got", equals = "task-42"}},
            {{json = "body.num", equals = "42"}},
            {{json = "body.kind", equals = "application/json"}},
        ]
        [[session.steps]]
        request = "submit"
        pause = "100ms"
        [session.steps.extract]
        task_id = {{json = "body.task_id"}}
        num = {{regex = "task-(\\\\d+)"}}
        kind = {{header = "Content-Type"}}
        [[session.steps]]
        request = "follow"
    """
    code, doc, out, err = run_scenario(tmp_path, toml)
    assert code == 0, err
    assert doc["sessions"]["ok"] == 10
    assert doc["sessions"]["failed"] == 0
    by_name = doc["requests_by_name"]
    assert by_name["submit"]["ok"] == by_name["follow"]["ok"] == 10
    # A session lasts its two requests plus the 100 ms pause.
    assert doc["sessions"]["duration_ms"]["p50"] >= 100
    assert "sessions (10 ok, 0 failed)" in out


def test_an_extraction_that_finds_nothing_fails_the_session(app, tmp_path):
    toml = f"""
        name = "extract"
        url = "{app}"
        [load]
        users = 1
        duration = "1s"
        [[requests]]
        name = "submit"
        path = "/echo"
        json = {{a = 1}}
        [[requests]]
        name = "never"
        path = "/echo?x={{{{ missing }}}}"
        [[session.steps]]
        request = "submit"
        extract = {{missing = {{json = "body.nope"}}}}
        [[session.steps]]
        request = "never"
    """
    code, doc, _, err = run_scenario(tmp_path, toml)
    assert code == 4, err  # every session failed: so did the run (--max-error-rate)
    assert doc["status"] == "failed" and "(mostly extract_failed" in doc["error"]
    assert doc["sessions"]["ok"] == 0
    assert doc["sessions"]["failed"] == doc["requests"]["errors"] >= 5
    assert doc["requests"]["errors_by_class"]["extract_failed"] == doc["requests"]["errors"]
    assert "never" not in (doc["requests_by_name"] or {})


def test_a_template_variable_no_step_extracts_is_refused_before_the_run(app, tmp_path):
    toml = f"""
        name = "bad"
        url = "{app}"
        [load]
        users = 1
        duration = "1s"
        [[requests]]
        name = "a"
        path = "/echo?x={{{{ later }}}}"
        [[requests]]
        name = "b"
        path = "/echo"
        [[session.steps]]
        request = "a"
        [[session.steps]]
        request = "b"
        extract = {{later = {{json = "body"}}}}
    """
    code, doc, _, err = run_scenario(tmp_path, toml)
    assert code == 2
    assert doc is None
    assert "'later'" in err and "session.steps[0]" in err


CHAT = """
    name = "chat"
    url = "{url}"
    [load]
    rate = 4
    duration = "3s"
    seed = 1
    [defaults]
    stream = "sse"
    [[requests]]
    name = "opening"
    path = "/v1/chat/completions"
    [requests.json]
    model = "m"
    max_tokens = 4
    stream = true
    messages = [{{role = "user", content = "{prompt}"}}]
    [[requests]]
    name = "followup"
    path = "/v1/chat/completions"
    [requests.json]
    model = "m"
    max_tokens = 4
    stream = true
    messages = [{{role = "user", content = "and then?"}}]
    [session]
    chat_history = true
    # Pauses interleave the sessions, so a one-entry cache is mostly holding another's.
    # They are drawn (seeded), so a later turn does not arrive in phase with the openings
    # of the sessions started at a constant rate (see the test).
    [[session.steps]]
    request = "opening"
    pause = ["100ms", "500ms"]
    [[session.steps]]
    request = "followup"
    pause = ["100ms", "500ms"]
    [[session.steps]]
    request = "followup"
"""

# A long first prompt makes prefill (and so a cache miss) expensive.
PROMPT = " ".join(f"word{i}" for i in range(400))


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("kv_capacity", "later_turns_faster"), [("64", True), ("1", False)])
def test_chat_history_exercises_the_servers_context_cache(
    tmp_path, kv_capacity, later_turns_faster
):
    # Steps that wait rather than burn CPU: the server's timings do not stretch when the
    # machine is busy. Short steps (4 ms + 0.5 ms a sequence) beside an 80 ms prefill of
    # the opening make the prefill the bulk of an uncached turn's TTFT, and keep the
    # engine idle enough (openings ~30% of its time; ~100% of it when nothing is kept)
    # that a later turn rarely shares a step with another session's opening.
    with running_llm_server(
        "--kv-capacity", kv_capacity, "--prefill-ms-per-token", "0.2", "--step-cost", "wait",
        "--step-ms", "4", "--per-seq-ms", "0.5",
    ) as server:  # fmt: skip
        code, doc, out, err = run_scenario(tmp_path, CHAT.format(url=server.url, prompt=PROMPT))
        cache = httpx.get(server.url + "/admin/state").json()["kv_cache"]
    assert code == 0, err
    assert doc["sessions"]["ok"] == 12
    by_turn = doc["llm"]["ttft_by_turn_ms"]
    assert set(by_turn) == {"1", "2", "3"}
    first, third = by_turn["1"]["p50"], by_turn["3"]["p50"]
    # Turn 3 resends the 400-token opening: ~80 ms of prefill unless the server kept the
    # conversation's context, in which case only the short follow-up is new. Kept, turn
    # 3's p50 read 0.07-0.17x of the first turn's (idle and with two CPU hogs); evicted,
    # 0.95-1.06x. With fixed 300 ms pauses (and CPU-burning steps, 200 ms prefill) turn 3
    # fell a whole number of periods after its own opening, just as a new one started, and
    # read 0.3-0.75x when kept.
    if later_turns_faster:
        assert third < 0.4 * first, by_turn
        assert cache["hits"] == 2 * 12, cache  # every later turn found its conversation
    else:
        assert third > 0.6 * first, by_turn
        assert cache["misses"] > cache["hits"], cache
    assert "TTFT turn 3" in out

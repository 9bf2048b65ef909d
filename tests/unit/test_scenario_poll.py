"""A session step's `poll` (asynchronous task APIs): what it means, and an error naming
the key and the fix for everything it can get wrong."""

from __future__ import annotations

import textwrap

import pytest

from tracker.errors import UsageError
from tracker.scenario import Condition, PollSpec
from tracker.scenario.toml_file import load_scenario

TASKS = """
name = "tasks"
url = "http://127.0.0.1:8000"
[load]
rate = 5
duration = "10s"
[[requests]]
name = "submit"
method = "POST"
path = "/v1/tasks"
json = { prompt = "hi", max_tokens = 100 }
[[requests]]
name = "status"
path = "/v1/tasks/{{ task_id }}"
[[session.steps]]
request = "submit"
extract = { task_id = { json = "task_id" } }
[[session.steps]]
request = "status"
extract = { status = { json = "status" } }
poll = { until = { status = "done" }, fail = { status = ["failed", "cancelled"] }, POLL }
"""


def _load(tmp_path, text):
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(text))
    return load_scenario(path, environ={})


def _tasks(extra: str = 'interval = "200ms"') -> str:
    return TASKS.replace("POLL", extra)


def test_a_polling_step_reads_as_the_task_it_waits_for(tmp_path):
    s = _load(tmp_path, _tasks(
        'interval = "100ms", backoff = 2, max_interval = "1s", max_wait = "30s", '
        'queue_wait = { json = "queue_ms" }'
    ))  # fmt: skip
    submit, status = s.session.steps
    assert submit.poll is None
    poll = status.poll
    assert isinstance(poll, PollSpec)
    assert poll.until == Condition((("status", ("done",)),))
    assert poll.fail == Condition((("status", ("failed", "cancelled")),))
    assert (poll.interval_s, poll.backoff, poll.max_interval_s, poll.max_wait_s) == (
        0.1, 2.0, 1.0, 30.0,
    )  # fmt: skip
    assert poll.queue_wait is not None and poll.queue_wait.path == ("queue_ms",)
    # Waits grow by the backoff up to the cap.
    assert [poll.wait_after(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_defaults_poll_every_200ms_for_up_to_a_minute(tmp_path):
    poll = _load(tmp_path, _tasks('interval = "200ms"')).session.steps[1].poll
    assert (poll.interval_s, poll.backoff, poll.max_interval_s, poll.max_wait_s) == (
        0.2, 1.0, None, 60.0,
    )  # fmt: skip
    assert poll.queue_wait is None


def test_conditions_match_json_values_of_their_own_type():
    done = Condition((("status", ("done",)), ("code", (0,))))
    assert done.holds({"status": "done", "code": 0})
    assert done.holds({"status": "done", "code": 0.0})  # numbers are numbers
    assert not done.holds({"status": "done", "code": False})  # JSON false is not 0
    assert not done.holds({"status": "done"})  # missing: not yet
    assert not done.holds({"status": "running", "code": 0})


@pytest.mark.parametrize(
    ("poll", "message"),
    [
        ('interval = "0s"', "poll.interval: must be longer than 0s"),
        ("backoff = 0.5", "poll.backoff: must be at least 1"),
        ('interval = "1s", max_interval = "500ms"', "poll.max_interval: must be at least"),
        ('interval = "1s", max_wait = "500ms"', "poll.max_wait: must be at least"),
        ('every = "1s"', "unknown key 'every'"),
        ('queue_wait = { jsn = "q" }', "poll.queue_wait"),
    ],
)
def test_bad_poll_settings_name_the_key(tmp_path, poll, message):
    with pytest.raises(UsageError) as info:
        _load(tmp_path, _tasks(poll))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('until = { status = "done" }, ', "", "poll.until: is required"),
        ('until = { status = "done" }', 'until = { state = "done" }',
         "'state' is not extracted by this step (it extracts: status)"),
        ('until = { status = "done" }', 'until = { status = {} }',
         "expected a string, number or boolean"),
        ('until = { status = "done" }', "until = []", "expected a table of variable"),
    ],
)  # fmt: skip
def test_bad_conditions_say_what_to_extract(tmp_path, old, new, message):
    with pytest.raises(UsageError) as info:
        _load(tmp_path, _tasks().replace(old, new))
    assert message in str(info.value)


def test_a_poll_needs_a_submission_before_it(tmp_path):
    first = (
        _tasks()
        .replace(
            '[[session.steps]]\nrequest = "submit"\nextract = { task_id = { json = "task_id" } }\n',
            "",
        )
        .replace("/v1/tasks/{{ task_id }}", "/v1/tasks/1")
    )
    with pytest.raises(UsageError, match="the first step cannot poll"):
        _load(tmp_path, first)
    paused = _tasks().replace(
        'extract = { task_id = { json = "task_id" } }',
        'extract = { task_id = { json = "task_id" } }\npause = "1s"',
    )
    with pytest.raises(UsageError, match="give it no pause"):
        _load(tmp_path, paused)


def test_task_slos_read_the_tasks_section(tmp_path):
    s = _load(tmp_path, _tasks() + '[slo]\ntask_p99 = "3s"\ntask_queue_p50 = "500ms"\n')
    assert {(t.section, t.stat) for t in s.thresholds} == {
        ("tasks.e2e_ms", "p99"),
        ("tasks.queue_ms", "p50"),
    }

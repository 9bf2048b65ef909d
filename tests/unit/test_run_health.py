"""When a run's requests were too broken for its numbers to count (run_health)."""

from __future__ import annotations

from tracker.recording.run_health import RunHealth
from tracker.records.window import Window


def _window(
    i: int, ok: int = 0, connect: int = 0, http_5xx: int = 0, *, warmup: bool = False
) -> Window:
    w = Window(index=i, start_s=float(i), warmup=warmup, ok=ok, completed=ok)
    for cls, n in (("connect", connect), ("http_5xx", http_5xx)):
        for _ in range(n):
            w.add_error(cls)
            w.completed += 1
    return w


def _health(*windows: Window) -> RunHealth:
    health = RunHealth()
    for w in windows:
        health.add(w)
    return health


def test_a_target_that_stops_answering_to_the_end_is_gone() -> None:
    health = _health(
        *(_window(i, ok=10) for i in range(6)), *(_window(i, connect=10) for i in range(6, 10))
    )
    assert health.gone_at_s() == 6.0
    reason = health.failure(0.5)
    assert reason is not None and "stopped answering at 6s" in reason
    # Seconds in which nothing completed (requests hanging) neither end nor extend it.
    health.add(_window(10))
    assert health.gone_at_s() == 6.0


def test_a_brief_refusal_or_a_target_that_came_back_is_not_gone() -> None:
    restart = [_window(i, ok=10) for i in range(5)] + [_window(5, connect=4), _window(6, ok=10)]
    assert _health(*restart).gone_at_s() is None
    short_tail = [_window(i, ok=10) for i in range(8)] + [
        _window(8, connect=10),
        _window(9, connect=10),
    ]
    assert _health(*short_tail).gone_at_s() is None  # 2 s < GONE_MIN_S


def test_more_errors_than_the_limit_fail_the_run_and_zero_turns_it_off() -> None:
    windows = [_window(i, ok=4, http_5xx=6) for i in range(5)]
    reason = _health(*windows).failure(0.5)
    assert reason is not None and "60% of 50 requests failed (mostly http_5xx: 30)" in reason
    assert _health(*windows).failure(0.7) is None
    assert _health(*windows).failure(0.0) is None
    # Exactly at the limit passes; warm-up windows do not count.
    assert _health(*(_window(i, ok=5, http_5xx=5) for i in range(4))).failure(0.5) is None
    assert _health(_window(0, http_5xx=9, warmup=True), _window(1, ok=9)).failure(0.5) is None

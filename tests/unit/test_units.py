import pytest

from tracker.errors import UsageError
from tracker.units import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("10s", 10.0), ("5m", 300.0), ("1h", 3600.0), ("2.5s", 2.5), ("7", 7.0)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ten", "5x", "-1s", "1s2", "ms"])
def test_parse_duration_rejects_garbage_with_a_hint(text):
    with pytest.raises(UsageError, match=r"duration|negative"):
        parse_duration(text, what="--duration")


def test_format_duration():
    assert format_duration(0.25) == "250ms"
    assert format_duration(12) == "12s"
    assert format_duration(300) == "5.0m"

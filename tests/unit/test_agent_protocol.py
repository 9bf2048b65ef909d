"""The agent protocol's messages, and the agent's --listen parsing."""

from __future__ import annotations

import pytest

from tracker.agent.protocol import (
    PROTOCOL,
    Heartbeat,
    Hello,
    Profile,
    ProtocolMismatch,
    Sample,
    Status,
    check_protocol,
    decode,
    encode,
)
from tracker.cli.agent import Listen, parse_listen
from tracker.errors import UsageError


@pytest.mark.parametrize(
    "message",
    [
        Status("python3[12]", True, {"gpu": "NVML library not found"}),
        Sample(7, 10.25, 10.5, {"cpu.host_pct": 12.5}, True, "a note"),
        Sample(1, None, 3.0, {}, False),
        Profile(1.0, 2.0, 100, {"main;serve;handle": 60}),
        Heartbeat(42.0),
    ],
)
def test_each_message_survives_a_line(message) -> None:
    line = encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == message


def test_a_newer_agents_unknown_lines_are_skipped_and_bad_ones_raise() -> None:
    assert decode(b'{"type": "gpu-topology", "links": 4}') is None
    with pytest.raises(ValueError, match="JSON object"):
        decode(b"[1, 2]")
    with pytest.raises(KeyError):
        decode(b'{"type": "sample", "metrics": {}}')


def test_a_protocol_mismatch_names_both_versions() -> None:
    check_protocol(Hello("0.1.0", PROTOCOL, "gpu-box", 0.25, None), "0.1.0")
    with pytest.raises(ProtocolMismatch) as caught:
        check_protocol(Hello("0.9.0", PROTOCOL + 1, "gpu-box", 0.25, None), "0.1.0")
    message = str(caught.value)
    assert "perfsleuth 0.9.0" in message and "perfsleuth 0.1.0" in message
    assert "gpu-box" in message


@pytest.mark.parametrize(
    ("value", "expected", "loopback"),
    [
        ("127.0.0.1:9000", Listen("127.0.0.1", 9000), True),
        ("127.0.0.1", Listen("127.0.0.1", 7207), True),
        ("[::1]:9000", Listen("::1", 9000), True),
        ("localhost:0", Listen("localhost", 0), True),
        ("0.0.0.0:7207", Listen("0.0.0.0", 7207), False),
        ("[::]:7207", Listen("::", 7207), False),
        ("gpu-box.internal:7207", Listen("gpu-box.internal", 7207), False),
    ],
)
def test_listen_addresses(value: str, expected: Listen, loopback: bool) -> None:
    assert parse_listen(value) == expected
    assert expected.loopback is loopback


@pytest.mark.parametrize("value", ["::1:9000", "host:port", ":9000", "h:70000"])
def test_bad_listen_addresses(value: str) -> None:
    with pytest.raises(UsageError, match="--listen"):
        parse_listen(value)

"""Credentials in URLs: userinfo becomes a Basic header, credential-like query values and
environment secrets are redacted wherever a URL is shown."""

from __future__ import annotations

import base64

import pytest

from tracker.errors import UsageError
from tracker.scenario import build_scenario
from tracker.scenario.flags import validate_url
from tracker.scenario.secrets import REDACTED, redact_query, shown_url, without_userinfo


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/v1/x", "/v1/x"),
        ("/v1/x?model=m&n=2", "/v1/x?model=m&n=2"),
        ("/x?api_key=abc&model=m", f"/x?api_key={REDACTED}&model=m"),
        ("/x?access-token=t#frag", f"/x?access-token={REDACTED}#frag"),
        (
            "/x?Signature=s&X-Amz-Credential=c",
            f"/x?Signature={REDACTED}&X-Amz-Credential={REDACTED}",
        ),
        ("/x?key=&sig=1", f"/x?key=&sig={REDACTED}"),  # an empty value hides nothing
        ("/x?flag&token=t", f"/x?flag&token={REDACTED}"),
        ("http://h:1/x?password=p%20q", f"http://h:1/x?password={REDACTED}"),
    ],
)
def test_credential_like_query_values_are_redacted(given: str, expected: str) -> None:
    assert redact_query(given) == expected


def test_userinfo_becomes_a_basic_header_and_leaves_the_url() -> None:
    url, header = without_userinfo("http://us%40er:p%3Ass@127.0.0.1:8000/v1?x=1")
    assert url == "http://127.0.0.1:8000/v1?x=1"
    assert header == ("Authorization", "Basic " + base64.b64encode(b"us@er:p:ss").decode())
    assert without_userinfo("http://127.0.0.1:8000/") == ("http://127.0.0.1:8000/", None)


def test_shown_url_has_no_credentials_and_no_environment_secret() -> None:
    shown = shown_url("https://u:pw@api.example.com/v1/sk-live-123/x?token=t&m=1", ["sk-live-123"])
    assert shown == f"https://api.example.com/v1/{REDACTED}/x?token={REDACTED}&m=1"


def test_run_url_userinfo_is_sent_as_basic_auth_and_never_named() -> None:
    s = build_scenario(
        url="http://user:hunter2hunter2@127.0.0.1:9/echo?api_key=k-123456", rate=1.0,
        users=None, duration_s=1.0,
    )  # fmt: skip
    assert s.base_url == "http://127.0.0.1:9"
    assert s.request.headers == (
        ("Authorization", "Basic " + base64.b64encode(b"user:hunter2hunter2").decode()),
    )
    assert s.request.path == "/echo?api_key=k-123456"  # sent as written
    for shown in (s.name, s.shown_url, str(s.to_json())):
        assert "hunter2" not in shown and "k-123456" not in shown, shown


def test_a_bad_url_error_does_not_print_its_credentials() -> None:
    with pytest.raises(UsageError) as caught:
        validate_url("http://user:hunter2@127.0.0.1:99999/x?token=tok-secret", secrets=["zz"])
    message = str(caught.value)
    assert "bad port" in message and "hunter2" not in message and "tok-secret" not in message

import pytest

from tracker.errors import UsageError
from tracker.scenario import build_scenario


def _build(**kw):
    args = {
        "url": "http://127.0.0.1:8000/v1/completions",
        "rate": None,
        "users": None,
        "duration_s": 5.0,
    }
    args.update(kw)
    return build_scenario(**args)


def test_url_path_and_defaults():
    s = _build()
    assert s.base_url == "http://127.0.0.1:8000"
    assert s.request.path == "/v1/completions"
    assert s.load.model == "closed" and s.load.users == 1
    assert s.request.method == "GET"


def test_body_implies_post_and_is_parsed():
    s = _build(body='{"prompt": "hi", "max_tokens": 4}', rate=2.0)
    assert s.request.method == "POST"
    assert s.request.body == {"prompt": "hi", "max_tokens": 4}
    assert s.load.model == "open" and s.load.rate == 2.0


def test_identity_is_stable_and_load_sensitive():
    assert _build(rate=2.0).identity() == _build(rate=2.0).identity()
    assert _build(rate=2.0).identity() != _build(rate=3.0).identity()


def test_headers_are_redacted_in_json():
    from dataclasses import replace

    s = _build()
    s = replace(s, requests=(replace(s.request, headers=(("Authorization", "Bearer secret"),)),))
    assert "secret" not in str(s.to_json())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://x"}, "not an http"),
        ({"url": "127.0.0.1:8000"}, "not an http"),
        ({"rate": 0.0}, "--rate"),
        ({"rate": -3.0}, "--rate"),
        ({"users": 0}, "--users"),
        ({"rate": 1.0, "users": 2}, "either --rate"),
        ({"duration_s": 0.0}, "--duration"),
        ({"warmup_s": 9.0}, "--warmup"),
        ({"body": "{not json"}, "--body"),
        ({"method": "FETCH"}, "--method"),
        ({"path": "v1"}, "--path"),
    ],
)
def test_bad_input_names_the_option(kwargs, message):
    with pytest.raises(UsageError, match=message):
        _build(**kwargs)

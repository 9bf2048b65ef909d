"""`${NAME}` env resolution, `{{ name }}` templates, and redaction."""

from __future__ import annotations

import time

import pytest

from tracker.errors import UsageError
from tracker.scenario.datasets import load_dataset
from tracker.scenario.secrets import REDACTED, collect_env_values, redact, redact_json, resolve_env
from tracker.scenario.template import Template, TemplateError, check_variables

ENV = {"OPENAI_API_KEY": "sk-live-123456", "MODEL": "llama-3", "EMPTY": ""}


# --- ${NAME} ---------------------------------------------------------------------------


def test_resolve_env_walks_values_and_leaves_keys_and_input_alone():
    raw = {
        "headers": {"Authorization": "Bearer ${OPENAI_API_KEY}", "${MODEL}": "x"},
        "json": {"model": "${MODEL}", "n": 3, "stop": ["${MODEL}", None], "t": ("${MODEL}",)},
    }
    out = resolve_env(raw, where="requests.chat", environ=ENV)
    assert out["headers"] == {"Authorization": "Bearer sk-live-123456", "${MODEL}": "x"}
    assert out["json"] == {"model": "llama-3", "n": 3, "stop": ["llama-3", None], "t": ("llama-3",)}
    assert raw["json"]["model"] == "${MODEL}"


def test_resolve_env_escape_and_plain_dollars():
    out = resolve_env("$${HOME} costs $5, $$ and ${EMPTY}.", where="x", environ=ENV)
    assert out == "${HOME} costs $5, $$ and ."


def test_resolve_env_missing_variable_names_it_and_where():
    with pytest.raises(UsageError) as err:
        resolve_env(
            {"Authorization": "Bearer ${NOPE_KEY}"}, where="requests.chat.headers", environ={}
        )
    assert str(err.value) == (
        "requests.chat.headers.Authorization: environment variable NOPE_KEY is not set; "
        "export it or remove the reference"
    )


def test_resolve_env_list_index_in_where_and_malformed_reference():
    with pytest.raises(UsageError, match=r"^body\.stop\[1\]: environment variable X "):
        resolve_env({"stop": ["a", "${X}"]}, where="body", environ={})
    with pytest.raises(UsageError, match=r"not start a valid \$\{NAME\} reference"):
        resolve_env("${1BAD}", where="body", environ=ENV)


def test_resolve_env_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("PERFSLEUTH_TEST_VAR", "v")
    assert resolve_env(["${PERFSLEUTH_TEST_VAR}"], where="x") == ["v"]


def test_collect_env_values_reports_referenced_set_non_empty_values():
    raw = {"a": "Bearer ${OPENAI_API_KEY}", "b": ["${MODEL}", "${MISSING}", "${EMPTY}", "$${X}"]}
    assert collect_env_values(raw, environ=ENV) == {"sk-live-123456", "llama-3"}


# --- {{ name }} ------------------------------------------------------------------------

BODY = {
    "model": "llama-3",
    "messages": [{"role": "user", "content": "Q{{id}}: {{ prompt }}"}],
    "max_tokens": "{{ max_tokens }}",
    "stop": "{{stop}}",
}
ROW = {"id": 7, "prompt": "Why is the sky blue?", "max_tokens": 64, "stop": ["\n", "."]}


def test_single_placeholder_keeps_type_and_embedded_ones_format_as_text():
    template = Template.compile(BODY, where="requests.chat.json")
    assert template.variables == {"id", "prompt", "max_tokens", "stop"}
    out = template.render(ROW)
    assert out == {
        "model": "llama-3",
        "messages": [{"role": "user", "content": "Q7: Why is the sky blue?"}],
        "max_tokens": 64,
        "stop": ["\n", "."],
    }
    assert BODY["max_tokens"] == "{{ max_tokens }}"


def test_embedded_values_use_json_for_non_scalars():
    template = Template.compile("{{ a }}|{{ b }}|{{ c }}|{{ d }}|{{ e }}", where="x")
    rendered = template.render({"a": {"k": "é"}, "b": [1, 2], "c": True, "d": None, "e": 0.5})
    assert rendered == '{"k": "é"}|[1, 2]|true|null|0.5'


def test_literal_braces_around_placeholders_survive():
    template = Template.compile('{"q": "{{ q }}"} {x} }} {{', where="x")
    assert template.render({"q": "hi"}) == '{"q": "hi"} {x} }} {{'


def test_dict_keys_render_as_text_and_nested_lists():
    template = Template.compile(
        {"{{ field }}": "v", "n_{{ i }}": [["{{ i }}", "static"], {"deep": ["{{ field }}"]}]},
        where="x",
    )
    out = template.render({"field": "name", "i": 3})
    assert out == {"name": "v", "n_3": [[3, "static"], {"deep": ["name"]}]}
    assert Template.compile({"{{ i }}": 1}, where="x").render({"i": 3}) == {"3": 1}


def test_static_parts_are_shared_and_no_placeholder_template_is_identity():
    static = {"model": "m", "messages": [{"role": "user", "content": "hi {x}"}]}
    template = Template.compile(static, where="x")
    assert template.is_static and template.variables == frozenset()
    assert template.render({}) is static
    mixed = {"fixed": {"a": [1, 2]}, "p": "{{ p }}"}
    out = Template.compile(mixed, where="x").render({"p": 1})
    assert out is not mixed and out["fixed"] is mixed["fixed"]


def test_missing_variable_at_render_is_a_template_error():
    template = Template.compile({"content": "say {{ prompt }}"}, where="requests.chat.json")
    with pytest.raises(TemplateError) as err:
        template.render({"other": 1})
    assert err.value.name == "prompt"
    assert str(err.value) == (
        "requests.chat.json: template variable 'prompt' has no value for this request"
    )


@pytest.mark.parametrize("text", ["{{ row.prompt }}", "a {{ }} b", "{{ 1x }}", "{{{ x }}}"])
def test_malformed_placeholder_is_a_usage_error(text):
    with pytest.raises(
        UsageError, match=r"^requests\.a\.json\.c\[0\]: .* is not a valid placeholder"
    ):
        Template.compile({"c": [text]}, where="requests.a.json")


def test_check_variables_messages(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"text": "a", "id": 1}\n{"text": "b", "id": 2, "opt": 1}\n')
    dataset = load_dataset(path, name="prompts")
    template = Template.compile({"p": "{{ prompt }}"}, where="requests.chat.json")
    with pytest.raises(UsageError) as err:
        check_variables(template, where="requests.chat.json", dataset=dataset)
    assert str(err.value) == (
        "requests.chat.json: template variable 'prompt' is not a column of dataset 'prompts' "
        "(columns: id, opt, text) nor an extracted value; fix the name or add the column"
    )
    check_variables(template, where="w", dataset=dataset, extracted={"prompt"})

    with pytest.raises(UsageError, match=r"'a', 'b' are not extracted .* has no dataset"):
        check_variables(Template.compile("{{a}}{{b}}", where="w"), where="w")

    optional = Template.compile("{{ text }} {{ opt }}", where="w")
    with pytest.raises(UsageError, match=r"'opt' is missing from some rows .*prompts.jsonl:1\)"):
        check_variables(optional, where="w", dataset=dataset)
    check_variables(Template.compile("{{ text }}-{{ id }}", where="w"), where="w", dataset=dataset)


def test_render_speed_is_printed_not_asserted():
    template = Template.compile(BODY, where="bench")
    n = 10_000
    start = time.perf_counter()
    for _ in range(n):
        template.render(ROW)
    per = (time.perf_counter() - start) / n
    print(f"\nTemplate.render with 4 placeholders: {per * 1e6:.2f} µs/render")


# --- redaction -------------------------------------------------------------------------


def test_redact_headers_by_name_and_secret_values():
    headers = {
        "Authorization": "Bearer x",
        "proxy-authorization": "x",
        "Cookie": "a=b",
        "Set-Cookie": "a=b",
        "X-Api-Key": "k",
        "Api-Key": "k",
        "X-Auth-Token": "t",
        "X-Client-Secret": "s",
        "X-ApiKey": "k",
        "DB-Password": "p",
        "Content-Type": "application/json",
        "X-Org": "org-sk-live-123456-suffix",
    }
    out = redact(headers, secrets={"sk-live-123456"})
    assert out["Content-Type"] == "application/json"
    assert out["X-Org"] == f"org-{REDACTED}-suffix"
    assert all(v == REDACTED for k, v in out.items() if k not in ("Content-Type", "X-Org"))
    assert list(out) == list(headers)
    assert redact({"Accept": "*/*"}) == {"Accept": "*/*"}


def test_redact_json_replaces_env_secrets_everywhere_in_strings():
    raw = {"h": "Bearer ${OPENAI_API_KEY}", "m": "${MODEL}"}
    secrets = collect_env_values(raw, environ=ENV)
    resolved = resolve_env(raw, where="x", environ=ENV)
    data = {
        "request": resolved,
        "list": ["sk-live-123456", 5, None, ("llama-3-large",)],
        "sk-live-123456": True,
    }
    out = redact_json(data, secrets)
    assert out == {
        "request": {"h": f"Bearer {REDACTED}", "m": REDACTED},
        "list": [REDACTED, 5, None, (f"{REDACTED}-large",)],
        REDACTED: True,
    }
    assert data["request"]["m"] == "llama-3"
    assert redact_json(data, ["", ""]) is data


def test_redact_json_prefers_the_longest_overlapping_secret():
    assert redact_json("abcdef", ["abc", "abcdef"]) == REDACTED

"""Request templating: `${NAME}` environment references and `{{ name }}` placeholders.

Used by `tracker.scenario` and `tracker.driver.engine`. The two syntaxes resolve at
different times:

* `${NAME}` is an environment variable, resolved once when the scenario is loaded by
  `resolve_env` (`$${` writes a literal `${`). Every value read from the environment is
  treated as a secret: `collect_env_values` returns them so the caller can pass them to
  `redact_json` before anything is stored or printed.
* `{{ name }}` is a per-request variable (a dataset column or an extracted value),
  rendered for each request by a `Template` compiled once before the run. Resolve env
  references first: their values then become part of the template text.

JSON-like values are what `json.loads` or `tomllib` return: dicts, lists, strings,
numbers, booleans and None (tuples are accepted and kept as tuples).
"""

from __future__ import annotations

import json
import operator
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from tracker.errors import UsageError

if TYPE_CHECKING:
    from tracker.driver.feeders import Dataset

JSONLike: TypeAlias = Any
"""A dict / list / str / int / float / bool / None tree (see the module docstring)."""

REDACTED = "<redacted>"

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# `$${` first so an escaped brace is never read as a reference; a bare `${` that is not
# a well-formed reference is caught rather than sent to the server as literal text.
_ENV_REF = re.compile(rf"\$\$\{{|\$\{{({_NAME})\}}|\$\{{")
_PLACEHOLDER = re.compile(rf"\{{\{{\s*({_NAME})\s*\}}\}}")
_ANY_BRACES = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)

_SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)
_SENSITIVE_PARTS = ("token", "secret", "api-key", "apikey", "password", "auth")


# --- ${NAME}: environment, once at load time ------------------------------------------


def resolve_env(
    value: JSONLike, *, where: str, environ: Mapping[str, str] | None = None
) -> JSONLike:
    """Replace `${NAME}` references in every string of a JSON-like value.

    Dict keys are left as written; only values are resolved. The input is not modified.

    Args:
        value: The scenario fragment to resolve.
        where: Where the fragment sits in the scenario (e.g. `requests.chat.headers`),
            extended with keys and indexes in error messages.
        environ: The environment to read; `os.environ` when None.

    Returns:
        A copy of `value` with references replaced by the variables' values.

    Raises:
        UsageError: A referenced variable is not set, or a `${` is not a valid reference.
    """
    env = os.environ if environ is None else environ
    return _walk_env(value, where, env)


def collect_env_values(
    value: JSONLike, *, environ: Mapping[str, str] | None = None
) -> frozenset[str]:
    """The (non-empty) values of the set environment variables `value` references.

    Call it on the same unresolved fragment given to `resolve_env`, and hand the result
    to `redact_json` / `redact` so secrets read from the environment never get stored.
    Missing or malformed references are skipped here; `resolve_env` reports them.
    """
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for text in _strings(value):
        for match in _ENV_REF.finditer(text):
            name = match.group(1)
            if name is not None and env.get(name):
                found.add(env[name])
    return frozenset(found)


def _walk_env(value: JSONLike, where: str, env: Mapping[str, str]) -> JSONLike:
    if isinstance(value, str):
        return _resolve_str(value, where, env) if "$" in value else value
    if isinstance(value, dict):
        return {k: _walk_env(v, f"{where}.{k}", env) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [_walk_env(v, f"{where}[{i}]", env) for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    return value


def _resolve_str(text: str, where: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        token, name = match.group(0), match.group(1)
        if token == "$${":
            return "${"
        if name is None:
            raise UsageError(
                f"{where}: '${{' does not start a valid ${{NAME}} reference; "
                "write ${NAME} (letters, digits, _) or $${ for a literal '${'"
            )
        if name not in env:
            raise UsageError(
                f"{where}: environment variable {name} is not set; "
                "export it or remove the reference"
            )
        return env[name]

    return _ENV_REF.sub(replace, text)


def _strings(value: JSONLike) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


# --- {{ name }}: per request ------------------------------------------------------------


class TemplateError(Exception):
    """A template variable has no value for this request (a classified request error)."""

    def __init__(self, name: str, where: str) -> None:
        super().__init__(f"{where}: template variable {name!r} has no value for this request")
        self.name = name
        self.where = where


_Render = Callable[[Mapping[str, object]], Any]
# A compiled node: (True, the shared constant) or (False, a render function).
_Node = tuple[bool, Any]


class Template:
    """A JSON-like value with `{{ name }}` placeholders, parsed once and rendered per request.

    Rendering never runs a regex: strings become a `str.format` pattern, whole-string
    placeholders an item lookup, and subtrees without placeholders are shared constants.
    Rendered values (and the constants inside them) must be treated as read-only.
    """

    __slots__ = ("_render", "source", "variables", "where")

    def __init__(
        self, source: JSONLike, where: str, variables: frozenset[str], render: _Render | None
    ) -> None:
        self.source = source
        self.where = where
        self.variables = variables
        self._render = render

    @classmethod
    def compile(cls, value: JSONLike, *, where: str) -> Template:
        """Parse a JSON-like value once.

        A string that is exactly one placeholder renders to the variable's value with
        its type preserved; a placeholder inside a longer string (or in a dict key) is
        formatted as text: str for strings and numbers, JSON for everything else.

        Args:
            value: The request body, headers, path... (env references already resolved).
            where: Where the value sits in the scenario, for error messages.

        Raises:
            UsageError: A `{{ ... }}` does not hold a valid name (e.g. `{{ row.prompt }}`).
        """
        names: set[str] = set()
        static, payload = _compile(value, where, names)
        return cls(value, where, frozenset(names), None if static else payload)

    @property
    def is_static(self) -> bool:
        """True when there are no placeholders: `render` returns `source` itself."""
        return self._render is None

    def render(self, variables: Mapping[str, object]) -> JSONLike:
        """The value for one request.

        Raises:
            TemplateError: A placeholder's variable is not in `variables`.
        """
        if self._render is None:
            return self.source
        try:
            return self._render(variables)
        except KeyError as exc:
            raise TemplateError(str(exc.args[0]), self.where) from None

    def __repr__(self) -> str:
        return f"Template({self.where!r}, variables={sorted(self.variables)})"


def _compile(value: JSONLike, where: str, names: set[str], *, as_text: bool = False) -> _Node:
    if isinstance(value, str):
        return _compile_str(value, where, names, as_text)
    if isinstance(value, dict):
        entries = [
            (*_compile(k, f"{where}.{k}", names, as_text=True), *_compile(v, f"{where}.{k}", names))
            for k, v in value.items()
        ]
        if all(ks and vs for ks, _, vs, _ in entries):
            return True, value
        frozen = tuple(entries)
        return False, lambda env: {
            (k if ks else k(env)): (v if vs else v(env)) for ks, k, vs, v in frozen
        }
    if isinstance(value, list | tuple):
        nodes = tuple(_compile(v, f"{where}[{i}]", names) for i, v in enumerate(value))
        if all(s for s, _ in nodes):
            return True, value
        if isinstance(value, tuple):
            return False, lambda env: tuple(n if s else n(env) for s, n in nodes)
        return False, lambda env: [n if s else n(env) for s, n in nodes]
    return True, value


def _compile_str(text: str, where: str, names: set[str], as_text: bool) -> _Node:
    if "{{" not in text:
        return True, text
    for match in _ANY_BRACES.finditer(text):
        if not re.fullmatch(rf"\s*{_NAME}\s*", match.group(1)):
            raise UsageError(
                f"{where}: {match.group(0)!r} is not a valid placeholder; "
                "use {{ name }} with a flat name of letters, digits and _"
            )
    pieces = _PLACEHOLDER.split(text)  # literal, name, literal, name, ..., literal
    used = pieces[1::2]
    names.update(used)
    if len(pieces) == 3 and not pieces[0] and not pieces[2] and not as_text:
        return False, operator.itemgetter(used[0])
    fmt = "".join(
        "{" + str(i // 2) + "}" if i % 2 else piece.replace("{", "{{").replace("}", "}}")
        for i, piece in enumerate(pieces)
    )
    keys = tuple(used)
    return False, lambda env: fmt.format(*[_text(env[k]) for k in keys])


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    # Dataset values came from JSON, so booleans, null, lists and objects read as JSON.
    return json.dumps(value, ensure_ascii=False, default=str)


def check_variables(
    template: Template,
    *,
    where: str,
    dataset: Dataset | None = None,
    extracted: Collection[str] = (),
) -> None:
    """Fail before the run if a placeholder can have no value.

    A name is provided when it is in `extracted` or is a column present in every row of
    `dataset`; a column missing from some rows is reported with the first such line.

    Args:
        template: The compiled template.
        where: Where the template sits in the scenario (e.g. `requests.chat.json`).
        dataset: The dataset feeding this request, if any.
        extracted: Names of values extracted from earlier responses.

    Raises:
        UsageError: A name no dataset column or extraction provides.
    """
    columns = dataset.columns if dataset is not None else frozenset()
    unknown = sorted(template.variables - columns - set(extracted))
    if unknown:
        what = ", ".join(repr(n) for n in unknown)
        one = len(unknown) == 1
        label, verb, col = (
            ("variable", "is", "a column") if one else ("variables", "are", "columns")
        )
        have = f" (extracted: {', '.join(sorted(extracted))})" if extracted else ""
        if dataset is None:
            raise UsageError(
                f"{where}: template {label} {what} {verb} not extracted{have} and the "
                "request has no dataset; add a dataset with that column or fix the name"
            )
        raise UsageError(
            f"{where}: template {label} {what} {verb} not {col} of dataset {dataset.name!r} "
            f"(columns: {', '.join(sorted(columns))}) nor an extracted value{have}; "
            "fix the name or add the column"
        )
    if dataset is None:
        return
    for name in sorted(template.variables - set(extracted)):
        line = dataset.first_line_without(name)
        if line is not None:
            raise UsageError(
                f"{where}: template variable {name!r} is missing from some rows of dataset "
                f"{dataset.name!r} (first at {dataset.path}:{line}); add it to every row"
            )


# --- redaction --------------------------------------------------------------------------


def redact(headers: Mapping[str, str], secrets: Iterable[str] = ()) -> dict[str, str]:
    """A copy of `headers` with sensitive values replaced by `<redacted>`.

    Sensitive: Authorization, Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key,
    Api-Key, and any name containing token, secret, api-key, apikey, password or auth.
    Values of other headers still have any of `secrets` (env values) redacted.
    """
    scrub = _scrubber(secrets)
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in _SENSITIVE_HEADERS or any(part in lower for part in _SENSITIVE_PARTS):
            out[name] = REDACTED
        else:
            out[name] = scrub(value) if scrub else value
    return out


def redact_json(value: JSONLike, secrets: Iterable[str]) -> JSONLike:
    """`value` with every occurrence of a secret inside its strings redacted.

    Dict keys are scrubbed too; empty secrets are ignored. Returns a copy, or `value`
    itself when there is no secret to look for.
    """
    scrub = _scrubber(secrets)
    return _walk_scrub(value, scrub) if scrub else value


def _scrubber(secrets: Iterable[str]) -> Callable[[str], str] | None:
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)  # longest wins
    if not ordered:
        return None
    pattern = re.compile("|".join(map(re.escape, ordered)))
    return lambda text: pattern.sub(REDACTED, text)


def _walk_scrub(value: JSONLike, scrub: Callable[[str], str]) -> JSONLike:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {_walk_scrub(k, scrub): _walk_scrub(v, scrub) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [_walk_scrub(v, scrub) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value

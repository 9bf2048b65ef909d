"""`${NAME}` environment references, and keeping the secrets they bring out of what is
stored, logged or printed.

`resolve_env` replaces each reference once, when the scenario is loaded (`$${` writes a
literal `${`). Every value read from the environment is treated as a secret:
`collect_env_values` returns them so the caller can pass them to `redact_json` (and
`redact` for headers) before anything is stored or printed.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from tracker.errors import UsageError

JSONLike: TypeAlias = Any


"""A dict / list / str / int / float / bool / None tree, as `json.loads` or `tomllib` return
(tuples are accepted and kept as tuples)."""

NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"


REDACTED = "<redacted>"


# `$${` first so an escaped brace is never read as a reference; a bare `${` that is not
# a well-formed reference is caught rather than sent to the server as literal text.
_ENV_REF = re.compile(rf"\$\$\{{|\$\{{({NAME_PATTERN})\}}|\$\{{")


_SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)


_SENSITIVE_PARTS = ("token", "secret", "api-key", "apikey", "password", "auth")


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
    for text in strings_in(value):
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


def strings_in(value: JSONLike) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings_in(v)


# -- credentials in URLs ----------------------------------------------------------------

# Query parameters whose values are credentials (`?api_key=`, `?access_token=`,
# `?sig=`), matched on the name lower-cased without `-` and `_`.
_SENSITIVE_QUERY_NAMES = frozenset({"key", "sig", "code", "pass", "pwd", "auth", "jwt"})
_SENSITIVE_QUERY_PARTS = (
    "token", "secret", "apikey", "accesskey", "password", "passwd", "credential", "signature",
    "auth",
)  # fmt: skip


def _sensitive_query_name(name: str) -> bool:
    flat = unquote_plus(name).lower().replace("-", "").replace("_", "")
    return flat in _SENSITIVE_QUERY_NAMES or any(p in flat for p in _SENSITIVE_QUERY_PARTS)


def redact_query(path_or_url: str) -> str:
    """`path_or_url` with the values of credential-like query parameters redacted; the
    rest of it is kept exactly as written (what is sent is never re-encoded here)."""
    head, sep, rest = path_or_url.partition("?")
    if not sep:
        return path_or_url
    query, hash_sep, fragment = rest.partition("#")
    items = []
    for item in query.split("&"):
        name, eq, value = item.partition("=")
        items.append(f"{name}={REDACTED}" if eq and value and _sensitive_query_name(name) else item)
    return f"{head}?{'&'.join(items)}{hash_sep}{fragment}"


def without_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """`url` without its `user:password@`, and the `Authorization: Basic` header that the
    userinfo stands for (as curl and browsers send it), or None when there is none. The
    credentials then live in a header, which is redacted wherever headers are shown."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    header = ("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode("ascii"))
    return urlunsplit(parts._replace(netloc=host)), header


def shown_url(url: str, secrets: Iterable[str] = ()) -> str:
    """`url` as it may be stored, printed or put in an error: no userinfo, credential-like
    query values and the `secrets` (environment values) redacted."""
    try:
        bare, _ = without_userinfo(url)
    except ValueError:  # not parseable: show none of what could be userinfo
        bare = url.rpartition("@")[2]
    shown: str = redact_json(redact_query(bare), secrets)
    return shown

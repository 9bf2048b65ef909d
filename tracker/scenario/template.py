"""Request templating: `{{ name }}` placeholders, rendered per request.

A `{{ name }}` is a per-request variable (a dataset column or an extracted value),
rendered for each request by a `Template` compiled once before the run; `check_variables`
makes sure, at load time, that each has a source. `${NAME}` environment references are
resolved before that (`tracker.scenario.secrets`): their values become template text.

Used by `tracker.scenario` (loading) and `tracker.driver` (rendering).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from tracker.errors import UsageError
from tracker.scenario.secrets import NAME_PATTERN, JSONLike

if TYPE_CHECKING:
    from tracker.scenario.datasets import Dataset


_PLACEHOLDER = re.compile(rf"\{{\{{\s*({NAME_PATTERN})\s*\}}\}}")


_ANY_BRACES = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


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
        if not re.fullmatch(rf"\s*{NAME_PATTERN}\s*", match.group(1)):
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

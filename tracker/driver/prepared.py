"""Requests ready to send: templates compiled, feeders opened, a weighted mix to pick from.

Used by `tracker.driver.engine`. Everything that can be done once per run is done here,
so the per-request work is a weighted pick, a feeder row and a template render.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tracker.driver.feeders import Feeder, FeederExhausted, make_feeder
from tracker.scenario import RequestSpec, Scenario
from tracker.scenario.datasets import load_dataset
from tracker.scenario.template import Template, TemplateError
from tracker.transport import Origin, encode_request, json_body, request_target

# Methods that carry a body even when empty (Content-Length: 0), as httpx sends them.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One concrete request, rendered for this send."""

    spec: RequestSpec
    path: str
    json: Any
    content: str | None
    headers: dict[str, str] | None
    # The bytes to send, when they are the same for every send (a static request);
    # anything that changes the request must drop them (`dataclasses.replace(..., data=None)`).
    data: bytes | None = None

    def encode(self, host: str) -> bytes:
        """The request's bytes for a server whose Host header is `host`.

        Raises:
            ValueError: the JSON body holds NaN or infinity, which JSON cannot carry.
        """
        method = self.spec.method
        body: bytes | None = None
        content_type = None
        if self.json is not None:
            body = json_body(self.json)
            content_type = "application/json"
        elif self.content is not None:
            body = self.content.encode()
        elif method in _BODY_METHODS:
            body = b""
        headers = self.headers.items() if self.headers else ()
        return encode_request(
            method, request_target(self.path), host, headers, body, content_type=content_type
        )


class RenderError(Exception):
    """A request could not be rendered (a template variable had no value)."""


class PreparedRequest:
    """A RequestSpec with its templates compiled and its feeder open."""

    def __init__(self, spec: RequestSpec, feeder: Feeder | None, host: str) -> None:
        self.spec = spec
        self.feeder = feeder
        self.exhausted = False
        where = f"requests.{spec.name}"
        self._path = Template.compile(spec.path, where=f"{where}.path")
        self._json = Template.compile(spec.body, where=f"{where}.json")
        self._raw = Template.compile(spec.raw_body, where=f"{where}.body")
        self._headers = dict(spec.headers) if spec.headers else None
        self._static = feeder is None and all(
            t.is_static for t in (self._path, self._json, self._raw)
        )
        self._static_wire: WireRequest | None = None
        if self._static:
            wire = WireRequest(spec, spec.path, spec.body, spec.raw_body, self._headers)
            self._static_wire = replace(wire, data=wire.encode(host))

    def render(self, extra: Mapping[str, object] | None = None) -> WireRequest:
        """This send's request; `extra` holds values extracted by earlier session steps.

        Raises:
            FeederExhausted: a `unique` dataset has no rows left.
            RenderError: a placeholder had no value in the row.
        """
        if self._static_wire is not None:
            return self._static_wire
        row: Mapping[str, object] = self.feeder.next_row() if self.feeder is not None else {}
        if extra:
            row = {**row, **extra}
        try:
            return WireRequest(
                self.spec,
                str(self._path.render(row)),
                self._json.render(row),
                self._raw.render(row),
                self._headers,
            )
        except TemplateError as exc:
            raise RenderError(str(exc)) from None


class RequestMix:
    """The scenario's requests, picked by weight with a seeded generator."""

    def __init__(self, scenario: Scenario, *, shard: tuple[int, int] = (0, 1)) -> None:
        host = Origin.of(scenario.base_url).host_header
        datasets = {d.name: d for d in scenario.datasets}
        loaded = {name: load_dataset(spec.file, name=name) for name, spec in datasets.items()}
        self.requests: list[PreparedRequest] = []
        for spec in scenario.requests:
            feeder = None
            if spec.dataset is not None:
                ds = datasets[spec.dataset]
                feeder = make_feeder(loaded[spec.dataset], ds.mode, ds.seed, shard=shard)
            self.requests.append(PreparedRequest(spec, feeder, host))
        seed = scenario.load.seed
        # Each worker picks with its own stream, so workers do not pick in lockstep.
        self._rng = random.Random(seed if shard == (0, 1) else f"{seed}/{shard[0]}/{shard[1]}")
        self._cumulative = list(itertools.accumulate(r.spec.weight for r in self.requests))
        self._single = self.requests[0] if len(self.requests) == 1 else None
        self.by_name = {r.spec.name: r for r in self.requests}

    def pick(self) -> PreparedRequest | None:
        """A request by weight; None once every request's dataset is exhausted."""
        if self._single is not None:
            return None if self._single.exhausted else self._single
        live = [r for r in self.requests if not r.exhausted]
        if not live:
            return None
        if len(live) != len(self.requests):
            weights = list(itertools.accumulate(r.spec.weight for r in live))
            x = self._rng.random() * weights[-1]
            return live[bisect.bisect_right(weights, x)]
        x = self._rng.random() * self._cumulative[-1]
        return self.requests[bisect.bisect_right(self._cumulative, x)]

    def next_wire(self) -> WireRequest | None:
        """Pick and render; a request whose unique dataset ran out is retired."""
        while True:
            prepared = self.pick()
            if prepared is None:
                return None
            try:
                return prepared.render()
            except FeederExhausted:
                prepared.exhausted = True

    def exhausted_names(self) -> list[str]:
        return [r.spec.name for r in self.requests if r.exhausted]

"""Scenario files (TOML) -> Scenario, validated strictly before anything runs.

Used by `perfsleuth run SCENARIO.toml`. The format is documented in docs/scenarios.md.
Every error names the file, the key and the fix; unknown keys get the closest known one.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from tracker.errors import UsageError
from tracker.scenario.datasets import Dataset, load_dataset
from tracker.scenario.fields import Table, parse_json_path
from tracker.scenario.flags import (
    MAX_RATE,
    MAX_WORKERS,
    METHODS,
    MIN_PROBE_INTERVAL_S,
    check_concurrency,
    validate_url,
)
from tracker.scenario.model import (
    Check,
    DatasetSpec,
    Extraction,
    GoodputSpec,
    LoadSpec,
    RequestSpec,
    Scenario,
    SessionSpec,
    SessionStep,
    TargetSpec,
    Threshold,
)
from tracker.scenario.poll import parse_poll
from tracker.scenario.secrets import collect_env_values, resolve_env, without_userinfo
from tracker.scenario.template import Template, check_variables
from tracker.transport.message import header_problem

_TOP = ("name", "description", "url", "probe_interval", "target", "load", "defaults",
        "requests", "datasets", "slo", "goodput", "session")  # fmt: skip
_LOAD = ("model", "duration", "warmup", "rate", "arrival", "seed", "start_rate", "stages",
         "throttle", "max_inflight", "on_full", "users", "start_users", "user_stages",
         "think_time", "pacing", "workers")  # fmt: skip
_REQUEST = ("name", "weight", "method", "path", "json", "body", "headers", "timeout", "stream",
            "dataset", "checks")  # fmt: skip
_DEFAULTS = ("method", "headers", "timeout", "stream")
_PCT_METRICS = {
    "latency_uncorrected": "latency_uncorrected_ms",
    "latency": "latency_ms",
    "ttft": "llm.ttft_ms",
    "itl": "llm.itl_ms",
    "tpot": "llm.tpot_ms",
    "schedule_lag": "driver.schedule_lag_ms",
    # Asynchronous tasks: the whole wait, the submission, the queue wait the API reports.
    "task": "tasks.e2e_ms",
    "task_submit": "tasks.submit_ms",
    "task_queue": "tasks.queue_ms",
}
_SCALAR_THRESHOLDS = {
    "error_rate": ("requests.error_rate", "max", ""),
    "throughput_rps": ("throughput_rps", "min", "req/s"),
    "goodput_rps": ("llm.goodput_rps", "min", "req/s"),
    "output_tokens_per_s": ("llm.output_tokens_per_s", "min", "tokens/s"),
}
_THRESHOLD_KEY = re.compile(
    rf"^({'|'.join(sorted(_PCT_METRICS, key=len, reverse=True))})_(p50|p90|p95|p99|p999|max|mean)$"
)


def load_scenario(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Scenario:
    """Read and validate a scenario file.

    Raises:
        UsageError: the file is missing, not TOML, or says something that cannot run.
    """
    file = Path(path)
    source = str(path)
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise UsageError(f"{source}: no such scenario file") from None
    except IsADirectoryError:
        raise UsageError(f"{source}: is a directory; give a .toml scenario file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{source}: not a text file; give a .toml scenario file") from None
    env = os.environ if environ is None else environ
    return _Reader(source, file.parent, env).scenario(data)


class _Reader:
    def __init__(self, source: str, base_dir: Path, environ: Mapping[str, str]) -> None:
        self.source = source
        self.base_dir = base_dir
        self.environ = environ
        self.secrets: set[str] = set()

    def env(self, value: Any, where: str) -> Any:
        resolved = resolve_env(value, where=f"{self.source}: {where}", environ=self.environ)
        self.secrets.update(collect_env_values(value, environ=self.environ))
        return resolved

    def scenario(self, data: dict[str, Any]) -> Scenario:
        top = Table(data, "", _TOP, source=self.source)
        name = cast(str, top.string("name", required=True))
        url = cast(str, self.env(top.string("url", required=True), "url"))
        validate_url(url, what=f"{self.source}: url", secrets=self.secrets)
        url, authorization = without_userinfo(url)
        parts = urlsplit(url)
        if parts.path not in ("", "/"):
            top.fail(
                "must be the base URL only (scheme://host:port); put paths in [[requests]]",
                key="url",
            )
        base_url = f"{parts.scheme}://{parts.netloc}"
        interval = top.duration("probe_interval", "250ms") or 0.25
        if interval < MIN_PROBE_INTERVAL_S:
            top.fail(f"must be at least {MIN_PROBE_INTERVAL_S * 1000:.0f}ms", key="probe_interval")
        datasets = self.datasets(top)
        requests = self.requests(top)
        if authorization is not None:  # a header the scenario sets itself wins
            requests = tuple(_with_header(r, authorization) for r in requests)
        session = self.session(top, requests)
        self.check_templates(requests, datasets, session)
        load_table = top.sub("load", _LOAD)
        if load_table is None:
            top.fail("a [load] table is required (rate or users, and duration)")
        load = self.load(load_table)
        thresholds = self.thresholds(top)
        goodput = self.goodput(top)
        return Scenario(
            name=name,
            base_url=base_url,
            requests=requests,
            load=load,
            target=self.target(top),
            probe_interval_s=interval,
            datasets=tuple(spec for spec, _ in datasets.values()),
            thresholds=thresholds,
            goodput=goodput,
            session=session,
            secrets=tuple(sorted(self.secrets, key=len, reverse=True)),
            source=self.source,
        )

    # -- requests --------------------------------------------------------------------

    def datasets(self, top: Table) -> dict[str, tuple[DatasetSpec, Dataset]]:
        out: dict[str, tuple[DatasetSpec, Dataset]] = {}
        table = top.sub("datasets", top.raw("datasets", {}).keys())
        if table is None:
            return out
        for ds_name in table.data:
            ds = table.sub(ds_name, ("file", "mode", "seed"))
            assert ds is not None
            file = cast(str, ds.string("file", required=True))
            path = Path(file) if Path(file).is_absolute() else self.base_dir / file
            mode = ds.choice("mode", ("sequential", "random", "unique"), "sequential")
            seed = ds.integer("seed", 0) or 0
            dataset = load_dataset(path, name=ds_name)
            spec = DatasetSpec(ds_name, str(path), cast(Any, mode), seed)
            out[ds_name] = (spec, dataset)
        return out

    def requests(self, top: Table) -> tuple[RequestSpec, ...]:
        defaults = top.sub("defaults", _DEFAULTS) or Table(
            {}, "defaults", _DEFAULTS, source=self.source
        )
        default_headers = self.headers(defaults)
        default_timeout = defaults.duration("timeout", "60s") or 60.0
        default_stream = defaults.choice("stream", ("sse", "none"), "none")
        default_method = defaults.choice("method", METHODS, "GET")
        items = top.table_list("requests")
        if not items:
            top.fail("at least one [[requests]] table is required", key="requests")
        specs: list[RequestSpec] = []
        names: set[str] = set()
        for i, item in enumerate(items):
            req = Table(item, f"requests[{i}]", _REQUEST, source=self.source)
            name = req.string("name", f"request{i + 1}") or f"request{i + 1}"
            if name in names:
                req.fail(f"duplicate request name {name!r}; names must be unique", key="name")
            names.add(name)
            where = f"requests.{name}"
            path = cast(str, self.env(req.string("path", required=True), f"{where}.path"))
            if not path.startswith("/"):
                req.fail(f"{path!r} must start with '/'", key="path")
            if req.has("json") and req.has("body"):
                req.fail("give either json (a JSON body) or body (raw text), not both", key="json")
            body = self.env(req.raw("json"), f"{where}.json")
            raw_body = req.string("body")
            if raw_body is not None:
                raw_body = self.env(raw_body, f"{where}.body")
            method = req.choice(
                "method",
                METHODS,
                "POST" if body is not None or raw_body is not None else default_method,
            )
            headers = dict(default_headers)
            headers.update(self.headers(req))
            timeout = req.duration("timeout") or default_timeout
            if timeout <= 0:
                req.fail("must be longer than 0s", key="timeout")
            stream = req.choice("stream", ("sse", "none"), default_stream)
            dataset = req.string("dataset")
            weight = req.number("weight", 1.0, positive=True) or 1.0
            specs.append(
                RequestSpec(
                    method=method,
                    path=path,
                    body=body,
                    raw_body=raw_body,
                    headers=tuple(headers.items()),
                    timeout_s=timeout,
                    stream="sse" if stream == "sse" else None,
                    name=name,
                    weight=weight,
                    dataset=dataset,
                    checks=self.checks(req),
                )
            )
        return tuple(specs)

    def check_templates(
        self,
        requests: tuple[RequestSpec, ...],
        datasets: dict[str, tuple[DatasetSpec, Dataset]],
        session: SessionSpec | None,
    ) -> None:
        """Every {{ name }} must come from the request's dataset or an earlier extraction."""
        by_name = {r.name: r for r in requests}
        plan: list[tuple[RequestSpec, set[str], str]] = []
        if session is None:
            plan = [(r, set(), f"requests.{r.name}") for r in requests]
        else:
            extracted: set[str] = set()
            for i, step in enumerate(session.steps):
                plan.append((by_name[step.request], set(extracted), f"session.steps[{i}]"))
                extracted.update(x.name for x in step.extract)
        for req, extracted_names, where in plan:
            if req.dataset is not None and req.dataset not in datasets:
                known = ", ".join(sorted(datasets)) or "none defined"
                raise UsageError(
                    f"{self.source}: requests.{req.name}.dataset: no dataset named "
                    f"{req.dataset!r} (datasets: {known})"
                )
            feeding = datasets[req.dataset][1] if req.dataset is not None else None
            for part, value in (("json", req.body), ("body", req.raw_body), ("path", req.path)):
                label = f"{self.source}: {where} (requests.{req.name}.{part})"
                template = Template.compile(value, where=label)
                check_variables(template, where=label, dataset=feeding, extracted=extracted_names)

    def session(self, top: Table, requests: tuple[RequestSpec, ...]) -> SessionSpec | None:
        table = top.sub("session", ("steps", "chat_history"))
        if table is None:
            return None
        names = [r.name for r in requests]
        steps: list[SessionStep] = []
        for i, item in enumerate(table.table_list("steps")):
            st = Table(
                item,
                f"session.steps[{i}]",
                ("request", "extract", "pause", "poll"),
                source=self.source,
            )
            request = cast(str, st.string("request", required=True))
            if request not in names:
                close = difflib.get_close_matches(request, names, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "requests: " + ", ".join(names)
                st.fail(f"no request named {request!r}; {hint}", key="request")
            pause = self.think_time(st, "pause")
            extracted = self.extractions(st)
            poll = parse_poll(st, extracted, self.extraction)
            if poll is not None and i == 0:
                st.fail("the first step cannot poll: the step before it submits the task")
            if poll is not None and steps and steps[-1].poll is not None:
                st.fail("the step before a polling step must submit a task, not poll one")
            if poll is not None and steps and steps[-1].pause is not None:
                st.fail(
                    "the step before a polling step submits the task: give it no pause (the "
                    "poll's interval sets when the first status request goes)"
                )
            steps.append(SessionStep(request, extracted, pause, poll))
        if not steps:
            table.fail("needs at least one [[session.steps]] table", key="steps")
        chat = table.raw("chat_history", True)
        if not isinstance(chat, bool):
            table.fail("expected true or false", key="chat_history")
        return SessionSpec(tuple(steps), chat_history=chat)

    def extractions(self, st: Table) -> tuple[Extraction, ...]:
        raw = st.raw("extract", {})
        if not isinstance(raw, dict):
            st.fail('expected a table, e.g. {task_id = {json = "task_id"}}', key="extract")
        out: list[Extraction] = []
        for name, spec in raw.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                st.fail(
                    f"{name!r} is not a valid variable name (letters, digits, _)", key="extract"
                )
            out.append(self.extraction(spec, f"{st.where}.extract.{name}", name))
        return tuple(out)

    def extraction(self, spec: Any, where: str, name: str = "") -> Extraction:
        """One `{json = PATH}`, `{header = NAME}` or `{regex = PATTERN}` table."""
        ex = Table(spec, where, ("json", "header", "regex"), source=self.source)
        given = [k for k in ("json", "header", "regex") if ex.has(k)]
        if len(given) != 1:
            ex.fail("give exactly one of json, header or regex")
        kind = given[0]
        source = cast(str, ex.string(kind, required=True))
        path: tuple[str | int, ...] = ()
        if kind == "json":
            try:
                path = parse_json_path(source)
            except ValueError as exc:
                ex.fail(str(exc), key="json")
        elif kind == "regex":
            try:
                compiled = re.compile(source)
            except re.error as exc:
                ex.fail(f"not a valid regular expression: {exc}", key="regex")
            if compiled.groups > 1:
                ex.fail("use at most one capturing group (its match is the value)", key="regex")
        return Extraction(name, cast(Any, kind), path, source)

    def headers(self, table: Table) -> dict[str, str]:
        raw = table.raw("headers", {})
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
        ):
            table.fail(
                'expected a table of string values, e.g. {Authorization = "Bearer ${KEY}"}',
                key="headers",
            )
        where = f"{table.where}.headers"
        out = {k: cast(str, self.env(v, f"{where}.{k}")) for k, v in raw.items()}
        for name, value in out.items():
            problem = header_problem(name, value)
            if problem is not None:
                table.fail(problem, key="headers")
        return out

    def checks(self, req: Table) -> tuple[Check, ...]:
        out: list[Check] = []
        for j, item in enumerate(req.table_list("checks")):
            chk = Table(
                item,
                f"{req.where}.checks[{j}]",
                ("status", "json", "equals", "exists", "contains"),
                source=self.source,
            )
            forms = [k for k in ("status", "json", "contains") if chk.has(k)]
            if len(forms) != 1:
                chk.fail("give exactly one of status, json or contains")
            if chk.has("status"):
                codes = chk.raw("status")
                codes = [codes] if isinstance(codes, int) else codes
                if (
                    not isinstance(codes, list)
                    or not codes
                    or not all(isinstance(c, int) and 100 <= c <= 599 for c in codes)
                ):
                    chk.fail(
                        "expected an HTTP status or a list of them, e.g. 200 or [200, 201]",
                        key="status",
                    )
                out.append(Check(status=tuple(codes)))
            elif chk.has("json"):
                text = cast(str, chk.string("json", required=True))
                try:
                    path = parse_json_path(text)
                except ValueError as exc:
                    chk.fail(str(exc), key="json")
                if chk.has("exists") and chk.raw("exists") is not True:
                    chk.fail(
                        "only `exists = true` is supported; use equals to compare", key="exists"
                    )
                if chk.has("equals"):
                    out.append(Check(path=path, path_text=text, equals=chk.raw("equals")))
                else:
                    out.append(Check(path=path, path_text=text))
            else:
                out.append(Check(contains=chk.string("contains", required=True)))
        return tuple(out)

    # -- load ------------------------------------------------------------------------

    def load(self, t: Table) -> LoadSpec:
        open_keys = [k for k in ("rate", "stages", "throttle") if t.has(k)]
        closed_keys = [k for k in ("users", "user_stages") if t.has(k)]
        default_model = "closed" if closed_keys and not open_keys else "open"
        model = t.choice("model", ("open", "closed"), default_model)
        if model == "open" and closed_keys:
            t.fail(
                f'{closed_keys[0]} belongs to the closed model; set model = "closed" or remove it'
            )
        if model == "closed" and open_keys:
            t.fail(f'{open_keys[0]} belongs to the open model; set model = "open" or remove it')
        if model == "open" and len(open_keys) != 1:
            t.fail("the open model needs exactly one of rate, stages or throttle")
        if model == "closed" and len(closed_keys) != 1:
            t.fail("the closed model needs exactly one of users or user_stages")
        stages = self.stages(t, "stages")
        user_stages = self.stages(t, "user_stages")
        throttle = self.throttle(t)
        schedule_length = (
            sum(d for d, _ in stages)
            or sum(d for d, _ in user_stages)
            or sum((s[1] if s[0] == "hold" else (s[2] or 0.0)) for s in throttle)
        )
        duration = t.duration("duration")
        if schedule_length and duration is not None:
            t.fail("the stages set the duration; remove load.duration", key="duration")
        if not schedule_length and duration is None:
            t.fail('is required, e.g. duration = "60s"', key="duration")
        total = schedule_length or cast(float, duration)
        if total <= 0:
            t.fail("the load must last longer than 0s", key="duration")
        warmup = t.duration("warmup", 0.0) or 0.0
        if warmup >= total:
            t.fail("must be shorter than the load's duration", key="warmup")
        think = self.think_time(t)
        pacing = t.duration("pacing")
        if model == "open" and (think is not None or pacing is not None):
            t.fail("think_time and pacing belong to the closed model")
        max_inflight = t.integer("max_inflight", minimum=1)
        if model == "closed" and (max_inflight is not None or t.has("on_full")):
            t.fail(
                "max_inflight and on_full belong to the open model (users already cap concurrency)"
            )
        users = t.integer("users", minimum=1)
        workers = self.workers(t)
        peak_users = max([users or 0, *(int(n) for _, n in user_stages)])
        for key, value in (("users", peak_users), ("max_inflight", max_inflight or 0)):
            check_concurrency(f"{self.source}: load.{key}", value, workers)
        return LoadSpec(
            model=cast(Any, model),
            duration_s=total,
            rate=t.number("rate", positive=True, maximum=MAX_RATE),
            users=users,
            warmup_s=warmup,
            arrival=cast(Any, t.choice("arrival", ("constant", "poisson"), "constant")),
            seed=t.integer("seed", 0) or 0,
            start_rate=t.number("start_rate", 0.0, minimum=0.0) or 0.0,
            stages=stages,
            throttle=throttle,
            max_inflight=max_inflight,
            on_full=cast(Any, t.choice("on_full", ("queue", "drop"), "queue")),
            start_users=t.integer("start_users", 0) or 0,
            user_stages=user_stages,
            think_time=think,
            pacing_s=pacing,
            workers=workers,
        )

    def workers(self, t: Table) -> int:
        workers = t.integer("workers", 1, minimum=1) or 1
        if workers > MAX_WORKERS:
            t.fail(f"must be at most {MAX_WORKERS}, got {workers}", key="workers")
        return workers

    def stages(self, t: Table, key: str) -> tuple[tuple[float, float], ...]:
        out: list[tuple[float, float]] = []
        for i, item in enumerate(t.table_list(key)):
            st = Table(item, f"{t.where}.{key}[{i}]", ("duration", "target"), source=self.source)
            duration = st.duration("duration")
            if duration is None or duration <= 0:
                st.fail('needs duration longer than 0s, e.g. {duration = "30s", target = 10}')
            target = cast(float, st.number("target", minimum=0.0, maximum=MAX_RATE, required=True))
            out.append((duration, target))
        if t.has(key) and not out:
            t.fail("needs at least one stage", key=key)
        return tuple(out)

    def throttle(self, t: Table) -> tuple[tuple[str, float, float | None], ...]:
        out: list[tuple[str, float, float | None]] = []
        for i, item in enumerate(t.table_list("throttle")):
            st = Table(
                item,
                f"{t.where}.throttle[{i}]",
                ("reach", "in", "hold", "jump"),
                source=self.source,
            )
            if st.has("reach"):
                ramp = st.duration("in")
                if ramp is None or ramp <= 0:
                    st.fail('reach needs `in`, e.g. {reach = 50, in = "10s"}')
                out.append(("reach", cast(float, st.number("reach", minimum=0.0)), ramp))
            elif st.has("hold"):
                out.append(("hold", cast(float, st.duration("hold")), None))
            elif st.has("jump"):
                out.append(("jump", cast(float, st.number("jump", minimum=0.0)), None))
            else:
                st.fail("each step is {reach = R, in = D}, {hold = D} or {jump = R}")
        if t.has("throttle") and not out:
            t.fail("needs at least one step", key="throttle")
        return tuple(out)

    def think_time(self, t: Table, key: str = "think_time") -> tuple[float, float] | None:
        raw = t.raw(key)
        if raw is None:
            return None
        if isinstance(raw, list):
            if len(raw) != 2:
                t.fail('expected a duration or [min, max], e.g. ["500ms", "2s"]', key=key)
            low, high = (t.to_duration(v, key) for v in raw)
            if low > high:
                t.fail("min must not exceed max", key=key)
            return (low, high)
        value = t.to_duration(raw, key)
        return (value, value)

    # -- judging and target ------------------------------------------------------------

    def thresholds(self, top: Table) -> tuple[Threshold, ...]:
        raw = top.raw("slo", {})
        allowed = [
            f"{m}_{s}"
            for m in _PCT_METRICS
            for s in ("p50", "p90", "p95", "p99", "p999", "max", "mean")
        ]
        table = top.sub("slo", [*allowed, *_SCALAR_THRESHOLDS])
        if table is None:
            return ()
        out: list[Threshold] = []
        for key, value in raw.items():
            match = _THRESHOLD_KEY.match(key)
            if match is not None:
                if not isinstance(value, str):
                    table.fail(f'give a duration with a unit, e.g. "500ms", not {value!r}', key=key)
                limit_ms = table.to_duration(value, key) * 1000.0
                out.append(Threshold(key, _PCT_METRICS[match.group(1)], match.group(2), limit_ms))
            else:
                section, bound, unit = _SCALAR_THRESHOLDS[key]
                limit = cast(float, table.number(key, minimum=0.0))
                if key == "error_rate" and limit > 1:
                    table.fail(f"is a fraction between 0 and 1 (0.05 = 5%), got {limit}", key=key)
                out.append(Threshold(key, section, None, limit, cast(Any, bound), unit))
        return tuple(out)

    def goodput(self, top: Table) -> GoodputSpec | None:
        table = top.sub("goodput", ("ttft", "tpot", "e2e"))
        if table is None:
            return None
        values = {k: table.duration(k) for k in ("ttft", "tpot", "e2e")}
        if all(v is None for v in values.values()):
            table.fail("give at least one of ttft, tpot, e2e")
        ms = {k: (v * 1000.0 if v is not None else None) for k, v in values.items()}
        return GoodputSpec(ttft_ms=ms["ttft"], tpot_ms=ms["tpot"], e2e_ms=ms["e2e"])

    def target(self, top: Table) -> TargetSpec | None:
        table = top.sub("target", ("pid", "name", "launch"))
        if table is None:
            return None
        given = [k for k in ("pid", "name", "launch") if table.has(k)]
        if len(given) != 1:
            table.fail("give exactly one of pid, name or launch")
        if table.has("pid"):
            return TargetSpec(pid=table.integer("pid", minimum=1))
        if table.has("name"):
            return TargetSpec(name=table.string("name", required=True))
        launch = self.env(table.raw("launch"), "target.launch")  # ${NAME} too, as elsewhere
        if isinstance(launch, str) and launch.strip():
            import shlex

            try:
                return TargetSpec(launch=tuple(shlex.split(launch)))
            except ValueError as exc:
                table.fail(f"cannot split the command ({exc}); check its quotes", key="launch")
        if isinstance(launch, list) and launch and all(isinstance(a, str) for a in launch):
            return TargetSpec(launch=tuple(launch))
        table.fail("expected a command string or a list of arguments", key="launch")


def _with_header(request: RequestSpec, header: tuple[str, str]) -> RequestSpec:
    if any(name.lower() == header[0].lower() for name, _ in request.headers):
        return request
    return replace(request, headers=(*request.headers, header))

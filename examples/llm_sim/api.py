"""The HTTP API: OpenAI-style completion endpoints, /v1/inference and the admin routes.

``llm_server.py`` builds the Starlette app from ``Api`` and serves it with uvicorn.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .config import FAULTS, Config, Json
from .engine import Engine, Finished, GenRequest
from .faults import Faults, GcStats
from .tasks import SIMULATE, Task, TaskBoard


def count_tokens(text: str) -> int:
    return len(text.split())


class BadRequest(Exception):
    pass


async def _json_body(request: Request) -> Json:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _field(body: Json, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, kind) or isinstance(value, bool):  # JSON true is no number
        raise BadRequest(f"'{name}' has the wrong type")
    return value


def _session_id(request: Request, body: Json) -> str | None:
    sid: str | None = _field(body, "session_id", str) or request.headers.get("x-session-id")
    return sid


def _messages(body: Json) -> list[tuple[str, str]]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("'messages' must be a non-empty list")
    out = []
    for m in raw:
        content = (m.get("content") or "") if isinstance(m, dict) else None
        if isinstance(content, list):  # OpenAI content parts
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        if not isinstance(content, str) or not isinstance(m.get("role"), str):
            raise BadRequest("each message needs a string 'role' and 'content'")
        out.append((m["role"], content))
    return out


def _history_key(messages: list[tuple[str, str]]) -> str:
    norm = [[role, " ".join(content.split())] for role, content in messages]
    return "c:" + hashlib.sha256(json.dumps(norm).encode()).hexdigest()


def _sse(obj: Json | str) -> str:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n"


def _usage(f: Finished) -> Json:
    return {
        "prompt_tokens": f.prompt_tokens,
        "completion_tokens": f.completion_tokens,
        "total_tokens": f.prompt_tokens + f.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": f.cached_tokens},
    }


def _finish_reason(req: GenRequest, index: int) -> str | None:
    return "length" if index == req.max_tokens - 1 else None


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


# How an endpoint renders a token chunk, the closing stream chunk and a whole reply.
Chunk = Callable[[int, str], Json]
Render = Callable[[Finished], Json]


class Api:
    def __init__(self, cfg: Config, engine: Engine, faults: Faults, gc_stats: GcStats) -> None:
        self.cfg, self.engine, self.faults, self.gc_stats = cfg, engine, faults, gc_stats
        self.started = time.time()
        self.tasks = TaskBoard(engine)

    async def _generate(
        self,
        request: Request,
        req: GenRequest,
        body: Json,
        chunk: Chunk,
        tail: Render,
        whole: Render,
    ) -> Response:
        if not self.engine.submit(req):
            return JSONResponse({"error": "queue full"}, status_code=503)
        if body.get("stream"):
            return StreamingResponse(
                self._stream(req, chunk, tail),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        # Nothing else notices a client that gives up on a non-streamed reply.
        watcher = asyncio.ensure_future(_until_disconnect(request))
        try:
            item: str | Finished = ""
            while not isinstance(item, Finished):
                getter = asyncio.ensure_future(req.events.get())
                await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    return Response(status_code=499)  # nobody is left to read it
                item = getter.result()
        finally:
            watcher.cancel()
            self.engine.cancel(req)
        return JSONResponse(whole(item))

    async def _stream(self, req: GenRequest, chunk: Chunk, tail: Render) -> AsyncIterator[str]:
        try:
            index = 0
            while not isinstance(item := await req.events.get(), Finished):
                yield _sse(chunk(index, item))
                index += 1
            yield _sse(tail(item))
            yield _sse("[DONE]")
        finally:
            # Starlette cancels this generator when the client disconnects.
            self.engine.cancel(req)

    def _request(
        self, prompt_tokens: int, body: Json, lookup: str | None, store: Callable[[str], str | None]
    ) -> GenRequest:
        max_tokens: int = _field(body, "max_tokens", int, 16)
        if not 1 <= max_tokens <= 8192:
            raise BadRequest("'max_tokens' must be between 1 and 8192")
        return GenRequest(prompt_tokens, max_tokens, asyncio.get_running_loop(), lookup, store)

    def _prompt_request(self, request: Request, body: Json) -> tuple[GenRequest, str | None]:
        prompt: str = _field(body, "prompt", str, "")
        sid = _session_id(request, body)
        key = None if sid is None else "s:" + sid
        return self._request(count_tokens(prompt), body, key, lambda _text: key), sid

    def _head(self, prefix: str, req: GenRequest, body: Json, obj: str) -> Json:
        model = _field(body, "model", str, self.cfg.model)
        return {"id": prefix + req.id, "object": obj, "created": int(time.time()), "model": model}

    async def completions(self, request: Request) -> Response:
        body = await _json_body(request)
        req, _ = self._prompt_request(request, body)
        head = self._head("cmpl-", req, body, "text_completion")

        def choice(text: str, finish: str | None) -> Json:
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

        return await self._generate(
            request,
            req,
            body,
            lambda i, tok: {**head, "choices": [choice(tok, _finish_reason(req, i))]},
            lambda f: {**head, "choices": [], "usage": _usage(f)},
            lambda f: {**head, "choices": [choice(f.text, "length")], "usage": _usage(f)},
        )

    async def chat(self, request: Request) -> Response:
        body = await _json_body(request)
        messages = _messages(body)
        sid = _session_id(request, body)
        lookup = None if sid is None else "s:" + sid

        def store(text: str) -> str | None:
            return lookup if sid is not None else _history_key([*messages, ("assistant", text)])

        if sid is None:
            # Stateless clients resend the history: look up everything before the last user
            # turn; store() keys the history the *next* turn will carry.
            users = [i for i, (role, _) in enumerate(messages) if role == "user"]
            prefix = messages[: users[-1]] if users else messages[:-1]
            lookup = _history_key(prefix) if prefix else None
        req = self._request(sum(count_tokens(c) for _, c in messages), body, lookup, store)
        head = self._head("chatcmpl-", req, body, "chat.completion.chunk")

        def chunk(i: int, tok: str) -> Json:
            delta = {"role": "assistant", "content": tok} if i == 0 else {"content": tok}
            choice = {"index": 0, "delta": delta, "finish_reason": _finish_reason(req, i)}
            return {**head, "choices": [choice]}

        def whole(f: Finished) -> Json:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": f.text},
                "finish_reason": "length",
            }
            return {**head, "object": "chat.completion", "choices": [choice], "usage": _usage(f)}

        return await self._generate(
            request, req, body, chunk, lambda f: {**head, "choices": [], "usage": _usage(f)}, whole
        )

    @staticmethod
    def _inference_result(req: GenRequest, sid: str | None) -> Render:
        def whole(f: Finished) -> Json:
            return {
                "id": req.id,
                "session_id": sid,
                "text": f.text,
                "output_tokens": f.completion_tokens,
                "prompt_tokens": f.prompt_tokens,
                "cached_prompt_tokens": f.cached_tokens,
                "queue_ms": f.queue_ms,
                "ttft_ms": f.ttft_ms,
                "total_ms": f.total_ms,
            }

        return whole

    async def inference(self, request: Request) -> Response:
        body = await _json_body(request)
        req, sid = self._prompt_request(request, body)
        whole = self._inference_result(req, sid)
        return await self._generate(
            request,
            req,
            body,
            lambda i, tok: {"id": req.id, "index": i, "text": tok},
            lambda f: {**whole(f), "done": True},
            whole,
        )

    async def submit_task(self, request: Request) -> Response:
        """`/v1/inference`'s body; answers at once with the task id (202), or 503 when the
        engine's queue is full."""
        body = await _json_body(request)
        simulate = _field(body, "simulate", str)
        if simulate is not None and simulate not in SIMULATE:
            raise BadRequest(f"'simulate' must be one of {', '.join(SIMULATE)}")
        req, sid = self._prompt_request(request, body)
        task = self.tasks.submit(req, self._inference_result(req, sid), simulate)
        if task is None:
            return JSONResponse({"error": "queue full"}, status_code=503)
        return JSONResponse(task.view(), status_code=202)

    def _task(self, request: Request) -> Task | None:
        return self.tasks.get(str(request.path_params["task_id"]))

    async def task_status(self, request: Request) -> Response:
        task = self._task(request)
        if task is None:
            return JSONResponse({"error": "no such task"}, status_code=404)
        return JSONResponse(task.view())

    async def task_events(self, request: Request) -> Response:
        """Server-sent events: the task's view on each status change; the stream ends after
        `done` or `failed` (a hung task's stream lasts until the client leaves)."""
        task = self._task(request)
        if task is None:
            return JSONResponse({"error": "no such task"}, status_code=404)

        async def events() -> AsyncIterator[str]:
            last = None
            while True:
                view = task.view()
                if view["status"] != last:
                    last = view["status"]
                    yield _sse(view)
                if last in ("done", "failed"):
                    return
                await asyncio.sleep(0.005)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def admin_fault(self, request: Request) -> Response:
        body = await _json_body(request)
        if (name := body.get("fault")) not in FAULTS:
            raise BadRequest(f"'fault' must be one of {', '.join(FAULTS)}")
        strength = _field(body, "strength", (int, float), self.cfg.fault_strength)
        if not 0 < strength <= 64:
            raise BadRequest("'strength' must be in (0, 64]")
        # Starting or reaping hog processes blocks: keep it off the event loop.
        await asyncio.to_thread(self.faults.set, name, float(strength))
        return JSONResponse(self.faults.state())

    async def admin_slowdown(self, request: Request) -> Response:
        factor = _field(await _json_body(request), "factor", (int, float))
        if factor is None or not 0 < factor <= 100:
            raise BadRequest("'factor' must be a number in (0, 100]")
        self.engine.slowdown = float(factor)
        return JSONResponse({"slowdown": self.engine.slowdown})

    async def admin_state(self, _request: Request) -> Response:
        return JSONResponse(
            {
                **self.faults.state(),
                "slowdown": self.engine.slowdown,
                **self.engine.state(),
                "gc": self.gc_stats.state(),
                "tasks": self.tasks.state(),
                "uptime_s": round(time.time() - self.started, 3),
                "pid": os.getpid(),
                "iters_per_ms": round(self.engine.burner.iters_per_ms, 1),
            }
        )

    def app(self) -> Starlette:
        async def bad_request(_request: Request, exc: Exception) -> Response:
            return JSONResponse({"error": str(exc)}, status_code=400)

        post, get = ["POST"], ["GET"]
        return Starlette(
            routes=[
                Route("/v1/completions", self.completions, methods=post),
                Route("/v1/chat/completions", self.chat, methods=post),
                Route("/v1/inference", self.inference, methods=post),
                Route("/v1/tasks", self.submit_task, methods=post),
                Route("/v1/tasks/{task_id}", self.task_status, methods=get),
                Route("/v1/tasks/{task_id}/events", self.task_events, methods=get),
                Route("/health", self.health, methods=get),
                Route("/admin/fault", self.admin_fault, methods=post),
                Route("/admin/slowdown", self.admin_slowdown, methods=post),
                Route("/admin/state", self.admin_state, methods=get),
            ],
            exception_handlers={BadRequest: bad_request},
        )

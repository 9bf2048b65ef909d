"""Simulated LLM inference server: a dynamic-batching engine plus switchable real faults.

Used by ``perfsleuth demo`` (shipped in the wheel as ``tracker/_bundled/llm_server.py`` and
started as a subprocess) and by the functional tests. Token latency comes from real CPU work
done by an engine thread, so what the system probes observe (CPU contention, GC pauses,
fsync stalls) really is what slows the responses down.

Run ``python llm_server.py --port 8000`` (see ``--help``). Needs only starlette and uvicorn.

  POST /v1/completions, /v1/chat/completions  OpenAI shapes; "stream": true gives SSE chunks,
                                              a usage chunk and ``data: [DONE]``
  POST /v1/inference  {"prompt", "max_tokens", "session_id"?, "stream"?}
  GET  /health, /admin/state
  POST /admin/fault {"fault": "cpu|gc|io|none", "strength"?}, /admin/slowdown {"factor"}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

FAULTS = ("none", "cpu", "gc", "io")
Json = dict[str, Any]


@dataclass(frozen=True)
class Config:
    host: str
    port: int
    model: str
    max_batch: int
    max_queue: int
    step_ms: float
    per_seq_ms: float
    prefill_ms_per_token: float
    kv_capacity: int
    fault: str
    fault_at: float
    fault_strength: float


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description="Simulated LLM inference server (perfsleuth demo).")
    add = p.add_argument
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=8000, help="0 picks a free port")
    add("--model", default="sim-llm", help="model name reported when a request names none")
    add("--max-batch", type=int, default=16, help="sequences decoded per engine step")
    add("--max-queue", type=int, default=256, help="waiting requests before answering 503")
    add("--step-ms", type=float, default=18.0, help="CPU cost of every engine step")
    add("--per-seq-ms", type=float, default=2.0, help="extra step cost per batched sequence")
    add("--prefill-ms-per-token", type=float, default=0.2, help="per uncached prompt token")
    add("--kv-capacity", type=int, default=64, help="cached conversations (LRU entries)")
    add("--fault", choices=FAULTS, default="none")
    add("--fault-at", type=float, default=0.0, help="seconds after start to switch it on")
    add("--fault-strength", type=float, default=1.0, help="scales the fault's intensity")
    a = p.parse_args(argv)
    if min(a.max_batch, a.max_queue, a.kv_capacity) < 1:
        p.error("--max-batch, --max-queue and --kv-capacity must be >= 1")
    if min(a.step_ms, a.per_seq_ms, a.prefill_ms_per_token, a.fault_at) < 0:
        p.error("costs and --fault-at must be >= 0")
    if a.fault_strength <= 0:
        p.error("--fault-strength must be > 0")
    return Config(**vars(a))


def count_tokens(text: str) -> int:
    return len(text.split())


# --------------------------------------------------------------------------- CPU work


def _spin(iterations: int) -> int:
    # Pure-Python arithmetic holds the GIL and a core like a Python-heavy engine loop does,
    # so competing processes and threads genuinely stretch it.
    x = 0x9E3779B9
    for i in range(iterations):
        x = (x * 1103515245 + i) & 0xFFFFFFFF
    return x


class CpuBurner:
    def __init__(self) -> None:
        self.iters_per_ms = 1.0

    def calibrate(self) -> None:
        # Fastest of several runs is the uncontended speed: a briefly disturbed startup must
        # not make every later step cheaper than asked.
        n, best = 40_000, math.inf
        for _ in range(12):
            t0 = time.perf_counter()
            _spin(n)
            best = min(best, time.perf_counter() - t0)
        self.iters_per_ms = n / (best * 1000.0)

    def burn(self, ms: float) -> None:
        _spin(int(ms * self.iters_per_ms))


# --------------------------------------------------------------------------- KV cache


class KvCache:
    """LRU map of conversation key -> number of context tokens already prefilled."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, int] = OrderedDict()
        self.hits = self.misses = self.evictions = 0

    def lookup(self, key: str | None, prompt_tokens: int) -> int:
        if key is None:
            return 0
        if (cached := self._entries.get(key)) is None:
            self.misses += 1
            return 0
        self.hits += 1
        self._entries.move_to_end(key)
        # The last prompt token is always recomputed: it yields the first output logits.
        return min(cached, max(prompt_tokens - 1, 0))

    def store(self, key: str, tokens: int) -> None:
        self._entries[key] = tokens
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self.evictions += 1

    def stats(self) -> Json:
        return {
            "entries": len(self._entries),
            "capacity": self.capacity,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
        }


# --------------------------------------------------------------------------- engine


@dataclass
class Finished:
    text: str
    completion_tokens: int
    prompt_tokens: int
    cached_tokens: int
    queue_ms: float
    ttft_ms: float
    total_ms: float


@dataclass(eq=False)
class GenRequest:
    prompt_tokens: int
    max_tokens: int
    loop: asyncio.AbstractEventLoop
    lookup_key: str | None
    # Where the finished context gets cached; for chats it depends on the generated text.
    store_key: Callable[[str], str | None]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    events: asyncio.Queue[str | Finished] = field(default_factory=asyncio.Queue)
    enqueued: float = field(default_factory=time.monotonic)
    admitted: float = 0.0
    first_token: float = 0.0
    cached_tokens: int = 0
    parts: list[str] = field(default_factory=list)
    cancelled: bool = False

    def next_token(self) -> str:
        return f" tok{(int(self.id[:8], 16) + len(self.parts) * 7919) % 1000}"

    def finished(self, now: float) -> Finished:
        def ms(t: float) -> float:
            return round((t - self.enqueued) * 1000.0, 3)

        return Finished(
            "".join(self.parts),
            len(self.parts),
            self.prompt_tokens,
            self.cached_tokens,
            ms(self.admitted),
            ms(self.first_token),
            ms(now),
        )

    def deliver(self, item: str | Finished) -> None:
        with contextlib.suppress(RuntimeError):  # the HTTP loop is closed at shutdown
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)


class Engine:
    """Continuous-batching scheduler in its own thread, like vLLM's engine loop."""

    def __init__(self, cfg: Config, burner: CpuBurner) -> None:
        self.cfg, self.burner = cfg, burner
        self.cache = KvCache(cfg.kv_capacity)
        self.slowdown = 1.0
        self.step_hook: Callable[[], None] | None = None
        self.steps = self.tokens = self.completed = self.cancelled = 0
        self.last_step_ms = 0.0
        self._waiting: deque[GenRequest] = deque()
        self._running: list[GenRequest] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.ident is not None:
            self._thread.join(timeout=10)

    def submit(self, req: GenRequest) -> bool:
        with self._cond:
            if len(self._waiting) >= self.cfg.max_queue:
                return False
            self._waiting.append(req)
            self._cond.notify()
        return True

    def cancel(self, req: GenRequest) -> None:
        """Forget a request whose client is gone (a no-op once it has finished)."""
        with self._cond:
            if not req.cancelled and req in self._waiting:
                self._waiting.remove(req)
                self.cancelled += 1
            req.cancelled = True

    def state(self) -> Json:
        with self._cond:
            return {
                "queue_length": len(self._waiting),
                "batch_size": len(self._running),
                "max_batch": self.cfg.max_batch,
                "max_queue": self.cfg.max_queue,
                "steps": self.steps,
                "tokens_generated": self.tokens,
                "requests_completed": self.completed,
                "requests_cancelled": self.cancelled,
                "last_step_ms": round(self.last_step_ms, 3),
                "kv_cache": self.cache.stats(),
            }

    def _admit(self) -> list[GenRequest] | None:
        """Drops cancelled sequences and fills the batch; None once stopping."""
        with self._cond:
            while not self._stop and not self._waiting and not self._running:
                self._cond.wait()
            if self._stop:
                return None
            alive = [r for r in self._running if not r.cancelled]
            self.cancelled += len(self._running) - len(alive)
            self._running = alive
            admitted, now = [], time.monotonic()
            while self._waiting and len(self._running) < self.cfg.max_batch:
                req = self._waiting.popleft()
                req.admitted = now
                req.cached_tokens = self.cache.lookup(req.lookup_key, req.prompt_tokens)
                self._running.append(req)
                admitted.append(req)
            return admitted

    def _run(self) -> None:
        while (admitted := self._admit()) is not None:
            batch = list(self._running)
            if not batch:
                continue
            # Newly admitted prompts are prefilled inside this step (no chunked prefill), so
            # a long prompt also stalls every running stream, as in simple engines.
            prefill = sum(r.prompt_tokens - r.cached_tokens for r in admitted)
            cost = (
                self.cfg.step_ms
                + self.cfg.per_seq_ms * len(batch)
                + self.cfg.prefill_ms_per_token * prefill
            ) * self.slowdown
            t0 = time.perf_counter()
            self.burner.burn(cost)
            if (hook := self.step_hook) is not None:
                try:
                    hook()
                except OSError as exc:  # e.g. a full disk: drop the fault, keep serving
                    print(f"llm_server: io fault disabled: {exc}", file=sys.stderr, flush=True)
                    self.step_hook = None
            self.last_step_ms = (time.perf_counter() - t0) * 1000.0
            self._emit(batch)

    def _emit(self, batch: list[GenRequest]) -> None:
        now = time.monotonic()
        live = [r for r in batch if not r.cancelled]
        done = []
        for req in live:
            tok = req.next_token()
            req.parts.append(tok)
            req.first_token = req.first_token or now
            req.deliver(tok)
            if len(req.parts) >= req.max_tokens:
                done.append(req)
        with self._cond:
            self.steps += 1
            self.tokens += len(live)
            for req in done:
                self._running.remove(req)
                self.completed += 1
                if (key := req.store_key("".join(req.parts))) is not None:
                    self.cache.store(key, req.prompt_tokens + len(req.parts))
        for req in done:
            req.deliver(req.finished(now))


# --------------------------------------------------------------------------- faults

_HOG_CODE = """
import os, sys
parent = int(sys.argv[2])
x = 1
while os.getppid() == parent:  # ends by itself should the server die without reaping it
    for i in range(200000):
        x = (x * 1103515245 + i) & 0xFFFFFFFF
"""


class CpuHogs:
    """Busy child processes (cpu_count * strength) competing with the engine for CPUs."""

    def __init__(self, strength: float) -> None:
        argv = [sys.executable, "-c", _HOG_CODE, "llm_server-cpu-hog", str(os.getpid())]
        # No inherited stdio: a parent reading our output must still see EOF when we exit.
        null = subprocess.DEVNULL
        self.procs = [
            subprocess.Popen(argv, stdin=null, stdout=null, stderr=null)
            for _ in range(max(1, round((os.cpu_count() or 1) * strength)))
        ]

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class GcChurn:
    """A large live heap of containers plus a thread churning reference cycles through it.

    The cycles live just long enough to reach the oldest generation, so the collector keeps
    running full collections over the whole heap; those pauses hold the GIL and stall the
    engine and HTTP threads alike. Strength scales both the heap and the churn rate.
    """

    def __init__(self, strength: float) -> None:
        self._heap_size = int(500_000 * strength)
        self._bursts = max(1, round(10 * strength))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gc-churn", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        heap: list[list[Any]] = [[i, None] for i in range(self._heap_size)]
        recent: deque[list[Any]] = deque(maxlen=64)
        while not self._stop.is_set():
            for _ in range(self._bursts):
                batch: list[Any] = []
                for i in range(1000):
                    a: list[Any] = [i]
                    a.append([a])
                    batch.append(a)
                recent.append(batch)
            # Without these gaps the churn would mostly just compete for the GIL; the
            # slowdown should come from collector pauses.
            self._stop.wait(0.02)
        heap.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        gc.collect()


class IoWriter:
    """fsync'd writes on every engine step, into a bounded file overwritten in turn.

    Each fsync waits for the device, so strength scales their number (16 per step at 1.0).
    """

    CHUNK, FILE_LIMIT = 16 * 1024, 32 * 1024 * 1024

    def __init__(self, strength: float) -> None:
        self.dir = tempfile.mkdtemp(prefix="llm_server_io_")
        self.path = os.path.join(self.dir, "kv_spill.bin")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self._writes = max(1, round(16 * strength))
        self._buf = os.urandom(self.CHUNK)
        self._offset = 0
        self._lock = threading.Lock()  # the engine may be mid-step when the fault stops

    def step(self) -> None:
        with self._lock:
            for _ in range(self._writes if self._fd >= 0 else 0):
                os.pwrite(self._fd, self._buf, self._offset)
                os.fsync(self._fd)
                self._offset = (self._offset + self.CHUNK) % self.FILE_LIMIT

    def stop(self) -> None:
        with self._lock:
            os.close(self._fd)
            self._fd = -1
        shutil.rmtree(self.dir, ignore_errors=True)


class Faults:
    """One active fault at a time; switching fully cleans up the previous one."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name, self.strength = "none", 1.0
        self.pending: Json | None = None
        self._active: CpuHogs | GcChurn | IoWriter | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def schedule(self, name: str, strength: float, delay: float) -> None:
        if delay <= 0:
            self.set(name, strength)
            return
        self.pending = {"fault": name, "strength": strength, "at": time.time() + delay}
        self._timer = threading.Timer(delay, self.set, (name, strength), {"from_timer": True})
        self._timer.daemon = True
        self._timer.start()

    def set(self, name: str, strength: float = 1.0, *, from_timer: bool = False) -> None:
        with self._lock:
            if from_timer and self.pending is None:
                return  # an explicit choice was made in the meantime and wins
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.pending = None
            self.engine.step_hook = None
            if self._active is not None:
                self._active.stop()
                self._active = None
            if name == "cpu":
                self._active = CpuHogs(strength)
            elif name == "gc":
                self._active = GcChurn(strength)
            elif name == "io":
                self._active = writer = IoWriter(strength)
                self.engine.step_hook = writer.step
            self.name, self.strength = name, strength

    def state(self) -> Json:
        active = self._active
        return {
            "fault": self.name,
            "fault_strength": self.strength,
            "fault_pending": self.pending,
            "hog_pids": [p.pid for p in active.procs] if isinstance(active, CpuHogs) else [],
            "io_file": active.path if isinstance(active, IoWriter) else None,
        }


class GcStats:
    """Collector pauses measured through gc.callbacks, shown in /admin/state."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.pause_ms = self.max_pause_ms = self._t0 = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        ms = (time.perf_counter() - self._t0) * 1000.0
        self.collections[info["generation"]] += 1
        self.pause_ms += ms
        self.max_pause_ms = max(self.max_pause_ms, ms)

    def state(self) -> Json:
        return {
            "collections": list(self.collections),
            "pause_ms_total": round(self.pause_ms, 3),
            "max_pause_ms": round(self.max_pause_ms, 3),
        }


# --------------------------------------------------------------------------- HTTP


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

    async def inference(self, request: Request) -> Response:
        body = await _json_body(request)
        req, sid = self._prompt_request(request, body)

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

        return await self._generate(
            request,
            req,
            body,
            lambda i, tok: {"id": req.id, "index": i, "text": tok},
            lambda f: {**whole(f), "done": True},
            whole,
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
                Route("/health", self.health, methods=get),
                Route("/admin/fault", self.admin_fault, methods=post),
                Route("/admin/slowdown", self.admin_slowdown, methods=post),
                Route("/admin/state", self.admin_state, methods=get),
            ],
            exception_handlers={BadRequest: bad_request},
        )


# --------------------------------------------------------------------------- main


async def _serve(server: uvicorn.Server, host: str) -> None:
    task = asyncio.ensure_future(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if server.started:  # sockets are listening now; --port 0 has its real port
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"llm_server listening on http://{host}:{port}", file=sys.stderr, flush=True)
    await task


def _exit_on_signal(_signum: int, _frame: object) -> None:
    # Reached outside uvicorn's handlers: during startup, and when uvicorn re-raises the
    # signal after its graceful shutdown. Either way leave through main()'s cleanup.
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_on_signal)
    burner = CpuBurner()
    engine = Engine(cfg, burner)
    faults = Faults(engine)
    try:
        burner.calibrate()  # before any fault can disturb it
        api = Api(cfg, engine, faults, GcStats())
        engine.start()
        if cfg.fault != "none":
            faults.schedule(cfg.fault, cfg.fault_strength, cfg.fault_at)
        # In-flight requests get 5 s to finish on shutdown; the engine runs until then.
        server = uvicorn.Server(
            uvicorn.Config(
                api.app(),
                host=cfg.host,
                port=cfg.port,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=5,
            )
        )
        asyncio.run(_serve(server, cfg.host))
    finally:
        faults.set("none")
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

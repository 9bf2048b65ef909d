"""The dynamic-batching engine: CPU-burning decode steps, a KV cache and request bookkeeping.

``llm_server.py`` creates and runs the ``Engine``; ``api`` submits ``GenRequest``s to it
and ``faults`` hooks into its steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import Config, Json

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
            if self.cfg.step_cost == "wait":
                time.sleep(cost / 1000.0)
            else:
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

"""Functional tests of examples/llm_server.py, run as a real subprocess on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.filesystems import on_tmpfs
from support.llm_server import ServerHandle, running_llm_server, stop_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

LONG_PROMPT = " ".join(f"w{i}" for i in range(2500))  # 2500 tokens -> ~500 ms of prefill


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with running_llm_server() as handle:
        yield handle


@pytest.fixture
def client(server: ServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=20) as c:
        yield c
    # Leave the shared server as we found it.
    with httpx.Client(base_url=server.url, timeout=20) as c:
        c.post("/admin/slowdown", json={"factor": 1})
        c.post("/admin/fault", json={"fault": "none"})


def state(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/admin/state")
    assert r.status_code == 200
    return r.json()


def sse_events(body: str) -> list[str]:
    """The data payloads of an SSE body, checking every event is one `data:` line."""
    assert body.endswith("\n\n")
    events = body[:-2].split("\n\n")
    assert all(e.startswith("data: ") and "\n" not in e for e in events), events
    return [e.removeprefix("data: ") for e in events]


def stream(client: httpx.Client, path: str, payload: dict[str, Any]) -> tuple[list[float], str]:
    """Stream a request; returns the arrival time of each data event (s) and the raw body."""
    t0 = time.perf_counter()
    times, body = [], []
    with client.stream("POST", path, json={**payload, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            body.append(line + "\n")
            if line.startswith("data: "):
                times.append(time.perf_counter() - t0)
    return times, "".join(body)


def ttft(client: httpx.Client, path: str, payload: dict[str, Any]) -> float:
    return stream(client, path, payload)[0][0]


def per_token_ms(times: list[float], tokens: int) -> float:
    return (times[tokens - 1] - times[0]) / (tokens - 1) * 1000.0


def median_latency(client: httpx.Client, n: int = 5, max_tokens: int = 15) -> float:
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.post("/v1/inference", json={"prompt": "hello there", "max_tokens": max_tokens})
        assert r.status_code == 200
        lat.append(time.perf_counter() - t0)
    return statistics.median(lat)


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; it no longer runs.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][0] != "Z"


# --------------------------------------------------------------------------- API shapes


def test_health(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_completions_non_stream(client: httpx.Client) -> None:
    r = client.post("/v1/completions", json={"model": "m", "prompt": "a b c", "max_tokens": 4})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == "m"
    choice = body["choices"][0]
    assert len(choice["text"].split()) == 4 and choice["finish_reason"] == "length"
    assert body["usage"]["prompt_tokens"] == 3
    assert body["usage"]["completion_tokens"] == 4 and body["usage"]["total_tokens"] == 7
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}


def test_chat_non_stream(client: httpx.Client) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    r = client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    msg = body["choices"][0]["message"]
    assert msg["role"] == "assistant" and len(msg["content"].split()) == 3
    assert body["usage"]["prompt_tokens"] == 3 and body["usage"]["completion_tokens"] == 3


def test_completions_stream(client: httpx.Client) -> None:
    times, body = stream(client, "/v1/completions", {"prompt": "x y", "max_tokens": 5})
    events = sse_events(body)
    assert events[-1] == "[DONE]" and len(times) == 7
    chunks = [json.loads(e) for e in events[:-1]]
    texts = [c["choices"][0]["text"] for c in chunks[:5]]
    assert all(t.startswith(" tok") and len(t.split()) == 1 for t in texts)
    assert [c["choices"][0]["finish_reason"] for c in chunks[:5]] == [None] * 4 + ["length"]
    assert chunks[5]["choices"] == []
    assert chunks[5]["usage"]["completion_tokens"] == 5 and chunks[5]["usage"]["prompt_tokens"] == 2
    # Tokens leave at engine step times (~20 ms apart), not in one burst.
    assert times[4] - times[0] > 0.04


def test_chat_stream(client: httpx.Client) -> None:
    payload = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}
    _, body = stream(client, "/v1/chat/completions", payload)
    chunks = [json.loads(e) for e in sse_events(body)[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks[:3]]
    assert deltas[0]["role"] == "assistant"
    assert all(d["content"].startswith(" tok") for d in deltas)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[3]["choices"] == [] and chunks[3]["usage"]["total_tokens"] == 4


def test_inference(client: httpx.Client) -> None:
    r = client.post("/v1/inference", json={"prompt": "one two three", "max_tokens": 6})
    body = r.json()
    assert r.status_code == 200
    assert body["output_tokens"] == 6 and len(body["text"].split()) == 6
    assert body["prompt_tokens"] == 3 and body["cached_prompt_tokens"] == 0
    assert body["queue_ms"] >= 0 and body["total_ms"] >= body["ttft_ms"] > 0
    _, raw = stream(client, "/v1/inference", {"prompt": "one", "max_tokens": 2})
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    assert [json.loads(e)["index"] for e in events[:2]] == [0, 1]
    assert json.loads(events[2])["done"] is True and json.loads(events[2])["output_tokens"] == 2


def test_admin_endpoints(client: httpx.Client) -> None:
    s = state(client)
    assert s["fault"] == "none" and s["slowdown"] == 1.0 and s["max_batch"] == 16
    assert {"queue_length", "batch_size", "steps", "kv_cache", "gc"} <= s.keys()
    assert {"hits", "misses", "evictions", "entries", "capacity"} <= s["kv_cache"].keys()
    assert client.post("/admin/slowdown", json={"factor": 1.5}).json() == {"slowdown": 1.5}
    assert state(client)["slowdown"] == 1.5
    bad = [
        ("/admin/fault", {"fault": "disk"}),
        ("/admin/fault", {}),
        ("/admin/fault", {"fault": "cpu", "strength": -1}),
        ("/admin/slowdown", {"factor": 0}),
        ("/admin/slowdown", {"factor": "fast"}),
        ("/admin/slowdown", {}),
        ("/v1/completions", {"prompt": "x", "max_tokens": 0}),
        ("/v1/chat/completions", {"messages": []}),
    ]
    for path, payload in bad:
        r = client.post(path, json=payload)
        assert r.status_code == 400, (path, payload)
        assert "error" in r.json()
    r = client.post("/admin/fault", content=b"{not json")
    assert r.status_code == 400 and "error" in r.json()
    assert state(client)["fault"] == "none"


def test_disconnected_clients_leave_the_batch(client: httpx.Client, server: ServerHandle) -> None:
    before = state(client)["requests_cancelled"]
    with client.stream("POST", "/v1/completions", json={"max_tokens": 2000, "stream": True}) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=0.3) as impatient:
        impatient.post(server.url + "/v1/inference", json={"max_tokens": 2000})
    assert wait_for(lambda: state(client)["batch_size"] == 0, timeout=10)
    assert state(client)["requests_cancelled"] == before + 2


# --------------------------------------------------------------------------- batching


async def _concurrent_streams(url: str, n: int, max_tokens: int) -> list[list[float]]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:

        async def one() -> list[float]:
            t0, times = time.perf_counter(), []
            payload = {"prompt": "p", "max_tokens": max_tokens, "stream": True}
            async with c.stream("POST", "/v1/completions", json=payload) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        times.append(time.perf_counter() - t0)
            return times

        return await asyncio.gather(*(one() for _ in range(n)))


def test_concurrent_requests_share_steps(server: ServerHandle) -> None:
    tokens = 30
    # One stream alone before and after the eight: the steps burn CPU, so a change in the
    # machine's load during one of them would skew a single comparison.
    single = asyncio.run(_concurrent_streams(server.url, 1, tokens))[0]
    t0 = time.perf_counter()
    many = asyncio.run(_concurrent_streams(server.url, 8, tokens))
    wall8 = time.perf_counter() - t0
    again = asyncio.run(_concurrent_streams(server.url, 1, tokens))[0]
    # Expected ~1.7x (34 ms vs 20 ms steps); sequential would be 8x.
    alone = max(single[-1], again[-1])
    assert wall8 < 3.5 * alone, (wall8, single[-1], again[-1])
    itl1 = min(per_token_ms(single, tokens), per_token_ms(again, tokens))
    itl8 = statistics.median(per_token_ms(t, tokens) for t in many)
    assert itl8 > 1.25 * itl1, (itl1, itl8)  # a bigger batch makes every step longer


def test_full_queue_answers_503() -> None:
    with running_llm_server("--max-batch", "1", "--max-queue", "2") as srv:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=srv.url, timeout=30) as c:
                # 25 steps (~0.5 s) a request: the running one cannot finish, freeing a
                # queue slot, while the burst is still arriving on a busy machine.
                payload = {"prompt": "p", "max_tokens": 25}
                return await asyncio.gather(
                    *(c.post("/v1/completions", json=payload) for _ in range(7))
                )

        responses = asyncio.run(burst())
    codes = sorted(r.status_code for r in responses)
    # One request may already run when the others arrive, so 2 or 3 get through.
    assert codes.count(200) in (2, 3) and codes.count(503) >= 4, codes
    assert all(r.json() == {"error": "queue full"} for r in responses if r.status_code == 503)


# --------------------------------------------------------------------------- prefill + KV cache


def test_longer_prompt_longer_ttft(client: httpx.Client) -> None:
    def best_ttft(prompt: str) -> float:
        payload = {"prompt": prompt, "max_tokens": 2}
        return min(ttft(client, "/v1/completions", payload) for _ in range(2))

    short, long = best_ttft("a b"), best_ttft(LONG_PROMPT)
    # 2500 tokens * 0.2 ms = 500 ms of prefill against one ~20 ms step: relative, since the
    # server's CPU burner runs up to 2x faster than asked when it calibrated on a busy host.
    assert long > 4 * short, (short, long)


def _chat_turns(client: httpx.Client, first: str, session: str | None = None) -> list[float]:
    """Two turns of a chat resending its history; returns each turn's latency.

    With 4 output tokens that is TTFT + 3 steps, dominated by the prefill of the long prompt.
    """
    headers = {"X-Session-Id": session} if session else {}
    messages = [{"role": "user", "content": first}]
    ttfts = []
    for turn in range(2):
        t0 = time.perf_counter()
        r = client.post(
            "/v1/chat/completions",
            json={"messages": messages, "max_tokens": 4, "stream": True},
            headers=headers,
        )
        events = sse_events(r.text)
        ttfts.append(time.perf_counter() - t0)
        chunks = [json.loads(e) for e in events[:-1]]
        usage = chunks[-1]["usage"]
        if turn == 1:
            assert usage["prompt_tokens_details"]["cached_tokens"] >= 2500
        reply = "".join(c["choices"][0]["delta"]["content"] for c in chunks[:-1])
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "more"}]
    return ttfts


@pytest.mark.parametrize("session", [None, "sess-1"])
def test_cached_second_turn_is_faster(client: httpx.Client, session: str | None) -> None:
    first, second = _chat_turns(client, LONG_PROMPT + (session or "x"), session)
    # 2,500 prompt tokens prefilled (0.5 s of burn) against a few: relative, since the
    # server's CPU burner runs up to 2x faster than asked when it calibrated on a busy host.
    assert second < first / 3, (first, second)


def test_session_id_in_inference_body_hits_cache(client: httpx.Client) -> None:
    payload = {"prompt": LONG_PROMPT, "max_tokens": 3, "session_id": "inf-1"}
    one = client.post("/v1/inference", json=payload).json()
    two = client.post("/v1/inference", json={**payload, "prompt": LONG_PROMPT + one["text"]})
    assert one["cached_prompt_tokens"] == 0
    assert two.json()["cached_prompt_tokens"] == 2500 + 3 - 1  # last token always recomputed
    assert two.json()["ttft_ms"] < one["ttft_ms"] / 3  # as in the chat test above


def test_tiny_kv_cache_evicts_alternating_sessions() -> None:
    with running_llm_server("--kv-capacity", "1") as srv, httpx.Client(base_url=srv.url) as c:
        base = {"max_tokens": 2, "stream": True}

        def turn(session: str, prompt: str) -> tuple[float, int]:
            t0 = time.perf_counter()
            r = c.post("/v1/completions", json={**base, "prompt": prompt, "session_id": session})
            usage = json.loads(sse_events(r.text)[-2])["usage"]
            return time.perf_counter() - t0, usage["prompt_tokens_details"]["cached_tokens"]

        a1, _ = turn("A", LONG_PROMPT + " a")
        turn("B", LONG_PROMPT + " b")
        a2, cached = turn("A", LONG_PROMPT + " a tok1 tok2 next")
        s = c.get("/admin/state").json()["kv_cache"]
    assert cached == 0 and s["evictions"] >= 2 and s["hits"] == 0
    # Evicted, the third turn prefills its whole prompt again, as the first did (a hit
    # would read ~0.1x: a few new tokens against 2,500).
    assert a2 > 0.5 * a1, (a1, a2)


# --------------------------------------------------------------------------- slowdown + faults


def test_slowdown_factor(client: httpx.Client) -> None:
    payload = {"prompt": "p", "max_tokens": 20}
    ratios = []
    for _ in range(5):  # pairs side by side: a change in the machine's load hits both alike
        client.post("/admin/slowdown", json={"factor": 1})
        normal = per_token_ms(stream(client, "/v1/completions", payload)[0], 20)
        client.post("/admin/slowdown", json={"factor": 2})
        ratios.append(per_token_ms(stream(client, "/v1/completions", payload)[0], 20) / normal)
    # 2x the step time: the median pair is well above 1.5 even on a busy machine (the
    # medians of three unpaired streams each once came out 1.46x apart there).
    assert statistics.median(ratios) > 1.5, ratios


@pytest.mark.alone
@pytest.mark.parametrize(
    ("fault", "strength", "min_ratio"),
    [("cpu", 1.5, 1.4), ("gc", 2.0, 1.4), ("io", 10.0, 1.4)],
)
def test_fault_slows_responses(
    client: httpx.Client, fault: str, strength: float, min_ratio: float
) -> None:
    if fault == "io" and on_tmpfs(tempfile.gettempdir()):
        pytest.skip("the temp dir is on tmpfs: fsync is free there")
    baseline = median_latency(client)
    gc_before = state(client)["gc"]
    r = client.post("/admin/fault", json={"fault": fault, "strength": strength})
    assert r.status_code == 200 and r.json()["fault"] == fault
    active = state(client)
    time.sleep(0.5)  # let the hogs start / the heap fill
    faulted = median_latency(client)
    gc_after = state(client)["gc"]
    client.post("/admin/fault", json={"fault": "none"})
    if fault == "cpu":
        assert wait_for(lambda: not any(pid_alive(p) for p in active["hog_pids"]))
    # Against the quieter of two baselines, before and after: another process's load that
    # came and went during one of them hid the fault once (302 ms before, 307 ms faulted,
    # while the next test's baseline read 156 ms).
    baseline = min(baseline, median_latency(client))
    ratio = faulted / baseline
    print(f"{fault} x{strength}: {baseline * 1e3:.0f} ms -> {faulted * 1e3:.0f} ms ({ratio:.2f}x)")
    assert ratio > min_ratio, (baseline, faulted)
    if fault == "cpu":
        assert len(active["hog_pids"]) == round((os.cpu_count() or 1) * strength)
        assert wait_for(lambda: not any(pid_alive(p) for p in active["hog_pids"]))
    elif fault == "gc":
        assert gc_after["pause_ms_total"] - gc_before["pause_ms_total"] > 200
        assert gc_after["collections"][2] > gc_before["collections"][2]
    else:
        assert active["io_file"] and not Path(active["io_file"]).exists()
    assert state(client)["fault"] == "none"


def test_fault_at_switches_on_later() -> None:
    # Timed on the server's own clock (uptime_s, from its start, when --fault-at starts
    # counting), not from when a busy machine let this test see it healthy.
    args = ("--fault", "cpu", "--fault-at", "2", "--fault-strength", "0.5")
    with running_llm_server(*args) as srv, httpx.Client(base_url=srv.url) as c:
        first = c.get("/admin/state").json()
        assert first["uptime_s"] < 2, first  # up in ~0.2 s, with three CPU hogs too
        assert first["fault"] == "none" and first["fault_pending"]["fault"] == "cpu"
        assert wait_for(lambda: c.get("/admin/state").json()["fault"] == "cpu", timeout=10)
        on = c.get("/admin/state").json()
        assert on["uptime_s"] >= 2 and on["fault_pending"] is None, on


@pytest.mark.parametrize("fault", ["cpu", "io"])
def test_sigterm_cleans_up(fault: str) -> None:
    with running_llm_server("--fault", fault, "--fault-strength", "0.5") as srv:
        s = httpx.get(srv.url + "/admin/state").json()
        assert s["fault"] == fault
        assert stop_process(srv.proc) == 0
    if fault == "cpu":
        assert s["hog_pids"] and not any(pid_alive(p) for p in s["hog_pids"])
    else:
        assert not Path(s["io_file"]).parent.exists()

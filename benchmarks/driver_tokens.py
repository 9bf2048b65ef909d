"""Token timing: perfsleuth's TTFT / ITL / TPOT / tokens/s against a plain aiohttp client.

A tiny streaming server (aiohttp, run in its own process by this script) answers every
POST with 64 OpenAI-style completion chunks, the first after 200 ms and then one every
20 ms (scheduled on absolute times, so they do not drift), then `data: [DONE]`. perfsleuth
(closed model, 50 users, `--stream sse`) and a plain aiohttp streaming client
(`_peers.aiohttp_stream_closed`, 50 users, same metric definitions) each run against it,
one after the other, in every repeat.

Targets (load-driver issue), on medians over repeats:
- TTFT p50 within 3 ms of the reference; ITL p50 and TPOT p50 within 1 ms;
- output tokens/s >= 97% of the reference. Both sides use perfsleuth's definition:
  the output tokens of every request started in the load phase / the load duration.

    benchmarks/.venv/bin/python benchmarks/driver_tokens.py --duration 30 --repeats 3

Always exits 0: benchmarks report, they do not gate.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

from _peers import fmt, header, median, run_main, run_perfsleuth, run_reference, table, verdict
from _support import (
    HOST,
    add_driver_args,
    find_perfsleuth,
    free_port,
    pin_prefix,
    split_cpus,
    stop_process,
    wait_port,
)

CHUNKS = 64
TTFT_S = 0.200
ITL_S = 0.020
BODY = {"model": "bench", "prompt": "Hello", "max_tokens": CHUNKS, "stream": True}

TTFT_TOL_MS = 3.0
ITL_TOL_MS = 1.0
TPOT_TOL_MS = 1.0
TOKENS_RATIO = 0.97


# -- the streaming server ---------------------------------------------------------------


def serve(port: int, chunks: int, ttft_s: float, itl_s: float) -> None:
    import asyncio

    from aiohttp import web

    def chunk(i: int, last: bool) -> bytes:
        obj = {
            "id": f"cmpl-{i}",
            "object": "text_completion",
            "created": 0,
            "model": "bench",
            "choices": [
                {
                    "index": 0,
                    "text": f" tok{i}",
                    "logprobs": None,
                    "finish_reason": "length" if last else None,
                }
            ],
        }
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    payloads = [chunk(i, i == chunks - 1) for i in range(chunks)]

    async def completions(request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i, payload in enumerate(payloads):
            delay = start + ttft_s + i * itl_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await resp.write(payload)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/health", health)
    web.run_app(app, host=HOST, port=port, print=None, access_log=None, backlog=1024)


class StreamServer:
    def __init__(self, cpu: int | None) -> None:
        self.cpu = cpu
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1/completions"

    def __enter__(self) -> StreamServer:
        cmd = [*pin_prefix(self.cpu), sys.executable, __file__, "--serve", str(self.port)]
        self.proc = subprocess.Popen(cmd)
        wait_port(self.port, 20)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc)


# -- the clients --------------------------------------------------------------------------


def run_ps(url: str, users: int, duration: float, exe: list[str], cpu: int | None) -> dict:
    args = ["--url", url, "--users", str(users), "--duration", f"{duration:g}s"]
    args += ["--body", json.dumps(BODY), "--stream", "sse"]
    r = run_perfsleuth(args, exe=exe, cpu=cpu, timeout=duration + 180)
    llm = r.get("llm")
    if not llm:
        raise RuntimeError(f"perfsleuth: no llm section (exit {r.returncode}): {r.stderr}")
    measured = r.get("measured_s") or duration
    drain = r.get("drain_s") or 0.0
    return {
        "requests": r.get("requests", "total"),
        "errors": r.get("requests", "errors"),
        "ttft_p50": llm["ttft_ms"]["p50"],
        "ttft_p99": llm["ttft_ms"]["p99"],
        "itl_p50": llm["itl_ms"]["p50"],
        "itl_p99": llm["itl_ms"]["p99"],
        "tpot_p50": llm["tpot_ms"]["p50"],
        "tokens": llm["output_tokens"],
        "tokens_per_s": llm["output_tokens_per_s"],
        "tokens_per_s_wall": llm["output_tokens"] / (measured + drain),
    }


def run_ref(url: str, users: int, duration: float, cpu: int | None) -> dict:
    args = ["stream", url, str(users), f"{duration:g}", json.dumps(BODY)]
    d = run_reference(args, cpu, duration + 180)
    return {
        "requests": d["requests"],
        "errors": d["errors"],
        "ttft_p50": d["ttft_ms"]["p50"],
        "ttft_p99": d["ttft_ms"]["p99"],
        "itl_p50": d["itl_ms"]["p50"],
        "itl_p99": d["itl_ms"]["p99"],
        "tpot_p50": d["tpot_ms"]["p50"],
        "tokens": d["output_tokens"],
        "tokens_per_s": d["output_tokens"] / d["load_s"],
        "tokens_per_s_wall": d["output_tokens"] / d["duration_s"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per run [30]")
    ap.add_argument("--repeats", type=int, default=3, help="repeats (medians) [3]")
    ap.add_argument("--users", type=int, default=50, help="concurrent streams [50]")
    add_driver_args(ap)
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(a.serve, CHUNKS, TTFT_S, ITL_S)
        return
    header("token timing: streamed completions, perfsleuth vs aiohttp")
    exe = find_perfsleuth(a.perfsleuth)
    server_cpu, client_cpu = split_cpus(not a.no_pin)
    print(
        f"server: {CHUNKS} chunks, TTFT {TTFT_S * 1000:g} ms, every {ITL_S * 1000:g} ms; "
        f"users={a.users} duration={a.duration:g}s"
    )
    print(f"pinning: server cpu={server_cpu} clients cpu={client_cpu}\n", flush=True)

    reps: list[dict[str, dict]] = []
    with StreamServer(server_cpu) as srv:
        for rep in range(a.repeats):
            order = ["perfsleuth", "aiohttp"] if rep % 2 == 0 else ["aiohttp", "perfsleuth"]
            runs: dict[str, dict] = {}
            for name in order:
                if name == "perfsleuth":
                    runs[name] = run_ps(srv.url, a.users, a.duration, exe, client_cpu)
                else:
                    runs[name] = run_ref(srv.url, a.users, a.duration, client_cpu)
                r = runs[name]
                print(
                    f"repeat {rep + 1}/{a.repeats} {name:10s} requests={r['requests']} "
                    f"errors={r['errors']} ttft p50={fmt(r['ttft_p50'], 3)} "
                    f"itl p50={fmt(r['itl_p50'], 3)} tpot p50={fmt(r['tpot_p50'], 3)} ms "
                    f"tokens/s={fmt(r['tokens_per_s'], 1)}",
                    flush=True,
                )
            reps.append(runs)

    def med(client: str, key: str) -> float:
        return median([r[client][key] for r in reps])

    def dmed(key: str) -> float:
        return median([r["perfsleuth"][key] - r["aiohttp"][key] for r in reps])

    keys = [
        ("ttft_p50", "TTFT p50 ms"),
        ("ttft_p99", "TTFT p99 ms"),
        ("itl_p50", "ITL p50 ms"),
        ("itl_p99", "ITL p99 ms"),
        ("tpot_p50", "TPOT p50 ms"),
        ("tokens_per_s", "tokens/s (load phase)"),
        ("tokens_per_s_wall", "tokens/s (incl. drain)"),
        ("requests", "requests"),
        ("errors", "errors"),
    ]
    rows = [
        [
            label,
            fmt(med("perfsleuth", k), 3),
            fmt(med("aiohttp", k), 3),
            f"{dmed(k):+.3f}",
        ]
        for k, label in keys
    ]
    print()
    print(f"medians over {a.repeats} repeat(s)")
    print(table(["metric", "perfsleuth", "aiohttp reference", "diff (median)"], rows))

    ttft_d, itl_d, tpot_d = dmed("ttft_p50"), dmed("itl_p50"), dmed("tpot_p50")
    tok_ratio = median(
        [r["perfsleuth"]["tokens_per_s"] / r["aiohttp"]["tokens_per_s"] for r in reps]
    )
    print()
    print(
        table(
            ["target", "measured", "verdict"],
            [
                [
                    f"TTFT p50 within {TTFT_TOL_MS:g} ms",
                    f"{ttft_d:+.3f} ms",
                    verdict(abs(ttft_d) <= TTFT_TOL_MS),
                ],
                [
                    f"ITL p50 within {ITL_TOL_MS:g} ms",
                    f"{itl_d:+.3f} ms",
                    verdict(abs(itl_d) <= ITL_TOL_MS),
                ],
                [
                    f"TPOT p50 within {TPOT_TOL_MS:g} ms",
                    f"{tpot_d:+.3f} ms",
                    verdict(abs(tpot_d) <= TPOT_TOL_MS),
                ],
                [
                    f"output tokens/s >= {TOKENS_RATIO:.0%} of reference",
                    f"{tok_ratio:.2%}",
                    verdict(None if math.isnan(tok_ratio) else tok_ratio >= TOKENS_RATIO),
                ],
            ],
        )
    )


if __name__ == "__main__":
    run_main(main)

"""Simulated LLM inference server: a dynamic-batching engine plus switchable real faults.

Used by ``perfsleuth demo`` (shipped in the wheel as ``tracker/_bundled/llm_server.py`` and
started as a subprocess) and by the functional tests. Token latency comes from real CPU work
done by an engine thread, so what the system probes observe (CPU contention, GC pauses,
fsync stalls) really is what slows the responses down.

Run ``python llm_server.py --port 8000`` (see ``--help``). Needs only starlette and uvicorn.
The parts live in the ``llm_sim`` package beside this file (``config``, ``engine``, ``faults``,
``api``); this script only parses the command line and wires them to uvicorn.

  POST /v1/completions, /v1/chat/completions  OpenAI shapes; "stream": true gives SSE chunks,
                                              a usage chunk and ``data: [DONE]``
  POST /v1/inference  {"prompt", "max_tokens", "session_id"?, "stream"?}
  GET  /health, /admin/state
  POST /admin/fault {"fault": "cpu|gc|io|none", "strength"?}, /admin/slowdown {"factor"}
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

# `python -P`, `-I` and PYTHONSAFEPATH leave this script's directory off sys.path, yet
# llm_sim beside it (in a checkout and in the wheel's tracker/_bundled/) must still import.
_HERE = os.path.dirname(os.path.realpath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import uvicorn  # noqa: E402
from llm_sim.api import Api  # noqa: E402
from llm_sim.config import FAULTS, STEP_COSTS, Config  # noqa: E402
from llm_sim.engine import CpuBurner, Engine  # noqa: E402
from llm_sim.faults import Faults, GcStats  # noqa: E402


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
    add(
        "--step-cost",
        choices=STEP_COSTS,
        default="cpu",
        help="cpu: a step burns CPU (a CPU-bound server); wait: it sleeps, as a server waits "
        "for its GPU (latency then follows the costs, not the host's CPU speed)",
    )
    a = p.parse_args(argv)
    if min(a.max_batch, a.max_queue, a.kv_capacity) < 1:
        p.error("--max-batch, --max-queue and --kv-capacity must be >= 1")
    if min(a.step_ms, a.per_seq_ms, a.prefill_ms_per_token, a.fault_at) < 0:
        p.error("costs and --fault-at must be >= 0")
    if a.fault_strength <= 0:
        p.error("--fault-strength must be > 0")
    return Config(**vars(a))


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

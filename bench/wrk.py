"""Closed-loop single-charge POSTs driven by wrk (Debian's `wrk`: C and LuaJIT), for the HTTP
benchmarks. On 2 shared cores the load generator competes with the server, and wrk costs a
fraction of the standard-library generator's CPU per request, so more of the cores serve the API.

Up to 4 wrk threads, each with its share of the connections and of the sellers' tokens, which its
requests take in turn (`bench/wrk_charge.lua`).
wrk stops at its deadline without counting the answers still in flight (at most one per
connection), which the API did accept: callers check balances against what was settled."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).with_name("wrk_charge.lua")
# wrk's event-loop threads: a few are plenty for 128 connections, and on 2 shared cores every
# extra runnable thread is scheduling the server pays for.
THREADS = 4


def available() -> bool:
    return shutil.which("wrk") is not None


def closed_loop(*, port: int, tokens: list[str], clients: int, seconds: float, body: dict) -> dict:
    """{"elapsed", "requests", "statuses": {status: n} (0: connection errors and timeouts),
    "latency_ms": {"p50", "p90", "p95", "p99", "p99.9", "max"}}."""
    threads = max(1, min(THREADS, len(tokens), clients))
    env = dict(os.environ, WRK_TOKENS=",".join(tokens), WRK_THREADS=str(threads), WRK_BODY=json.dumps(body))
    argv = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "30s"]
    done = subprocess.run(
        [*argv, "-s", str(SCRIPT), f"http://127.0.0.1:{port}/api/v1/charges/"],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    )
    line = next((line for line in done.stdout.splitlines() if line.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    result = json.loads(line.removeprefix("WRK_RESULT "))
    statuses = {int(status): count for status, count in result["statuses"].items()}
    if result["errors"]:
        statuses[0] = result["errors"]
    return {
        "elapsed": result["elapsed_us"] / 1e6,
        "requests": result["requests"],
        "statuses": statuses,
        "latency_ms": {
            name: round(result[f"{key}_us"] / 1000, 1)
            for name, key in (
                ("p50", "p50"),
                ("p90", "p90"),
                ("p95", "p95"),
                ("p99", "p99"),
                ("p99.9", "p999"),
                ("max", "max"),
            )
        },
    }

"""The HTTP load generators (standard library only) and the summary of what they measured.

The Python one is a process of its own (`python -m bench.scenarios.http_load SPEC.json OUT.json`),
its threads never sharing a GIL with the benchmark's pollers: closed loop (`rate` 0), each client
POSTing back to back; open loop, `rate` requests a second on a fixed schedule, a late one timed from
when it was due. The ledger's charge POSTs, or with `external_id_prefix` the provider's transactions
(`provider_body` and `headers`: DT One's, as providers/dvs.py sends them).
wrk (C and LuaJIT, `wrk_charge.lua`) drives the closed loops where installed, at a fraction of the
CPU per request; it does not count the answers in flight at its deadline."""

from __future__ import annotations

import collections
import http.client
import itertools
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path


def _client(spec: dict, index: int, start_at: float, out: list) -> None:
    clients, rate, seconds, tokens = spec["clients"], spec["rate"], spec["seconds"], spec["tokens"]
    headers = {"Content-Type": "application/json", **spec.get("headers", {})}
    if tokens:
        headers["Authorization"] = f"Bearer {tokens[index % len(tokens)]}"
    body = json.dumps({"phone_number": spec["phone_number"], "amount": spec["amount"]})
    # The provider's API (`provider_body`): a fresh external id per request, never answered from its record.
    prefix, provider_body = spec.get("external_id_prefix"), spec.get("provider_body")
    conn = http.client.HTTPConnection(spec["host"], spec["port"], timeout=30)
    for n in itertools.count():
        due = start_at + (index / clients + n) * clients / rate if rate else time.time()
        if due - start_at >= seconds:
            break
        if rate:
            time.sleep(max(0.0, due - time.time()))
        if prefix:
            body = json.dumps({**provider_body, "external_id": f"{prefix}{index}-{n}"})
        sent, t0 = time.time(), time.perf_counter()
        try:
            conn.request("POST", spec.get("path", "/api/v1/charges/"), body=body, headers=headers)
            response = conn.getresponse()
            status, payload = response.status, response.read()
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
        except (OSError, http.client.HTTPException):
            conn.close()
            status, payload = 0, b""
        # An open loop's request sent late is timed from when it was due.
        latency = time.perf_counter() - t0 + (max(0.0, sent - due) if rate else 0.0)
        try:
            charge_id = json.loads(payload)["id"] if status == 202 else None
        except (ValueError, KeyError):
            charge_id = None
        out.append((min(sent, due) if rate else sent, latency, status, charge_id))
    conn.close()


def _process(spec: dict, indexes: list[int], start_at: float) -> list:
    results: list[list] = [[] for _ in indexes]
    args = [(spec, i, start_at, out) for i, out in zip(indexes, results, strict=True)]
    threads = [threading.Thread(target=_client, args=a, daemon=True) for a in args]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(spec["seconds"] + 120)
    return [row for per_client in results for row in per_client]


def main(spec_path: str, out_path: str) -> int:
    with open(spec_path) as fh:
        spec = json.load(fh)
    # Several processes: a GIL-starved client would close late, and gunicorn's sync worker waits for it.
    processes = max(1, min(spec.get("processes", 4), spec["clients"]))
    start_at = time.time() + 0.5
    groups = [list(range(p, spec["clients"], processes)) for p in range(processes)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        parts = pool.starmap(_process, [(spec, group, start_at) for group in groups])
    ended = time.time()
    rows = [row for part in parts for row in part]
    with open(out_path, "w") as fh:
        json.dump({"started": start_at, "ended": ended, "requests": rows}, fh)
    return 0


def percentiles(values: list[float]) -> dict:
    """Nearest-rank percentiles and the maximum of durations in seconds, in milliseconds."""
    ordered = sorted(values)

    def pct(p: float) -> float | None:
        k = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
        return round(ordered[k] * 1000, 1) if ordered else None

    return {name: pct(p) for name, p in (("p50", 50), ("p95", 95), ("p99", 99), ("p99.9", 99.9), ("max", 100))}


def summarize(raw: dict, ok: int = 202) -> dict:
    """The rows (send time, latency, status, charge id) summed up; `ok` the status of one done."""
    rows, seconds = raw["requests"], raw["ended"] - raw["started"]
    accepted = sum(1 for r in rows if r[2] == ok)
    errors = collections.Counter(str(r[2]) for r in rows if r[2] != ok)
    return {"requests": len(rows), "accepted": accepted, "errors": dict(errors), "seconds": round(seconds, 2),
            "accepted_per_s": round(accepted / seconds, 1), "latency_ms": percentiles([r[1] for r in rows])}  # fmt: skip


WRK_SCRIPT = Path(__file__).with_name("wrk_charge.lua")
# wrk's threads: plenty for 128 connections; on 2 cores each extra one costs the server.
WRK_THREADS = 4


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_closed_loop(*, port: int, tokens: list[str], clients: int, seconds: float, body: dict) -> dict:
    """As `summarize` (status 0: connection errors, time-outs), percentiles from wrk's histogram."""
    threads = max(1, min(WRK_THREADS, len(tokens), clients))
    env = dict(os.environ, WRK_TOKENS=",".join(tokens), WRK_THREADS=str(threads), WRK_BODY=json.dumps(body))
    argv = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "30s"]
    argv += ["-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}/api/v1/charges/"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 120, check=True)
    line = next((line for line in done.stdout.splitlines() if line.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    result = json.loads(line.removeprefix("WRK_RESULT "))
    errors = {status: count for status, count in result["statuses"].items() if status != "202"}
    if result["errors"]:
        errors["0"] = result["errors"]
    accepted, elapsed = result["statuses"].get("202", 0), result["elapsed_us"] / 1e6
    histogram = {"p50": "p50", "p90": "p90", "p95": "p95", "p99": "p99", "p99.9": "p999", "max": "max"}
    return {"requests": result["requests"], "accepted": accepted, "errors": errors, "seconds": round(elapsed, 2),
            "accepted_per_s": round(accepted / elapsed, 1), "load_generator": "wrk",
            "latency_ms": {name: round(result[f"{key}_us"] / 1000, 1) for name, key in histogram.items()}}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

"""The HTTP load generator, run as its own process so that its threads never share a GIL with the
benchmark's pollers: `python -m bench.scenarios.http_load SPEC.json OUT.json`.

Closed loop (`rate` 0): each of `clients` threads sends single-charge POSTs back to back for
`seconds`. Open loop (`rate` > 0): the threads together send `rate` requests a second on a fixed
schedule, and a late request is sent at once and timed from when it was due, so a slow server
shows up as latency rather than as fewer requests. The ledger's charge POSTs, or (with
`external_id_prefix`) the provider's `POST /v1/transactions`. Standard library only."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import sys
import threading
import time


def _client(spec: dict, index: int, start_at: float, out: list) -> None:
    host, port = spec["host"], spec["port"]
    path = spec.get("path", "/api/v1/charges/")
    headers = {"Content-Type": "application/json"}
    if spec["tokens"]:
        headers["Authorization"] = f"Bearer {spec['tokens'][index % len(spec['tokens'])]}"
    body = json.dumps({"phone_number": spec["phone_number"], "amount": spec["amount"]})
    # The provider's API instead (`external_id_prefix` set): a fresh external id per request, so
    # each one is processed, never answered from the provider's record.
    prefix = spec.get("external_id_prefix")
    clients, rate, seconds = spec["clients"], spec["rate"], spec["seconds"]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    interval = clients / rate if rate else 0.0
    n = 0
    while True:
        due = start_at + (index / clients + n) * interval if rate else time.time()
        if due - start_at >= seconds:
            break
        if rate:
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
        if prefix:
            body = json.dumps(
                {"external_id": f"{prefix}{index}-{n}", "msisdn": spec["phone_number"], "amount": spec["amount"]}
            )
        sent = time.time()
        t0 = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            status = response.status
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
        except (OSError, http.client.HTTPException):
            conn.close()
            status, payload = 0, b""
        latency = time.perf_counter() - t0
        if rate:
            latency += max(0.0, sent - due)
        charge_id = None
        if status == 202:
            try:
                charge_id = json.loads(payload)["id"]
            except (ValueError, KeyError):
                charge_id = None
        out.append((min(sent, due) if rate else sent, latency, status, charge_id))
        n += 1
    conn.close()


def _process(spec: dict, indexes: list[int], start_at: float) -> list:
    results: list[list] = [[] for _ in indexes]
    threads = [
        threading.Thread(target=_client, args=(spec, i, start_at, results[n]), daemon=True)
        for n, i in enumerate(indexes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(spec["seconds"] + 120)
    return [row for per_client in results for row in per_client]


def main(spec_path: str, out_path: str) -> int:
    with open(spec_path) as fh:
        spec = json.load(fh)
    # Several processes, so that a client reads and closes its answer promptly even at 128
    # clients: gunicorn's sync worker waits for the client to close before it takes the next
    # request, so a GIL-starved load generator would slow the server it measures.
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

"""`python -m bench.hosts` (root: network namespaces): the stack on six hosts (devstack/hosts/),
measured where one host cannot show it (docs/scaling.md), with the cluster's client.
1. Charges accepted/s from `--clients` closed loops to web1 alone, then split over web1 and web2.
2. Takeover: worker host w1 cut off under submissions; the seconds until the standby on w2 has
   settled every charge accepted for w1's group since. Writes latest-hosts.json and .md."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import threading
import time
from pathlib import Path

import psutil

from devstack.hosts.client import charge, create_seller, fund, login
from devstack.hosts.cluster import ADMIN_PASSWORD, Cluster
from devstack.hosts.network import why_namespaces_unavailable
from devstack.postgres import why_unavailable as why_postgres_unavailable
from workers.assignment import shard_assignment

RESULTS = Path(__file__).resolve().parent / "results"


def closed_loop(sessions: list, urls: list[str], seconds: float) -> dict:
    """Each client submits one charge after another to its web host: accepted charges per second,
    and how busy the machine's cores were meanwhile (every host shares them)."""
    accepted: list[bool] = []
    stop, before = time.monotonic() + seconds, psutil.cpu_times()

    def client(i: int) -> None:
        while time.monotonic() < stop:
            accepted.append(charge(sessions[i], urls[i % len(urls)]).status_code == 202)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(sessions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = psutil.cpu_times()
    busy = 1 - (after.idle + after.iowait - before.idle - before.iowait) / max(sum(after) - sum(before), 1e-9)
    per_s, errors = round(sum(accepted) / seconds, 1), accepted.count(False)
    return {"accepted_per_s": per_s, "errors": errors, "machine_busy": round(busy, 2)}


def run(args: argparse.Namespace) -> dict:
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="bench-hosts-"))).start()
    try:
        webs = [cluster.web_url("web1"), cluster.web_url("web2")]
        admin = login(webs[0], "admin", ADMIN_PASSWORD)
        sellers = []
        for n in range(args.clients):
            seller_id = create_seller(admin, webs[0], f"bench{n}")
            fund(login(webs[0], f"bench{n}"), webs[0], admin, webs[0], 10_000_000)
            sellers.append((seller_id, [login(url, f"bench{n}") for url in webs]))
        one = closed_loop([s[0] for _, s in sellers], webs[:1], args.seconds)
        two = closed_loop([s[i % 2] for i, (_, s) in enumerate(sellers)], webs, args.seconds)
        cluster.wait_sql("SELECT count(*) FROM ledger_charge WHERE stage = 'queued'", 0, 120)

        group = shard_assignment(4, 2)[0]
        lost = [s for seller_id, s in sellers if seller_id % 4 in group]
        cluster.network.cut(cluster.hosts["w1"])
        cut_at = time.monotonic()
        accepted = [charge(s[i % 2], webs[i % 2]).json()["id"] for i in range(5) for s in lost]
        cluster.wait_reserved(accepted, timeout=60)
        takeover = time.monotonic() - cut_at
        audit = "ok" if "passed" in cluster.audit() else "failed"
    finally:
        cluster.close()
    ratio = round(two["accepted_per_s"] / max(one["accepted_per_s"], 0.1), 2)
    meta = {"clients": args.clients, "seconds": args.seconds, "web_workers_per_host": 1, "lease_seconds": 5}
    return {"meta": {"run": dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ"), **meta}, "audit": audit,
            "web": {"one_host": one, "two_hosts": two, "ratio": ratio}, "takeover_seconds": round(takeover, 1)}  # fmt: skip


def markdown(results: dict) -> str:
    web = results["web"]
    return "\n".join([
        f"# Multi-host run {results['meta']['run']} (`python -m bench.hosts`)",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| charges accepted/s, one web host | {web['one_host']['accepted_per_s']} (machine {web['one_host']['machine_busy']:.0%} busy) |",
        f"| charges accepted/s, two web hosts | {web['two_hosts']['accepted_per_s']} (machine {web['two_hosts']['machine_busy']:.0%} busy) |",
        f"| ratio two/one (same run, same 2 cores) | {web['ratio']} |",
        f"| takeover of a cut-off worker host (lease 5 s) | {results['takeover_seconds']} s |",
        f"| audit | {results['audit']} |",
        "",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hosts", description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if reason := why_namespaces_unavailable() or why_postgres_unavailable():
        print(f"cannot run: {reason}")
        return 2
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest-hosts.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "latest-hosts.md").write_text(markdown(results))
    print(markdown(results))
    return 0 if results["audit"] == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m provider_sandbox --host 127.0.0.1 --port 8090 [options]`; every option also from the
environment (`--latency-ms` ← SANDBOX_LATENCY_MS, ...), the command line winning."""

import argparse
import asyncio
import logging
import os
import sys

import uvicorn

from core.currencies import to_minor
from provider_sandbox.app import SandboxApp
from provider_sandbox.catalog import Catalog
from provider_sandbox.connections import KEEP_ALIVE_SECONDS
from provider_sandbox.outcomes import RATES, Config
from provider_sandbox.store import Store

READY_MARKER = "sandbox provider ready"

OPTIONS = [
    # (option, type, default, help)
    ("host", str, "127.0.0.1", "address to listen on"),
    ("port", int, 8090, "port to listen on"),
    ("latency_ms", float, 5.0, "milliseconds every /v1 request waits before it is answered"),
    ("decline_rate", float, 0.0, "share of transactions DECLINED operator_declined"),
    ("throttle_rate", float, 0.0, "share of requests answered 429 before processing"),
    ("error_rate", float, 0.0, "share of requests answered 503 before processing"),
    ("drop_rate", float, 0.0, "share of transactions processed whose answer is dropped"),
    ("pending_rate", float, 0.0, "share of transactions SUBMITTED, COMPLETED pending-seconds later"),
    ("reverse_rate", float, 0.0, "share of completed transactions REVERSED reverse-seconds later"),
    ("stale_rate", float, 0.0, "share of requests on a reused keep-alive connection closed unread, unprocessed"),
    ("pending_seconds", float, 3.0, "seconds a SUBMITTED transaction takes to complete"),
    (
        "hang_seconds",
        float,
        30.0,
        "seconds a request to a ...9904 or ...9907 number hangs before its connection closes",
    ),
    ("reverse_seconds", float, 3.0, "seconds after which a completed top-up due for reversal is reversed"),
    ("token_seconds", float, 3600.0, "lifetime of the Reloadly dialect's access tokens"),
    ("seed", int, 0, "seed of every random draw"),
    ("api_key", str, "", "when set, /v1 requests need Authorization: Bearer <key>"),
    ("callback_secret", str, "", "Standard Webhooks secret (whsec_...) callbacks are signed with"),
    ("client_id", str, "sandbox", "DT One key (basic auth user) and Reloadly client id"),
    ("client_secret", str, "sandbox-secret", "DT One secret (basic auth password) and Reloadly client secret"),
    (
        "balance",
        str,
        "1000000000",
        "the account's starting balance in USD (a new --db only), drawn by /dvs and /reloadly",
    ),
    ("db", str, ":memory:", "SQLite file holding the transactions (kept across restarts)"),
    ("catalog", str, "", "JSON file of the catalog served (default: the shipped provider_sandbox/catalog.json)"),
]


class _DroppedAnswerFilter(logging.Filter):
    """uvicorn logs each deliberately dropped answer (app.py, Drop) as an ASGI error; the sandbox
    counts them in /_sandbox/stats instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("ASGI callable should return None, but returned 'drop'")


def parse_args(argv: list[str] | None = None, environ=os.environ) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m provider_sandbox", description=__doc__)
    for name, kind, default, help_text in OPTIONS:
        variable = f"SANDBOX_{name.upper()}"
        raw = environ.get(variable)
        try:
            value = default if raw is None else kind(raw)
        except ValueError:
            parser.error(f"{variable}={raw!r} is not a {kind.__name__}")
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=value, help=f"{help_text} ({variable})")
    args = parser.parse_args(argv)
    for rate in RATES:
        if not 0 <= getattr(args, rate) <= 1:
            parser.error(f"--{rate.replace('_', '-')} must be between 0 and 1")
    try:
        if to_minor(args.balance, "USD") < 0:
            raise ValueError
    except (ValueError, ArithmeticError):
        parser.error("--balance must be an amount in USD >= 0 with at most 2 decimals")
    if args.callback_secret and not args.callback_secret.startswith("whsec_"):
        parser.error("--callback-secret must be a Standard Webhooks secret (whsec_...)")
    return args


async def serve(args: argparse.Namespace) -> None:
    config = Config(
        **{
            name: getattr(args, name)
            for name, *_ in OPTIONS
            if name not in ("host", "port", "db", "catalog", "balance")
        }
    )
    store = Store(args.db, balance=to_minor(args.balance, "USD"), currency="USD")
    app = SandboxApp(config, store, Catalog(args.catalog or None))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            lifespan="on",
            access_log=False,
            log_level="warning",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            # A request hanging on purpose (9904) must not hold a stop for hang-seconds.
            timeout_graceful_shutdown=2,
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.02)
    if server.started:
        print(f"{READY_MARKER} on http://{args.host}:{args.port} {config.public()} db={args.db}", flush=True)
    await serving


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("uvicorn.error").addFilter(_DroppedAnswerFilter())
    asyncio.run(serve(args))
    sys.exit(0)


if __name__ == "__main__":
    main()

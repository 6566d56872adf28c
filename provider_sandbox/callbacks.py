"""Callbacks: the transaction's JSON POSTed to its callback_url once it is final, signed with
Standard Webhooks headers when a secret is set, retried with backoff, never awaited by a request.

A raw asyncio HTTP/1.1 POST rather than `asyncio.to_thread(requests.post, ...)`: each delivery,
retries and slow receivers included, then costs a coroutine, not one of the default executor's
few threads (a slow receiver would otherwise queue every other callback behind it), and no
async HTTP client becomes a runtime dependency."""

import asyncio
import json
import logging
import ssl
from datetime import UTC, datetime
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

logger = logging.getLogger("provider_sandbox.callbacks")

BACKOFF_SECONDS = (0.5, 1, 2, 4)  # after the first attempt: five attempts in all
TIMEOUT_SECONDS = 5.0


def signed_headers(secret: str, *, msg_id: str, body: str) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=msg_id, timestamp=now, data=body),
    }


async def post(url: str, body: str, headers: dict[str, str]) -> int:
    """One attempt; the answer's status code (raises OSError, ValueError or TimeoutError)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    context = ssl.create_default_context() if parts.scheme == "https" else None
    payload = body.encode()
    head = [
        f"POST {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        "Connection: close",
        "User-Agent: provider-sandbox",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    async with asyncio.timeout(TIMEOUT_SECONDS):
        reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=context)
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
            await writer.drain()
            status_line = await reader.readline()  # "HTTP/1.1 200 OK"; the rest is not needed
        finally:
            writer.close()
    try:
        return int(status_line.split()[1])
    except (IndexError, ValueError):
        raise ValueError(f"no HTTP status line: {status_line[:80]!r}") from None


async def deliver(url: str, transaction: dict, secret: str, stats: dict, msg_id: str) -> None:
    body = json.dumps(transaction)
    for attempt, delay in enumerate((0, *BACKOFF_SECONDS), start=1):
        await asyncio.sleep(delay)
        headers = signed_headers(secret, msg_id=msg_id, body=body) if secret else {}
        try:
            status = await post(url, body, headers)
        except (OSError, ValueError, TimeoutError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if 200 <= status < 300:
                stats["callbacks_delivered"] += 1
                return
            problem = f"HTTP {status}"
        logger.info("callback %s to %s, attempt %d: %s", msg_id, url, attempt, problem)
    stats["callbacks_failed"] += 1
    logger.warning("callback %s to %s abandoned after %d attempts", msg_id, url, attempt)

"""Standard Webhooks signatures (https://www.standardwebhooks.com/), made by the
`standardwebhooks` package itself so they verify with any receiver's copy of it."""

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


def secret_generate() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def signed_headers(*, secrets_: list[str], msg_id: str, body: str, now: datetime) -> dict[str, str]:
    """The three headers of one attempt. Every secret still valid signs (space-separated list),
    so a receiver holding either the old or the new secret verifies during a rotation's overlap."""
    now = now.astimezone(UTC)
    signatures = " ".join(Webhook(secret).sign(msg_id=msg_id, timestamp=now, data=body) for secret in secrets_)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }

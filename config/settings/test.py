"""The test suite: real PostgreSQL and Redis, fast password hashing."""

import base64
import os
import secrets

from .base import *  # noqa: F401,F403
from .base import env, env_float

# A fresh key per run unless one is given, put into the environment so that the processes the
# tests start (gunicorn, workers, runstack) verify the tokens the tests sign.
SECRET_KEY = os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
# The checkpoints' signing key likewise (the workers the tests start sign with it too).
STATEMENT_SIGNING_KEY = os.environ.setdefault(
    "STATEMENT_SIGNING_KEY", base64.b64encode(secrets.token_bytes(32)).decode()
)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The suite uses its own Redis database so that flushing it (the broker-loss test) touches
# nothing else on the machine.
REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/15")
CELERY_BROKER_URL = REDIS_URL
# The suite's webhook receivers listen on 127.0.0.1; the refusal is tested with this turned off.
WEBHOOK_ALLOW_PRIVATE_URLS = True

# Fulfilment on a short clock (the suite's sandbox hangs 2 s where a provider would time out).
PROVIDER_READ_TIMEOUT = env_float("PROVIDER_READ_TIMEOUT", 1.0)
PROVIDER_LOOKUP_AFTER = env_float("PROVIDER_LOOKUP_AFTER", 1.0)
PROVIDER_REDISPATCH_AFTER = env_float("PROVIDER_REDISPATCH_AFTER", 2.0)
PROVIDER_RECONCILE_INTERVAL = env_float("PROVIDER_RECONCILE_INTERVAL", 0.5)
PROVIDER_BREAKER_RESET = env_float("PROVIDER_BREAKER_RESET", 1.0)
# A fresh prefix per run: the session's sandbox is new, but a developer's may be shared.
PROVIDER_EXTERNAL_ID_PREFIX = os.environ.setdefault("PROVIDER_EXTERNAL_ID_PREFIX", f"t{secrets.token_hex(3)}_")

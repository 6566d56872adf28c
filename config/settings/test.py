"""The test suite: real PostgreSQL and Redis, fast password hashing."""

import os
import secrets

from .base import *  # noqa: F401,F403
from .base import env

# A fresh key per run unless one is given, put into the environment so that the processes the
# tests start (gunicorn, workers, runstack) verify the tokens the tests sign.
SECRET_KEY = os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The suite uses its own Redis database so that flushing it (the broker-loss test) touches
# nothing else on the machine.
REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/15")
CELERY_BROKER_URL = REDIS_URL
# The suite's webhook receivers listen on 127.0.0.1; the refusal is tested with this turned off.
WEBHOOK_ALLOW_PRIVATE_URLS = True

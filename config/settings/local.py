"""Developer machines: debug on, an insecure but stable secret when none is given."""

from .base import *  # noqa: F401,F403
from .base import env, env_bool

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env("SECRET_KEY") or "local-development-only-not-a-secret"
# A developer's webhook receiver usually runs on their own machine (refused in production).
WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", True)

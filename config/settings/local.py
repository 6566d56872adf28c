"""Developer machines (`make up`, `manage.py ...`). Nothing secret lives in the repository: the
checkout's `.env` fills in whatever the environment does not set, and the first run of a
checkout writes it with a fresh SECRET_KEY (config/env_file.py, as `make env` does). Debug
pages only when asked for (`DEBUG=1`): they show tracebacks and settings to whoever reaches the
port."""

import os
import sys

from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from config.env_file import ROOT, add_missing_secrets, write_env_file

# Before base.py reads the environment, so that .env counts for every setting and for the
# processes `runstack` starts (they inherit this environment). The environment always wins.
_env_file = ROOT / os.environ.get("ENV_FILE", ".env")
if not os.environ.get("SECRET_KEY"):
    _generated = write_env_file(_env_file)
    if _generated:
        print(f"wrote {_env_file} (mode 600) with fresh {', '.join(_generated)}", file=sys.stderr)
if not os.environ.get("STATEMENT_SIGNING_KEY") and not os.environ.get("STATEMENT_SIGNING_KEY_FILE"):
    _added = add_missing_secrets(_env_file)
    if _added:
        print(f"added {', '.join(_added)} to {_env_file}", file=sys.stderr)
load_dotenv(_env_file, override=False)
if not os.environ.get("SECRET_KEY"):
    raise ImproperlyConfigured(f"{_env_file} has no SECRET_KEY: set one, or delete the file to get a fresh one")

from .base import *  # noqa: E402,F401,F403
from .base import env_bool  # noqa: E402

DEBUG = env_bool("DEBUG", False)
# A developer's webhook receiver usually runs on their own machine (refused in production).
WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", True)

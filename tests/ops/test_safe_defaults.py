"""No secret in the repository and no debug pages unless asked for: the development settings
(what `make up` runs) sign with this checkout's own key from `.env`, never a published one."""

import os
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

ROOT = Path(__file__).resolve().parents[2]
# The key the development settings fell back to before: published in this repository's history.
PUBLISHED_KEY = "local-development-only-not-a-secret"

_PROBE = f"""
import time, django, jwt
django.setup()
from django.conf import settings
forged = jwt.encode({{"user_id": "1", "token_type": "access", "jti": "x", "exp": int(time.time()) + 600}},
                    {PUBLISHED_KEY!r}, algorithm="HS256")
try:
    from rest_framework_simplejwt.tokens import AccessToken

    AccessToken(forged)
    print("forged token: accepted")
except Exception as exc:
    print("forged token: refused", type(exc).__name__)
print("debug:", settings.DEBUG)
"""


def _local_settings(env_file: Path, **extra) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.local", ENV_FILE=str(env_file), **extra)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_first_run_of_a_checkout_writes_its_own_key_and_later_runs_keep_it(tmp_path):
    env_file = tmp_path / ".env"
    out = _local_settings(env_file)
    assert "forged token: refused TokenError" in out and "debug: False" in out
    key = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and line[0] != "#")[
        "SECRET_KEY"
    ]
    assert len(key) >= 50 and oct(env_file.stat().st_mode)[-3:] == "600"
    _local_settings(env_file)
    assert f"SECRET_KEY={key}" in env_file.read_text()


def test_debug_pages_only_when_asked_for(tmp_path):
    assert "debug: False" in _local_settings(tmp_path / ".env")
    assert "debug: True" in _local_settings(tmp_path / ".env", DEBUG="1")


def test_no_settings_module_holds_a_secret_literal():
    for module in (ROOT / "config" / "settings").glob("*.py"):
        text = module.read_text()
        assert PUBLISHED_KEY not in text and "not-a-secret-" not in text, module


def test_test_settings_key_is_random_per_run():
    probe = "from django.conf import settings; print(settings.SECRET_KEY)"
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    keys = {
        subprocess.run(
            [sys.executable, "-c", "import django; django.setup(); " + probe],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(keys) == 2 and all(len(key) >= 50 for key in keys)


@pytest.mark.django_db
def test_the_published_key_signs_nothing_the_test_stack_accepts():
    from rest_framework.test import APIClient

    from tests.factories import make_admin

    admin = make_admin()
    forged = jwt.encode(
        {"user_id": str(admin.pk), "token_type": "access", "jti": "x", "exp": int(time.time()) + 600},
        PUBLISHED_KEY,
        algorithm="HS256",
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert client.get("/api/v1/staff/").status_code == 401

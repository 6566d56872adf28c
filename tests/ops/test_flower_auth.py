"""Flower, started as the stack starts it (`manage.py runflower`), answers nothing but its health
check without credentials: its pages and its Prometheus /metrics (task names, worker hosts) ask
for the basic-auth password."""

import secrets
import socket
import subprocess
import sys
import time

import pytest
import requests

from devstack.processes import ROOT
from tests.support import subprocess_env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def flower(tmp_path_factory):
    port, credentials = _free_port(), ("ops", secrets.token_urlsafe(16))
    log = tmp_path_factory.mktemp("flower") / "flower.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runflower", f"--port={port}"],
            cwd=ROOT,
            env=subprocess_env({"FLOWER_BASIC_AUTH": ":".join(credentials)}),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{url}/healthcheck", timeout=2)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Flower did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield url, credentials
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_flower_metrics_ask_for_the_password(flower):
    url, credentials = flower
    anonymous = requests.get(f"{url}/metrics", timeout=10)
    assert anonymous.status_code == 401 and "flower_" not in anonymous.text
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.get(f"{url}/metrics", auth=("ops", "wrong-password-123"), timeout=10).status_code == 401
    authenticated = requests.get(f"{url}/metrics", auth=credentials, timeout=10)
    assert authenticated.status_code == 200 and "flower_" in authenticated.text


def test_flower_pages_ask_for_the_password_and_its_health_check_does_not(flower):
    url, credentials = flower
    assert requests.get(f"{url}/workers", timeout=10).status_code == 401
    assert requests.get(f"{url}/workers", auth=credentials, timeout=10).status_code == 200
    health = requests.get(f"{url}/healthcheck", timeout=10)
    assert health.status_code == 200 and health.text == "OK"

"""nginx in front of gunicorn, both started with the commands `make up` uses: slow clients cost
gunicorn nothing, oversized bodies are refused before gunicorn reads them, and the client
address the login limits count is the one nginx saw (NUM_PROXIES=1), whatever the client
claims in X-Forwarded-For. Skips where nginx is not installed (.ci/run installs it)."""

import socket
import subprocess
import time

import pytest
import requests

from core.services import api_key_issue
from devstack.front_proxy import front_proxy, nginx_binary
from devstack.stack import stream_argv, web_argv
from tests.factories import PASSWORD, make_seller
from tests.support import Process, subprocess_env

needs_nginx = pytest.mark.skipif(
    nginx_binary() is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run installs it)"
)

BATCH_MAX_BYTES = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, processes: list[Process], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{url}/api/v1/health/", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        for process in processes:
            if not process.alive:
                pytest.fail(f"{process.name} exited:\n{process.log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail("the proxied stack never answered /api/v1/health/")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def proxied(django_db_setup, tmp_path_factory):
    logs, run_dir = tmp_path_factory.mktemp("front-proxy-logs"), tmp_path_factory.mktemp("front-proxy-run")
    backend, front, stream = _free_port(), _free_port(), _free_port()
    env = subprocess_env(
        {"NUM_PROXIES": "1", "LOGIN_THROTTLE_RATE": "3/15m", "LEDGER_BATCH_MAX_BYTES": str(BATCH_MAX_BYTES)}
    )
    web = Process("web", web_argv(host="127.0.0.1", port=backend, workers=2), env, logs)
    events = Process("stream", stream_argv(host="127.0.0.1", port=stream), env, logs)
    proxy = front_proxy(
        nginx=nginx_binary(),
        listen=f"127.0.0.1:{front}",
        upstream=f"127.0.0.1:{backend}",
        stream_upstream=f"127.0.0.1:{stream}",
        run_dir=run_dir,
        batch_max_bytes=BATCH_MAX_BYTES,
    )
    nginx = Process("nginx", proxy.argv, env, logs)
    web.start()
    events.start(ready_marker="Uvicorn running", timeout=30)
    nginx.start()
    url = f"http://127.0.0.1:{front}"
    try:
        _wait_healthy(url, [web, nginx])
        yield url
    finally:
        nginx.stop()
        events.stop()
        web.stop()


def _slow_client(url: str) -> socket.socket:
    """Headers, then 6 of the 1,000 body bytes announced, then silence."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(
        b"POST /api/v1/charges/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"pho'[:6].ljust(6, b" ")
    )
    return sock


@needs_nginx
def test_a_dozen_slow_clients_do_not_stop_the_api(proxied):
    """The finding: 12 such clients made /api/v1/health/ time out (over 10 s) on gunicorn alone."""
    slow = [_slow_client(proxied) for _ in range(12)]
    try:
        time.sleep(0.5)
        for _ in range(10):
            started = time.monotonic()
            response = requests.get(f"{proxied}/api/v1/health/", timeout=5)
            assert response.status_code == 200 and time.monotonic() - started < 2.0
            time.sleep(0.2)
    finally:
        for sock in slow:
            sock.close()


@needs_nginx
def test_a_body_above_the_limit_is_refused_by_nginx_in_the_error_shape(proxied):
    host, port = proxied.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        announced = BATCH_MAX_BYTES + 2 * 1024 * 1024
        sock.sendall(
            b"POST /api/v1/charge-batches/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
            b"boundary=x\r\nContent-Length: " + str(announced).encode() + b"\r\nConnection: close\r\n\r\n"
        )
        reply = b""
        # nginx answers at once and then keeps reading (lingering close): read the answer only.
        while not reply.rstrip().endswith(b"}"):
            reply += sock.recv(65536)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"application/json" in head
    assert b'"code": "request_too_large"' in body


@needs_nginx
@pytest.mark.django_db(transaction=True)
def test_logins_are_counted_by_the_address_nginx_saw_not_the_one_claimed(proxied):
    username = make_seller().user.username
    for n in range(3):
        forged = {"X-Forwarded-For": f"203.0.113.{n}"}
        wrong = requests.post(
            f"{proxied}/api/v1/auth/token/", json={"username": username, "password": "x"}, headers=forged, timeout=10
        )
        assert wrong.status_code == 401
    right = requests.post(
        f"{proxied}/api/v1/auth/token/",
        json={"username": username, "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.7"},
        timeout=10,
    )
    assert right.status_code == 429 and right.json()["code"] == "throttled"


@needs_nginx
def test_make_up_puts_nginx_in_front_of_gunicorn(tmp_path):
    from devstack.stack import stack_processes

    proxy = front_proxy(
        nginx=nginx_binary(),
        listen="127.0.0.1:8000",
        upstream="127.0.0.1:9000",
        stream_upstream="127.0.0.1:9001",
        run_dir=tmp_path,
    )
    specs = {
        spec.name: spec.argv
        for spec in stack_processes(port=8000, flower_port=5555, proxy_argv=proxy.argv, web_port=9000)
    }
    assert specs["proxy"] == proxy.argv
    assert specs["web"][specs["web"].index("--bind") + 1] == "127.0.0.1:9000"
    checked = subprocess.run([*proxy.argv[:-2], "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_compose_runs_the_same_template_in_the_official_image():
    import re

    import yaml

    from devstack.front_proxy import ROOT, TEMPLATE

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    proxy = services["proxy"]
    assert proxy["image"].startswith("nginx:") and not proxy["image"].endswith(":latest")
    mounted = {volume.split(":")[0]: volume.split(":")[1] for volume in proxy["volumes"]}
    assert mounted[f"./{TEMPLATE.relative_to(ROOT)}"] == "/etc/nginx/templates/default.conf.template"
    placeholders = set(re.findall(r"\$\{(LEDGER_[A-Z_]+)\}", TEMPLATE.read_text()))
    assert placeholders <= set(proxy["environment"]), placeholders - set(proxy["environment"])
    assert "ports" not in services["web"] and proxy["ports"] == ["${PORT:-8000}:8000"]
    assert services["web"]["environment"]["NUM_PROXIES"] == "${NUM_PROXIES:-1}"


@needs_nginx
@pytest.mark.django_db(transaction=True)
def test_the_event_stream_is_served_at_the_apis_address(proxied):
    """gunicorn answers the stream's path 404; through the proxy it is the ASGI process's stream."""
    seller = make_seller()
    _, key = api_key_issue(seller=seller, name="stream")
    with requests.get(
        f"{proxied}/api/v1/events/stream/", headers={"Authorization": f"Api-Key {key}"}, stream=True, timeout=10
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert next(response.iter_lines(chunk_size=1)) is not None  # the first line arrives unbuffered
    anonymous = requests.get(f"{proxied}/api/v1/events/stream/", timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"

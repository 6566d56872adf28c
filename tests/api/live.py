"""A real gunicorn serving the test database, and a small HTTP client for it.

The server runs the production command (`devstack.stack.web_argv`) with several processes, so
these tests cross real sockets, real process boundaries and real connection pools."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from devstack.processes import Process, free_port
from devstack.stack import web_argv
from tests.support import subprocess_env


class LiveServer:
    def __init__(self, log_dir: Path, *, processes: int = 4, env: dict | None = None):
        self.port = free_port(8100, 8199)
        self.url = f"http://127.0.0.1:{self.port}"
        argv = web_argv(host="127.0.0.1", port=self.port, workers=processes)
        self.process = Process("gunicorn", argv, subprocess_env(env), log_dir)

    def start(self) -> LiveServer:
        self.process.start()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()  # never leave a server behind a failed start
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/api/v1/health/", timeout=5).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or still loading the app
                pass
            if not self.process.alive:
                raise RuntimeError(f"gunicorn exited:\n{self.process.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"gunicorn not ready:\n{self.process.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.stop()


class Api:
    """One client: its own keep-alive connection, like one integrator's HTTP client."""

    def __init__(self, base_url: str, token: str | None = None):
        self.base_url = base_url
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def login(cls, base_url: str, username: str, password: str) -> Api:
        response = requests.post(
            f"{base_url}/api/v1/auth/token/", json={"username": username, "password": password}, timeout=30
        )
        assert response.status_code == 200, response.text
        return cls(base_url, response.json()["access"])

    def clone(self) -> Api:
        """Another connection with the same credentials (one per concurrent client)."""
        other = Api(self.base_url)
        other.session.headers.update(self.session.headers)
        return other

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, f"{self.base_url}{path}", timeout=60, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: dict | None = None, **kwargs) -> requests.Response:
        return self.request("POST", path, json=json, **kwargs)


def concurrently(clients: list[Api], work: Callable[[int, Api], list]) -> list:
    """Run `work(index, client)` for every client at once (released together); flat results."""
    barrier = threading.Barrier(len(clients))

    def run(index: int) -> list:
        barrier.wait()
        return work(index, clients[index])

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        results = list(pool.map(run, range(len(clients))))
    return [item for result in results for item in result]

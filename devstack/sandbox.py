"""The sandbox as a child process, started the same way by the tests, the benchmark and
`manage.py runstack`: `SandboxProcess(log_dir, db=..., latency_ms=50).start()`. No Django."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import requests

from devstack.processes import Process, free_port

READY_MARKER = "sandbox provider ready"  # printed by provider_sandbox/__main__.py
# Where each adapter (PROVIDER_KIND) finds its dialect under the sandbox's address, and the
# credentials the sandbox's DT One and Reloadly dialects accept by default.
SANDBOX_ROOTS = {"sandbox": "", "dvs": "/dvs/v1", "reloadly": "/reloadly"}
SANDBOX_CLIENT = ("sandbox", "sandbox-secret")


def sandbox_argv(*, host: str = "127.0.0.1", port: int, python: str = sys.executable, **options) -> list[str]:
    """`options` are the command's options by their Python names: latency_ms=50 → --latency-ms 50."""
    argv = [python, "-m", "provider_sandbox", "--host", host, "--port", str(port)]
    for name, value in options.items():
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv


class SandboxProcess:
    def __init__(
        self,
        log_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        name: str = "provider-sandbox",
        env: dict | None = None,
        **options,
    ):
        self.host, self.port = host, port or free_port()
        self.process = Process(
            name, sandbox_argv(host=host, port=self.port, **options), env or dict(os.environ), log_dir
        )
        self.session = requests.Session()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process.alive

    def start(self, timeout: float = 20.0) -> SandboxProcess:
        self.process.start(ready_marker=READY_MARKER, timeout=timeout)
        return self

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def configure(self, **changes) -> dict:
        """POST /_sandbox/config: rates, latency_ms, pending_seconds, hang_seconds, down."""
        answer = self.session.post(f"{self.url}/_sandbox/config", json=changes, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def balance(self) -> dict:
        """GET /_sandbox/balance: {available, holding, currency}, smallest units."""
        answer = self.session.get(f"{self.url}/_sandbox/balance", timeout=10)
        answer.raise_for_status()
        return answer.json()

    def set_balance(self, available: int) -> dict:
        """POST /_sandbox/balance: the account's available balance, in the smallest unit."""
        answer = self.session.post(f"{self.url}/_sandbox/balance", json={"available": available}, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def force_status(self, external_id: str, status: str, **more) -> dict:
        """POST /_sandbox/transactions: sets a transaction's status (no money moves; a callback only
        with `callback=True`)."""
        body = {"external_id": external_id, "status": status, **more}
        answer = self.session.post(f"{self.url}/_sandbox/transactions", json=body, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def expire_tokens(self) -> None:
        """DELETE /_sandbox/tokens: every Reloadly access token issued so far is refused from now on."""
        self.session.delete(f"{self.url}/_sandbox/tokens", timeout=10).raise_for_status()

    def stats(self) -> dict:
        answer = self.session.get(f"{self.url}/_sandbox/stats", timeout=10)
        answer.raise_for_status()
        return answer.json()

    def transactions(self, headers: dict | None = None) -> list[dict]:
        """The whole record, by id, through the paged `GET /v1/transactions`."""
        found, after_id = [], 0
        while after_id is not None:
            answer = self.session.get(
                f"{self.url}/v1/transactions", params={"after_id": after_id, "limit": 1000}, headers=headers, timeout=30
            )
            answer.raise_for_status()
            page = answer.json()
            found += page["results"]
            after_id = page["next_after_id"]
        return found

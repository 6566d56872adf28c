"""Integrators under faults: each client submits charges for its seller over HTTP with an
Idempotency-Key, and retries the same key (on a 503 after its Retry-After, on a 5xx or a
connection error at once) until it gets an answer. Every response is kept for the checks."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import requests

PHONE = "09121234567"


@dataclass
class Outcome:
    at: float  # wall clock, when the answer came
    status: int | None  # None: no HTTP answer (connection refused or reset)
    retry_after: str | None = None
    code: str | None = None  # the error body's code, for a 5xx


@dataclass
class ClientLog:
    seller_id: int
    accepted: dict[str, int] = field(default_factory=dict)  # key -> charge id answered
    amounts: dict[str, int] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # a replayed key answered another charge


class ChargeClient(threading.Thread):
    def __init__(self, base_url: str, token: str, seller_id: int, prefix: str, pause: float, stop: threading.Event):
        super().__init__(daemon=True)
        self.base_url, self.prefix, self.pause, self.stop = base_url, prefix, pause, stop
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.log = ClientLog(seller_id)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            key = f"{self.prefix}-{n}"
            amount = 100 + n % 7
            self.log.amounts[key] = amount
            self._submit(key, amount)
            time.sleep(self.pause)

    def _submit(self, key: str, amount: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                response = self.session.post(
                    f"{self.base_url}/api/v1/charges/",
                    json={"phone_number": PHONE, "amount": amount},
                    headers={"Idempotency-Key": key},
                    timeout=10,
                )
            except requests.RequestException:
                self.log.outcomes.append(Outcome(time.time(), None))
                self.session.close()  # a fresh connection, as a client library would after a reset
                time.sleep(0.1)
                continue
            code = _error_code(response) if response.status_code >= 500 else None
            self.log.outcomes.append(
                Outcome(time.time(), response.status_code, response.headers.get("Retry-After"), code)
            )
            if response.status_code in (200, 201, 202):
                charge_id = response.json()["id"]
                if self.log.accepted.setdefault(key, charge_id) != charge_id:
                    self.log.mismatched.append(key)
                return
            if response.status_code == 503:
                time.sleep(min(float(response.headers.get("Retry-After") or 1), 2))
            elif response.status_code >= 500:
                time.sleep(0.1)
            else:
                raise AssertionError(f"{key}: {response.status_code} {response.text}")


def _error_code(response) -> str | None:
    try:
        return response.json().get("code")
    except ValueError:
        return None

"""One real sandbox provider process for the session (tmp SQLite record, short hang and pending
times), its config and account balance reset after every test; the three adapters pointed at its
three dialects; a local receiver for its callbacks."""

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from providers.dtone import DTOneProvider
from providers.dvs import DVSProvider
from providers.reloadly import ReloadlyProvider
from tests.support import SANDBOX_DEFAULTS as DEFAULTS
from tests.support import SANDBOX_SECRET as SECRET
from tests.support import sandbox_options  # noqa: F401  (the tests build their own sandboxes with it)

HANG_SECONDS = DEFAULTS["hang_seconds"]
PENDING_SECONDS = DEFAULTS["pending_seconds"]
REVERSE_SECONDS = DEFAULTS["reverse_seconds"]
BALANCE = 10**11  # the sandbox account's balance at the start of every test, US cents
KEY, SECRET_KEY = "sandbox", "sandbox-secret"  # the sandbox's DT One key / Reloadly client (its defaults)


@pytest.fixture
def sandbox(session_sandbox):
    session_sandbox.set_balance(BALANCE)
    yield session_sandbox
    session_sandbox.configure(**DEFAULTS)
    session_sandbox.set_balance(BALANCE)


def dvs_for(sandbox, **options) -> DVSProvider:
    defaults = {"base_url": f"{sandbox.url}/dvs/v1", "key": KEY, "secret": SECRET_KEY, "timeout": (1.0, 5.0)}
    return DVSProvider(**(defaults | options))


def reloadly_for(sandbox, **options) -> ReloadlyProvider:
    defaults = {
        "base_url": f"{sandbox.url}/reloadly",
        "auth_url": f"{sandbox.url}/reloadly/oauth/token",
        "client_id": KEY,
        "client_secret": SECRET_KEY,
        "timeout": (1.0, 5.0),
    }
    return ReloadlyProvider(**(defaults | options))


@pytest.fixture
def dvs(sandbox):
    return dvs_for(sandbox, callback_secret=SECRET)


@pytest.fixture
def reloadly(sandbox):
    return reloadly_for(sandbox)


@pytest.fixture
def provider(sandbox):
    return DTOneProvider(base_url=sandbox.url, callback_secret=SECRET, timeout=(1.0, 5.0))


@pytest.fixture
def external_id():
    return f"t-{uuid.uuid4().hex}"


def msisdn(suffix: str = "4567") -> str:
    return f"+98912123{suffix}"


def on_a_new_connection(adapter, call):
    """`call()` once the adapter has closed the connections it kept: its request goes out on a
    connection opened for it."""
    adapter.client.clear()
    return call()


class Receiver:
    """A tiny HTTP receiver thread: records every POST (headers, body) and answers 200."""

    def __init__(self):
        self.received: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/callbacks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def for_external_id(self, external_id: str, timeout: float = 10.0) -> tuple[dict, bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for headers, body in self.received:
                if json.loads(body)["external_id"] == external_id:
                    return headers, body
            time.sleep(0.05)
        raise TimeoutError(f"no callback for {external_id}: {len(self.received)} received")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()

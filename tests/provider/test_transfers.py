"""Many requests at once through one client (providers/http.py over providers/transfers.py):
every answer comes back to its own request, no more than the client's connections are in flight,
a request waiting for a connection is not timed out by the wait, and a failure is one request's
alone. Against a real HTTP server on loopback that counts the requests it is answering at once."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings

from devstack.processes import free_port
from providers import http


class Server:
    """Answers `POST /echo` after `delay` seconds with the JSON body it got and the count of
    requests in flight when it arrived."""

    def __init__(self, delay: float):
        self.delay, self.in_flight, self.most, self.lock = delay, 0, 0, threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a provider's API

            def do_POST(self):
                with server.lock:
                    server.in_flight += 1
                    server.most = max(server.most, server.in_flight)
                try:
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    time.sleep(server.delay)
                    answer = json.dumps({"echo": body}).encode()
                    self.send_response(201)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.send_header("X-Seen", str(body["n"]))
                    self.end_headers()
                    self.wfile.write(answer)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/echo"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    started = Server(delay=0.2)
    yield started
    started.close()


def _client(connections: int, timeout=(1.0, 2.0)) -> http.Client:
    with override_settings(PROVIDER_CONCURRENCY=connections):
        return http.Client(timeout=timeout)


def test_many_requests_each_get_their_own_answer_on_at_most_the_clients_connections(server):
    client = _client(connections=4)
    requests = [client.prepare("POST", server.url, json={"n": n}) for n in range(20)]

    answers = client.exchange_all(requests)

    assert [a.status for a in answers] == [201] * 20
    assert [a.json()["echo"]["n"] for a in answers] == list(range(20))
    assert [a.headers.get("x-seen") for a in answers] == [str(n) for n in range(20)]
    assert server.most == 4  # all 4 in use, never a 5th


def test_a_request_waiting_for_a_connection_is_not_timed_out_by_the_wait(server):
    """Ten requests of 0.2 s on one connection take 2 s in all; each is bounded by its own 1.5 s."""
    client = _client(connections=1, timeout=(0.5, 1.0))
    answers = client.exchange_all([client.prepare("POST", server.url, json={"n": n}) for n in range(10)])
    assert [a.status for a in answers] == [201] * 10
    assert server.most == 1


def test_a_request_that_cannot_connect_fails_alone_and_as_not_reached(server):
    client = _client(connections=4)
    closed = f"http://127.0.0.1:{free_port(18600, 18699)}/echo"  # nobody listens
    urls = [server.url, closed, server.url]

    answers = client.exchange_all([client.prepare("POST", url, json={"n": n}) for n, url in enumerate(urls)])

    assert answers[0].status == answers[2].status == 201
    assert isinstance(answers[1], http.NotReached)
    with pytest.raises(http.NotReached):
        client.request("POST", closed, json={"n": 9})


def test_batches_from_several_threads_share_the_clients_connections(server):
    client = _client(connections=3)

    def batch(first: int) -> list[int]:
        answers = client.exchange_all(
            [client.prepare("POST", server.url, json={"n": n}) for n in range(first, first + 5)]
        )
        return [a.json()["echo"]["n"] for a in answers]

    with ThreadPoolExecutor(4) as threads:
        got = list(threads.map(batch, [0, 5, 10, 15]))

    assert got == [list(range(first, first + 5)) for first in (0, 5, 10, 15)]
    assert server.most == 3

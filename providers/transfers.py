"""One thread per HTTP client driving all its requests through libcurl's multi interface: the
fulfilment worker's hundred top-ups of a task go out together from one thread, on at most
`connections` keep-alive connections, and the task waits once for the whole batch.

The event-driven form libcurl documents for many transfers (curl_multi_socket_action): libcurl
says which sockets to watch (the socket callback) and when to call it back (the timer callback);
the thread waits on those sockets and on a pipe other threads write to when they hand it
requests. At most `connections` transfers run at once, the client's concurrency towards the
provider; the rest wait here, in the order they came, not inside libcurl, whose timeouts would
count the wait for a connection as the request's own time.
Nothing of a request's meaning is here (providers/http.py): a job is an easy handle to run, and
its outcome libcurl's result code."""

import collections
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable

import pycurl

logger = logging.getLogger(__name__)


class Job:
    """One transfer: `prepare(curl)` sets the easy handle up; `finish(curl, error)` reads it once
    libcurl is done (`error`: None, or libcurl's (code, message)), in the transfers' thread."""

    __slots__ = ("prepare", "finish", "batch")

    def __init__(self, prepare: Callable[[pycurl.Curl], None], finish: Callable[[pycurl.Curl, tuple | None], None]):
        self.prepare, self.finish, self.batch = prepare, finish, None


class _Batch:
    def __init__(self, size: int):
        self.left, self.done = size, threading.Event()

    def one_done(self) -> None:
        self.left -= 1  # only the transfers' thread counts
        if self.left == 0:
            self.done.set()


class Transfers:
    def __init__(self, *, connections: int):
        self.connections = connections
        self._lock = threading.Lock()
        self._pid = None  # the process the thread runs in: a forked child starts its own
        self._fresh = False  # `forget_connections` asked: the next jobs open their own

    def run(self, jobs: list[Job]) -> None:
        """Run `jobs` concurrently; returns when every one has finished."""
        if not jobs:
            return
        batch = _Batch(len(jobs))
        for job in jobs:
            job.batch = batch
        with self._lock:
            if self._pid != os.getpid():
                self._start()
            self._incoming.extend(jobs)
        os.write(self._wake_w, b"\0")
        batch.done.wait()

    def forget_connections(self) -> None:
        """Close the kept connections once idle; until then new jobs open their own."""
        self._fresh = True

    # The transfers' thread

    def _start(self) -> None:
        self._pid, self._incoming = os.getpid(), collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._multi, self._deadline, self._running, self._spare = self._new_multi(), None, {}, []
        threading.Thread(target=self._loop, name="provider-transfers", daemon=True).start()

    def _new_multi(self) -> pycurl.CurlMulti:
        multi = pycurl.CurlMulti()
        multi.setopt(pycurl.M_SOCKETFUNCTION, self._watch)
        multi.setopt(pycurl.M_TIMERFUNCTION, self._timer)
        multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, self.connections)
        multi.setopt(pycurl.M_MAXCONNECTS, self.connections)
        return multi

    def _watch(self, what: int, fd: int, multi, socketp) -> None:
        """libcurl's socket callback: what to wait for on `fd`."""
        events = {
            pycurl.POLL_IN: selectors.EVENT_READ,
            pycurl.POLL_OUT: selectors.EVENT_WRITE,
            pycurl.POLL_INOUT: selectors.EVENT_READ | selectors.EVENT_WRITE,
        }.get(what)
        registered = fd in self._selector.get_map()
        if events is None:  # POLL_REMOVE
            if registered:
                self._selector.unregister(fd)
        elif registered:
            self._selector.modify(fd, events)
        else:
            self._selector.register(fd, events)

    def _timer(self, timeout_ms: int) -> None:
        """libcurl's timer callback: call back in `timeout_ms`, or never (-1)."""
        self._deadline = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000

    def _loop(self) -> None:
        while True:
            try:
                self._step()
            except Exception:  # a fault here would leave every waiting task waiting: fail the transfers
                logger.exception("provider transfers: the loop failed; its transfers end without an answer")
                self._fail_running()

    def _step(self) -> None:
        wait = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        for key, mask in self._selector.select(wait):
            if key.fd == self._wake_r:
                while True:
                    try:
                        if not os.read(self._wake_r, 4096):
                            break
                    except BlockingIOError:
                        break
                continue
            action = (pycurl.CSELECT_IN if mask & selectors.EVENT_READ else 0) | (
                pycurl.CSELECT_OUT if mask & selectors.EVENT_WRITE else 0
            )
            self._multi.socket_action(key.fd, action)
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self._deadline = None
            self._multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)
        self._read_finished()
        self._add_incoming()  # in the room the finished left

    def _add_incoming(self) -> None:
        room = self.connections - len(self._running)
        if room <= 0:
            return
        with self._lock:
            jobs = [self._incoming.popleft() for _ in range(min(room, len(self._incoming)))]
        if not jobs:
            return
        fresh = self._fresh
        if fresh and not self._running:  # idle: close every kept connection with the old handle
            self._multi.close()
            self._multi, self._deadline, self._fresh, fresh = self._new_multi(), None, False, False
        for job in jobs:
            curl = self._spare.pop() if self._spare else pycurl.Curl()
            try:
                job.prepare(curl)
                if fresh:
                    curl.setopt(pycurl.FRESH_CONNECT, 1)
                self._multi.add_handle(curl)
            except Exception as exc:
                logger.exception("provider transfers: a request could not be started")
                self._end(job, curl, (pycurl.E_FAILED_INIT, f"not started: {exc!r}"))
                continue
            self._running[curl] = job

    def _read_finished(self) -> None:
        while True:
            queued, ok, failed = self._multi.info_read()
            for curl in ok:
                self._finished(curl, None)
            for curl, code, message in failed:
                self._finished(curl, (code, message))
            if not queued:
                return

    def _finished(self, curl: pycurl.Curl, error: tuple | None) -> None:
        job = self._running.pop(curl)
        self._multi.remove_handle(curl)
        self._end(job, curl, error)

    def _end(self, job: Job, curl: pycurl.Curl, error: tuple | None) -> None:
        try:
            job.finish(curl, error)
        finally:
            curl.reset()  # every option back to its default for the next job
            self._spare.append(curl)
            job.batch.one_done()

    def _fail_running(self) -> None:
        running, self._running = self._running, {}
        for curl, job in running.items():
            try:
                self._multi.remove_handle(curl)
            except pycurl.error:
                pass
            self._end(job, curl, (pycurl.E_ABORTED_BY_CALLBACK, "the transfers' loop failed"))

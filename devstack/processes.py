"""A child process of a stack (gunicorn, a shard worker, beat, the sandbox provider) as the
benchmark and the test suite start it: its own session, so stopping its process group also stops
what it forked (gunicorn's workers), and its output appended to `<log_dir>/<name>.log`, where
readiness is read from.

Plain standard library, no Django: `tests/` and `bench/` import it from here, never the other way round."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Process:
    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path):
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.log_offset = 0
        self.popen: subprocess.Popen | None = None

    def start(self, ready_marker: str | None = None, timeout: float = 30.0) -> None:
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        if ready_marker:
            self.wait_for_log(ready_marker, timeout)

    def wait_for_log(self, marker: str, timeout: float) -> None:
        """Until `marker` appears in what this run of the process logged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as fh:
                fh.seek(self.log_offset)
                if marker.encode() in fh.read():
                    return
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        """Until `url` answers 200 (a web process: its health URL)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if not self.alive:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not answering on {url}:\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM to the group (a graceful stop), SIGKILL if it is still there after 15 s."""
        self.terminate()
        self.wait_stopped()

    def terminate(self) -> None:
        """SIGTERM to the group without waiting: a stack's processes then shut down together
        (a worker's warm shutdown takes seconds)."""
        if self.alive:
            os.killpg(self.popen.pid, signal.SIGTERM)

    def wait_stopped(self, timeout: float = 15.0) -> None:
        """After terminate(): until it has exited, SIGKILL if it is still there after `timeout`."""
        if self.popen is None:
            return
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def start_together(processes: list[tuple[Process, str | None]], timeout: float = 60.0) -> None:
    """Start every process at once (each spends seconds importing Django and Celery, mostly
    waiting on another core), then wait for each one's ready line (None: none to wait for)."""
    for process, _ in processes:
        process.start()
    for process, ready in processes:
        if ready:
            process.wait_for_log(ready, timeout)


def stop_together(processes: list[Process]) -> None:
    """SIGTERM to every process first, then wait for each: their warm shutdowns overlap."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait_stopped()


def free_port(first: int = 8400, last: int = 8499) -> int:
    """A port in [first, last] nothing listens on now (another stack may take it before we do:
    ranges per user and a random order keep that rare, even for two suites run side by side)."""
    for port in random.sample(range(first, last + 1), last - first + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{last}")

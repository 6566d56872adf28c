"""Starting and stopping the processes a standalone benchmark tool runs (gunicorn, shard workers).

Each runs in its own session, so stopping its process group also stops what it forked
(gunicorn's workers)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def spawn(argv: list[str], log: Path, *, env: dict | None = None) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_all(processes: list[subprocess.Popen], *, timeout: float = 20) -> None:
    """SIGTERM every group, then SIGKILL the ones still there after `timeout`."""
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

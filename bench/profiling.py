"""Sampling profiles of a running process with py-spy (no change to the code under test), and a
short summary of where the samples were: by function, inclusive and own time."""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def py_spy() -> str | None:
    return shutil.which("py-spy") or (
        str(Path(sys.executable).parent / "py-spy") if (Path(sys.executable).parent / "py-spy").exists() else None
    )


class Profile:
    """`py-spy record --format raw` on a pid (and its children) while the block runs."""

    def __init__(self, pid: int, out: Path, *, subprocesses: bool = False, rate: int = 100, gil: bool = True):
        self.out = out
        self.proc = None
        exe = py_spy()
        if exe is None:
            return
        argv = [
            exe,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--output",
            str(out),
            "--rate",
            str(rate),
            "--nonblocking",
        ]
        if subprocesses:
            argv.append("--subprocesses")
        if gil:
            # Only samples that hold the GIL: where the Python CPU goes, not where it waits.
            argv.append("--gil")
        self.argv = argv

    def __enter__(self) -> Profile:
        if hasattr(self, "argv"):
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def summary(self, top: int = 30) -> dict | None:
        if self.proc is None or not self.out.exists():
            return None
        return summarize(self.out, top=top)


def summarize(path: Path, top: int = 30) -> dict:
    """Inclusive and own sample shares per function from py-spy's collapsed stacks."""
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [_short(frame) for frame in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ")]
        for frame in set(frames):
            inclusive[frame] += n
        if frames:
            own[frames[-1]] += n
    pct = (lambda n: round(100.0 * n / total, 1)) if total else (lambda n: 0.0)
    # Frames present in nearly every sample (interpreter, gunicorn and celery main loops) say nothing.
    telling = [(f, n) for f, n in inclusive.most_common() if n < 0.9 * total][:top]
    return {
        "samples": total,
        "inclusive": [[f, pct(n)] for f, n in telling],
        "own": [[f, pct(n)] for f, n in own.most_common(top)],
    }


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit(":", 1)[0]
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if parts else file
    return f"{name} ({short})"

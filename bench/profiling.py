"""Sampling profiles of a running process with py-spy (no change to the code under test), and a
short summary of where the samples were: by function, inclusive and own time."""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import subprocess
import sys
from pathlib import Path


@contextlib.contextmanager
def profiled(ctx, name: str, pid: int | None, into: dict, *, subprocesses: bool = False):
    """`py-spy record` of `pid` (and children with `subprocesses`) while the block runs, into
    `<results>/profiles/<name>.raw.txt`, summed up in `into["profile"]`; only with `--profile`."""
    beside = Path(sys.executable).parent / "py-spy"
    exe = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
    if not (ctx.profile and name and exe and pid):
        yield
        return
    out = ctx.out_dir / "profiles" / f"{name}.raw.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    # --gil: only samples that hold the GIL, where the Python CPU goes, not where it waits.
    argv = [exe, "record", "--pid", str(pid), "--output", str(out), "--format", "raw", "--rate", "100"]
    argv += ["--nonblocking", "--gil"] + ["--subprocesses"] * subprocesses
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    if out.exists():
        into["profile"] = summarize(out)


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
    file = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(file).parts
    return f"{name} ({'/'.join(parts[-2:]) if parts else file})"

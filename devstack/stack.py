"""The processes of one development stack (`make up`, `manage.py runstack`), each with the command
production runs: web, the shard workers (in the configured assignment, workers/assignment.py), the
import, webhook and fulfilment workers, the event stream, beat and Flower. The benchmark and the
test suite start the same definitions through `devstack.processes.Process`."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from workers.assignment import worker_groups
from workers.commands import (
    beat_argv,
    fulfil_worker_argv,
    import_worker_argv,
    webhook_worker_argv,
    worker_argv,
)

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


def ready_line(name: str) -> str | None:
    """What a process of `stack_processes` logs once it is up; None for the web and the stream,
    which are up when their health URL answers."""
    if name.startswith("shards") or name in ("imports", "webhooks", "fulfil"):
        return " ready."
    return {"beat": "beat: Starting", "flower": "Visit me at", "proxy": None}.get(name)


def default_web_workers() -> int:
    """`WEB_WORKERS`, else one gunicorn process per core: each process runs Python on one core at
    a time (its GIL) and overlaps its waits with threads (gunicorn.conf.py); more processes than
    cores only contend (docs/performance.md)."""
    return int(os.environ.get("WEB_WORKERS") or os.cpu_count() or 2)


def collect_static(env: dict, python: str = sys.executable) -> None:
    """What an operator runs before starting the web under the production settings: their pages
    name static files through collectstatic's manifest, and the web refuses to start without it
    (core/static_files.py). Stacks started process by process (the benchmark, the fault suite)
    call this before the web; `runstack` does it in-process."""
    subprocess.run(
        [python, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"], cwd=ROOT, env=env, check=True
    )


def web_argv(*, host: str, port: int, workers: int, python: str = sys.executable) -> list[str]:
    return [
        python,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "--graceful-timeout",
        "5",
        "--timeout",
        os.environ.get("WEB_TIMEOUT", "30"),
        # gunicorn's control socket defaults to one path per user: two stacks on a machine would share it.
        "--no-control-socket",
    ]


def _free_port_from(port: int) -> int:
    """`port` if nothing listens there (a second stack on the machine may), else one the system picks."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stream_argv(*, host: str, port: int, python: str = sys.executable) -> list[str]:
    """The event stream's ASGI process (notifications/stream.py, under uvicorn): idle streams cost
    a coroutine each, not a gunicorn thread. The front proxy routes /api/v1/events/stream/ to it."""
    return [python, str(ROOT / "manage.py"), "runstream", f"--host={host}", f"--port={port}"]


def flower_argv(*, host: str, port: int, python: str = sys.executable) -> list[str]:
    """Through `manage.py runflower`, which refuses to start Flower without authentication."""
    return [python, str(ROOT / "manage.py"), "runflower", f"--port={port}", f"--address={host}"]


def stack_processes(
    *,
    port: int,
    flower_port: int,
    host: str = "127.0.0.1",
    python: str = sys.executable,
    proxy_argv: list[str] | None = None,
    web_port: int | None = None,
    stream_port: int | None = None,
) -> list[ProcessSpec]:
    """With `proxy_argv` (nginx, devstack/front_proxy.py) the proxy serves `host:port`, gunicorn
    listens on 127.0.0.1:`web_port` and the event stream on 127.0.0.1:`stream_port` behind it;
    without, gunicorn serves `host:port` and the stream `STREAM_PORT` (or the next free port)."""
    web_workers = default_web_workers()
    if proxy_argv:
        web = web_argv(host="127.0.0.1", port=web_port, workers=web_workers, python=python)
        specs = [ProcessSpec("web", web), ProcessSpec("proxy", proxy_argv)]
    else:
        specs = [ProcessSpec("web", web_argv(host=host, port=port, workers=web_workers, python=python))]
    for index, shards in enumerate(worker_groups()):
        specs.append(
            ProcessSpec(
                f"shards{index}",
                worker_argv(shards, name=f"shards{index}", with_default_queue=index == 0, python=python),
            )
        )
    specs.append(ProcessSpec("imports", import_worker_argv(python=python)))
    specs.append(ProcessSpec("webhooks", webhook_worker_argv(python=python)))
    specs.append(ProcessSpec("fulfil", fulfil_worker_argv(python=python)))
    if proxy_argv:
        specs.append(ProcessSpec("stream", stream_argv(host="127.0.0.1", port=stream_port, python=python)))
    else:
        stream_port = int(os.environ.get("STREAM_PORT") or _free_port_from(port + 1))
        specs.append(ProcessSpec("stream", stream_argv(host=host, port=stream_port, python=python)))
    schedule_dir = os.environ.get("BEAT_SCHEDULE_DIR", "/tmp")
    specs.append(
        ProcessSpec("beat", beat_argv(schedule=os.path.join(schedule_dir, f"ledger-beat-{port}"), python=python))
    )
    specs.append(ProcessSpec("flower", flower_argv(host=host, port=flower_port, python=python)))
    return specs

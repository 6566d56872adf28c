"""The processes of one stack: web, the shard workers, beat and Flower.

Which shards each worker process consumes is configuration:
- `LEDGER_WORKER_SHARDS="0,1;2,3"` names the groups explicitly (`;` between processes, `,` or
  `a-b` ranges inside one); it must cover every shard 0..LEDGER_SHARDS-1 exactly once;
- otherwise `LEDGER_WORKER_PROCESSES=N` spreads the shards round-robin (shard k goes to process
  k % N).
Either way every shard has exactly one consuming process: two consumers of one shard would settle
one seller concurrently (safe, the lock serializes them, but wasteful), and an unconsumed shard
would leave its sellers waiting for ever. Every process also takes the sweeper's queue (so sweeping
survives the loss of any one), and process 0 the default queue (audit). Charge list imports have a
worker process of their own on `ledger.imports`."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from workers.routing import DEFAULT_QUEUE, FULFIL_QUEUE, IMPORTS_QUEUE, RECONCILE_QUEUE, SHARD_QUEUE_PREFIX, SWEEP_QUEUE

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


def shard_assignment(shards: int, processes: int) -> list[list[int]]:
    processes = max(1, min(processes, shards))
    return [[k for k in range(shards) if k % processes == p] for p in range(processes)]


def parse_shard_groups(spec: str, shards: int) -> list[list[int]]:
    """`"0,1;2-3"` -> `[[0, 1], [2, 3]]`, refusing anything that does not cover 0..shards-1 exactly once."""
    groups: list[list[int]] = []
    for raw_group in spec.split(";"):
        group: list[int] = []
        for item in (part.strip() for part in raw_group.split(",")):
            if not item:
                continue
            try:
                if "-" in item:
                    low, high = (int(x) for x in item.split("-", 1))
                    group.extend(range(low, high + 1))
                else:
                    group.append(int(item))
            except ValueError as exc:
                raise ImproperlyConfigured(f"LEDGER_WORKER_SHARDS: {item!r} is not a shard number or range") from exc
        if not group:
            raise ImproperlyConfigured(f"LEDGER_WORKER_SHARDS={spec!r} has an empty process group")
        groups.append(group)
    seen: dict[int, int] = {}
    for index, group in enumerate(groups):
        for shard in group:
            if not 0 <= shard < shards:
                raise ImproperlyConfigured(
                    f"LEDGER_WORKER_SHARDS names shard {shard}, but LEDGER_SHARDS={shards} (shards 0..{shards - 1})"
                )
            if shard in seen:
                raise ImproperlyConfigured(
                    f"LEDGER_WORKER_SHARDS gives shard {shard} to processes {seen[shard]} and {index}; "
                    "every shard must have exactly one consumer"
                )
            seen[shard] = index
    missing = sorted(set(range(shards)) - set(seen))
    if missing:
        raise ImproperlyConfigured(
            f"LEDGER_WORKER_SHARDS leaves shards {missing} without a consumer (LEDGER_SHARDS={shards})"
        )
    return groups


def worker_groups() -> list[list[int]]:
    """The configured shard groups, one per worker process."""
    spec = os.environ.get("LEDGER_WORKER_SHARDS", "").strip()
    if spec:
        return parse_shard_groups(spec, settings.LEDGER_SHARDS)
    raw = os.environ.get("LEDGER_WORKER_PROCESSES", "2")
    try:
        processes = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"LEDGER_WORKER_PROCESSES must be an integer, got {raw!r}") from exc
    if processes < 1:
        raise ImproperlyConfigured("LEDGER_WORKER_PROCESSES must be at least 1")
    return shard_assignment(settings.LEDGER_SHARDS, processes)


def worker_argv(shards: list[int], *, name: str, with_default_queue: bool, python: str = sys.executable) -> list[str]:
    queues = (
        [f"{SHARD_QUEUE_PREFIX}{k}" for k in shards] + [SWEEP_QUEUE] + ([DEFAULT_QUEUE] if with_default_queue else [])
    )
    return celery_worker_argv(queues, name=name, python=python)


def import_worker_argv(*, name: str = "imports", python: str = sys.executable) -> list[str]:
    """The import worker: one import at a time, on its own queue, so a long one never delays a shard."""
    return celery_worker_argv([IMPORTS_QUEUE], name=name, python=python)


def celery_worker_argv(
    queues: list[str], *, name: str, python: str = sys.executable, pool: tuple[str, ...] = ("--pool", "solo")
) -> list[str]:
    return [
        python,
        "-m",
        "celery",
        "-A",
        "celery_app",
        "worker",
        "-Q",
        ",".join(queues),
        *pool,
        "--prefetch-multiplier",
        "1",
        "-n",
        f"{name}@%h",
        "-E",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]


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


def webhook_worker_argv(*, name: str = "webhooks", python: str = sys.executable) -> list[str]:
    """The webhook worker: its own queue, threads (deliveries wait on the network, not the CPU),
    so one slow endpoint holds one thread and delays no other endpoint and no settlement."""
    threads = ("--pool", "threads", "--concurrency", os.environ.get("WEBHOOK_WORKER_THREADS", "16"))
    return celery_worker_argv(["ledger.webhooks"], name=name, python=python, pool=threads)


def fulfil_worker_argv(*, name: str = "fulfil", python: str = sys.executable) -> list[str]:
    """The fulfilment worker: its own queue, a few task threads, each task's requests sent at once
    from the process's pool of PROVIDER_CONCURRENCY (ledger/fulfilment/service.py)."""
    threads = ("--pool", "threads", "--concurrency", os.environ.get("FULFIL_WORKER_THREADS", "4"))
    return celery_worker_argv([FULFIL_QUEUE, RECONCILE_QUEUE], name=name, python=python, pool=threads)


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


def beat_argv(*, schedule: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "celery", "-A", "celery_app", "beat", "--loglevel", "INFO", "--schedule", schedule]


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
    """With `proxy_argv` (nginx, workers/front_proxy.py) the proxy serves `host:port`, gunicorn
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


def flower_credentials_problem(value: str | None) -> str | None:
    """Why `FLOWER_BASIC_AUTH` (`user:password[,user:password...]`) is unusable, or None."""
    if not value:
        return "FLOWER_BASIC_AUTH is not set"
    for pair in value.split(","):
        user, sep, password = pair.partition(":")
        if not sep or not user.strip() or not password:
            return "FLOWER_BASIC_AUTH must be user:password[,user:password...]"
        if len(password) < 12:
            return f"the Flower password of {user!r} is shorter than 12 characters"
    return None

"""A Sentinel-managed Redis of a test's own: one master, one replica and three sentinels (quorum 2)
on free ports of 127.0.0.1, no persistence, each a `redis-server` process (`--sentinel` for the
sentinels: Debian ships no `redis-sentinel` binary). What `REDIS_URL=sentinel://...` names in a
deployment, on a short clock: a master silent for `down_after_ms` is down, and the sentinels
promote the replica."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import redis

from core import redis_client
from devstack.processes import Process

MASTER_NAME = "ledger-test"  # not the default, so the tests see the setting reach every process


def redis_server_available() -> bool:
    return shutil.which("redis-server") is not None


def free_ports(count: int, first: int, last: int) -> list[int]:
    """`count` distinct ports of [first, last] nothing listens on now (held together while chosen)."""
    held: list[socket.socket] = []
    try:
        for port in range(first, last + 1):
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
            if len(held) == count:
                return [s.getsockname()[1] for s in held]
        raise RuntimeError(f"not {count} free ports in {first}-{last}")
    finally:
        for sock in held:
            sock.close()


class SentinelRedis:
    def __init__(self, log_dir: Path, *, down_after_ms: int = 1000, failover_timeout_ms: int = 3000):
        self.log_dir, self.master_name = log_dir, MASTER_NAME
        self.down_after_ms, self.failover_timeout_ms = down_after_ms, failover_timeout_ms
        self.data_ports = free_ports(2, 6500, 6599)
        self.sentinel_ports = free_ports(3, 26500, 26599)
        self.url = ";".join(f"sentinel://127.0.0.1:{port}/0" for port in self.sentinel_ports)
        env = dict(os.environ)
        master, replica = self.data_ports
        self.servers = {
            master: Process(f"redis-{master}", self._server_argv(master), env, log_dir),
            replica: Process(
                f"redis-{replica}", [*self._server_argv(replica), "--replicaof", "127.0.0.1", str(master)], env, log_dir
            ),
        }
        self.sentinels = [
            Process(f"sentinel-{port}", ["redis-server", str(self._sentinel_conf(port)), "--sentinel"], env, log_dir)
            for port in self.sentinel_ports
        ]

    def _server_argv(self, port: int) -> list[str]:
        # Its own directory: a replica writes the RDB of its full sync there, and one left in the
        # checkout would be loaded by the next run. No delay before that sync (Redis 7 waits 5 s
        # for more replicas).
        directory = self.log_dir / f"redis-{port}"
        directory.mkdir()
        return [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
            "--appendonly", "no", "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip

    def _sentinel_conf(self, port: int) -> Path:
        # Sentinels rewrite their configuration file as they learn the topology: one each.
        path = self.log_dir / f"sentinel-{port}.conf"
        master = self.data_ports[0]
        path.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.log_dir}\n"
            f"sentinel monitor {self.master_name} 127.0.0.1 {master} 2\n"
            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.master_name} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {self.master_name} 1\n"
        )
        return path

    @property
    def env(self) -> dict:
        """What the stack's processes need to reach it: the URL and the master's name."""
        return {"REDIS_URL": self.url, "REDIS_SENTINEL_MASTER": self.master_name}

    def start(self, timeout: float = 30.0) -> None:
        master, replica = self.data_ports
        self.servers[master].start(ready_marker="Ready to accept connections")
        self.servers[replica].start(ready_marker="Ready to accept connections")
        deadline = time.monotonic() + timeout
        replica_client = redis.Redis(host="127.0.0.1", port=replica, socket_timeout=1)
        while replica_client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replica did not sync with its master: see {self.log_dir}")
            time.sleep(0.1)
        for sentinel in self.sentinels:
            sentinel.start(ready_marker="+monitor master")
        # A failover needs every sentinel to know the replica and a majority of its peers; they
        # find each other through the master within a few seconds (hello messages every 2 s).
        while not all(self._sees_everyone(port) for port in self.sentinel_ports):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sentinels did not discover each other: see {self.log_dir}")
            time.sleep(0.2)

    def _sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)

    def _sees_everyone(self, port: int) -> bool:
        state = self._sentinel(port).sentinel_master(self.master_name)
        return state["num-slaves"] >= 1 and state["num-other-sentinels"] >= len(self.sentinel_ports) - 1

    @property
    def alive(self) -> bool:
        return all(s.alive for s in self.sentinels) and any(p.alive for p in self.servers.values())

    def client(self) -> redis.Redis:
        return redis_client.client(self.url, master_name=self.master_name)

    def master_port(self, sentinel_port: int | None = None) -> int:
        _, port = self._sentinel(sentinel_port or self.sentinel_ports[0]).sentinel_get_master_addr_by_name(
            self.master_name
        )
        return int(port)

    def kill_master(self) -> int:
        """SIGKILL the current master; returns its port."""
        port = self.master_port()
        self.servers[port].kill()
        return port

    def wait_promoted(self, old_port: int, timeout: float = 30.0) -> int:
        """Until every sentinel names another master (the replica promoted); returns its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = {self.master_port(port) for port in self.sentinel_ports}
            if len(ports) == 1 and old_port not in ports:
                return ports.pop()
            time.sleep(0.05)
        raise TimeoutError(f"no replica promoted after {timeout}s: see {self.log_dir}")

    def stop(self) -> None:
        processes = [*self.sentinels, *self.servers.values()]
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait_stopped()

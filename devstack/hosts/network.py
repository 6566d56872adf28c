"""Hosts for the multi-host tests: Linux network namespaces, each with its own address on one
bridge, so every process reaches the others only over a network it can lose.

The bridge's own address belongs to this (the root) namespace: the test process is the client and
the operator's machine. A host is cut off by taking its link down; its processes are killed like a
host that lost power. What namespaces do not separate: the file system and the host name, which
all "hosts" share (each gets its own TMPDIR; docs/scaling.md says what else a real host changes)."""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from devstack.processes import Process


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def why_namespaces_unavailable() -> str | None:
    """None if this process can make namespaces and links, else why not (the tests skip with it)."""
    probe = f"lhprobe{secrets.token_hex(2)}"
    try:
        result = _ip("netns", "add", probe, check=False)
    except FileNotFoundError:
        return "the `ip` command (iproute2) is not installed"
    if result.returncode != 0:
        return f"cannot create a network namespace: {result.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    link: str  # the bridge's end of the host's veth pair
    tmp: Path
    processes: list[Process] = field(default_factory=list)

    @property
    def run_prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.namespace)

    def start(self, name: str, argv: list[str], env: dict) -> Process:
        """Run `argv` inside this host's namespace (as `ip netns exec` does, the process keeps its
        pid); the caller waits for its ready line (`Process.wait_for_log`), so hosts boot in parallel."""
        process = Process(f"{self.name}-{name}", [*self.run_prefix, *argv], env, self.tmp)
        process.start()
        self.processes.append(process)
        return process

    def kill_all(self) -> None:
        for process in self.processes:
            process.kill()


class Network:
    """One /24 on a bridge; `add("web1")` makes a namespace with the next address."""

    def __init__(self, tmp: Path):
        self.token = secrets.token_hex(2)
        # A subnet per run, so two runs on one machine (CI beside a developer) never meet.
        self.subnet = f"10.{200 + int(self.token[:2], 16) % 50}.{int(self.token[2:], 16)}"
        self.bridge = f"lb{self.token}"
        self.tmp = tmp
        self.hosts: dict[str, Host] = {}
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    @property
    def client_address(self) -> str:
        return f"{self.subnet}.1"

    def add(self, name: str) -> Host:
        index = len(self.hosts) + 2
        namespace, inner, outer = f"lh{self.token}-{name}", f"v{self.token}{index}", f"v{self.token}{index}b"
        _ip("netns", "add", namespace)
        _ip("link", "add", inner, "type", "veth", "peer", "name", outer)
        _ip("link", "set", inner, "netns", namespace)
        _ip("link", "set", outer, "master", self.bridge, "up")
        address = f"{self.subnet}.{index}"
        for args in (
            ("addr", "add", f"{address}/24", "dev", inner),
            ("link", "set", inner, "up"),
            ("link", "set", "lo", "up"),
        ):
            _ip("netns", "exec", namespace, "ip", *args)
        tmp = self.tmp / name
        tmp.mkdir(parents=True, exist_ok=True)
        host = self.hosts[name] = Host(name, namespace, address, outer, tmp)
        return host

    def cut(self, host: Host) -> None:
        """The host is gone from the network, and so are its processes."""
        _ip("link", "set", host.link, "down")
        host.kill_all()

    def close(self) -> None:
        for host in self.hosts.values():
            host.kill_all()
            _ip("netns", "del", host.namespace, check=False)  # takes the host's veth pair with it
        _ip("link", "del", self.bridge, check=False)


def env_for(host: Host, base: dict) -> dict:
    return {**os.environ, **base, "TMPDIR": str(host.tmp)}

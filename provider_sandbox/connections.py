"""Which requests arrive on a reused keep-alive connection, for the stale-connection fault
(`--stale-rate`): a server that closes a connection it held idle just as a request comes in on it.

ASGI names a request's connection only by the client's address, so a request from an address that
made one within the keep-alive timeout is taken as one on the same connection. An address is
forgotten when the sandbox closes its connection itself; a new connection that a client opened from
the same port within seconds would be taken as reused, and at worst meets the fault on a fresh
connection (which its client must then treat as a lost answer)."""

import time

KEEP_ALIVE_SECONDS = 5.0  # uvicorn closes a connection idle this long (__main__.py gives it this)


class KeepAlive:
    def __init__(self, timeout: float = KEEP_ALIVE_SECONDS):
        self.timeout = timeout
        self.seen: dict[tuple, float] = {}  # client address -> last request or answer (monotonic)

    def arrived(self, client) -> bool:
        """A request from `client` (ASGI's (host, port)): whether its connection carried one before."""
        if client is None:
            return False
        now = time.monotonic()
        if len(self.seen) > 10_000:
            self.seen = {peer: at for peer, at in self.seen.items() if now - at < self.timeout}
        last = self.seen.get(client)
        self.seen[client] = now
        return last is not None and now - last < self.timeout

    def answered(self, client) -> None:
        self.seen[client] = time.monotonic()

    def closed(self, client) -> None:
        self.seen.pop(client, None)

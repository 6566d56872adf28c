"""Lua scripts called on the request path over one plain Redis connection per thread.

redis-py's client runs every call through its command layer, its retry wrapper and its
connection pool, which cost about as much CPU as the command itself on a bare
`redis.Connection`; the charge POST makes two such calls, the throttle and the wake-up claim
(docs/performance.md). This keeps redis-py for what is hard (the connection, the protocol, its
parser and its errors) and skips only the layers in between. Each thread of a process has its own connection, so no pool
and no lock are needed; a forked child opens its own.

Errors are redis-py's own (`redis.RedisError` and subclasses), so callers handle them as before.
A connection that fails is dropped, and the call is tried once more on a new one: the usual
cause is a connection Redis closed while idle or lost in a restart. A timed-out call may have
run, so a retried throttle may count one request twice; both callers are hints or limits, never
money."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence

import redis

from core import redis_client


class ThreadScript:
    def __init__(self, source: str, url: Callable[[], str], **connection_kwargs):
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._url = url
        self._connection_kwargs = connection_kwargs
        self._local = threading.local()
        self._factory: tuple[int, redis.ConnectionPool] | None = None

    def __call__(self, *, keys: Sequence, args: Sequence = ()):
        try:
            return self._run(self._connection(), keys, args)
        except (redis.ConnectionError, redis.TimeoutError):
            return self._run(self._connection(), keys, args)  # redis-py has dropped the failed one

    def _run(self, connection: redis.Connection, keys: Sequence, args: Sequence):
        # connect() explicitly (a no-op when connected, about a microsecond): a command sent on a
        # disconnected connection reconnects it to the host it was built with, and a Sentinel
        # connection is built with none (redis-py's default, localhost:6379); only its connect()
        # asks the sentinels for the master. A pool's clients get this from the pool.
        connection.connect()
        connection.send_command("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return connection.read_response()
        except redis.exceptions.NoScriptError:  # a Redis restarted or flushed: EVAL loads it again
            connection.send_command("EVAL", self.source, len(keys), *keys, *args)
            return connection.read_response()

    def _connection(self) -> redis.Connection:
        pid = os.getpid()
        connection = getattr(self._local, "connection", None)
        if connection is None or self._local.pid != pid:
            if self._factory is None or self._factory[0] != pid:
                # Used only to build connections from the URL as redis-py does (TLS, auth, db);
                # a Sentinel pool's connections ask the sentinels for the master as they connect.
                self._factory = (pid, redis_client.connection_pool(self._url(), **self._connection_kwargs))
            connection = self._factory[1].make_connection()
            self._local.connection, self._local.pid = connection, pid
        return connection

    def reset(self) -> None:
        """Forget this thread's connection and the URL read (tests that change the settings)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.disconnect()
        self._local = threading.local()
        self._factory = None

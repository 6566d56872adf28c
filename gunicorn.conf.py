"""gunicorn settings, read by every gunicorn started from the project root: `make up`, the tests'
live server, the benchmarks and the Docker image (WORKDIR /app). Flags on the command line win.

gthread workers: one process serves several requests at once, so while one request waits on
PostgreSQL's commit or on Redis another uses the CPU, and clients keep their connection between
requests (the sync worker serves one request per process and closes every connection). Each
thread that serves a request holds its own database connection (CONN_MAX_AGE), so processes x
threads must stay below PostgreSQL's max_connections.

reuse_port: each worker process listens on its own SO_REUSEPORT socket, so the kernel spreads new
connections over the processes. With one shared socket the first process to wake takes most of
them, and keeps them (keep-alive), and its GIL then bounds the throughput while the others idle.
How each choice was measured: docs/performance.md."""

import os

# One process per core unless WEB_WORKERS says otherwise (devstack.stack.default_web_workers, which
# also passes --workers explicitly for `make up` and the benchmarks).
workers = int(os.environ.get("WEB_WORKERS") or os.cpu_count() or 2)
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
# 4 threads: enough to overlap each request's waits on PostgreSQL and Redis; more only contend for
# the process's GIL, and the convoy shows in the tail.
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
reuse_port = os.environ.get("GUNICORN_REUSE_PORT", "1") != "0"
# Access lines only when asked (WEB_ACCESS_LOG=1): gunicorn builds every request's full set of log
# atoms (headers, environ) whatever the format, a visible share of the web's CPU per request.
# Money events are logged by the application in JSON with their ids either way; request logs
# usually come from the load balancer.
accesslog = "-" if os.environ.get("WEB_ACCESS_LOG", "0") == "1" else None

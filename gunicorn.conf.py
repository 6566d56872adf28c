"""gunicorn settings, read by every gunicorn started from the project root: `make up`, the tests'
live server, the benchmarks and the Docker image (WORKDIR /app). Flags on the command line win.

gthread workers: one process serves several requests at once, so while one request waits on
PostgreSQL's commit or on Redis another uses the CPU, and clients keep their connection between
requests (the sync worker serves one request per process and closes every connection). Measured
with `python -m bench.http_submit --clients 32` on the shared 2-core machine, same minutes,
load average 5-12: sync x4 about 150 accepted charges/s, p50 205 ms; gthread 4x8 425/s, p50 45
ms; 3x8 490/s, p50 41 ms. Each thread that serves a request holds its own database connection
(CONN_MAX_AGE), so processes x threads must stay below PostgreSQL's max_connections.

reuse_port: each worker process listens on its own SO_REUSEPORT socket, so the kernel spreads new
connections over the processes. With one shared socket the first process to wake took most of
them, and kept them (keep-alive): 28 of 32 benchmark connections on one of two processes, whose
GIL then bounded the throughput while the other idled (p99 143-192 ms at 32 clients; 85-106 ms
with reuse_port, bench/http_submit.py, same minutes)."""

import os

# One process per core unless WEB_WORKERS says otherwise (workers.stack.default_web_workers, which
# also passes --workers explicitly for `make up` and the benchmarks).
workers = int(os.environ.get("WEB_WORKERS") or os.cpu_count() or 2)
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
# 4 threads: enough to overlap each request's waits on PostgreSQL and Redis; more only contend for
# the process's GIL, and the convoy shows in the tail. Pairs of `make bench --only http` runs
# minutes apart (32 sellers, 32 clients), 4 vs 8 threads: 675 vs 558/s with p99 101 vs 133 ms,
# 684 vs 626/s with p99 92 vs 108 ms; bench/http_submit.py --sellers 32: p99 62-88 vs 88-118 ms.
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
reuse_port = os.environ.get("GUNICORN_REUSE_PORT", "1") != "0"
# Access lines only when asked (WEB_ACCESS_LOG=1): gunicorn builds every request's full set of log
# atoms (headers, environ) whatever the format, 7.6 % of the web's CPU on the charge POST at 720
# requests/s (py-spy, make bench BENCH_ARGS=--profile). Money events are logged by the
# application in JSON with their ids either way; request logs usually come from the load balancer.
accesslog = "-" if os.environ.get("WEB_ACCESS_LOG", "0") == "1" else None

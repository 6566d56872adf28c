"""`make bench`: where the ledger stands against what PostgreSQL alone can do on this machine.

Run with `python -m bench [--smoke] [--only NAME ...]`; see `docs/performance.md`."""

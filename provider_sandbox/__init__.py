"""A sandbox top-up provider (DT One / Reloadly shaped) run as its own process:
`python -m provider_sandbox --port 8090`. A raw ASGI app under uvicorn, one asyncio process, its
record in SQLite. docs/provider.md describes the options, the magic numbers and the API.

Plain standard library plus uvicorn and standardwebhooks, no Django: the ledger talks to it over
HTTP only (providers/dtone.py), as it will to the real provider."""

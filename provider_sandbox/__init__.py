"""A sandbox top-up provider run as its own process: `python -m provider_sandbox --port 8090`. One
record of transactions and one account, served in three dialects: its own (/v1), DT One DVS's
(/dvs/v1) and Reloadly's (/reloadly). A raw ASGI app under uvicorn, one asyncio process, its record
in SQLite. docs/provider.md describes the options, the magic numbers and the APIs.

Plain standard library plus uvicorn, standardwebhooks and two data modules of core (currencies,
countries), no Django: the ledger talks to it over HTTP only (providers/), as it does to a real
provider."""

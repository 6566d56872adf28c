"""Put the latest benchmark run into `docs/performance.md`:

    .venv/bin/python -m bench.update_docs

Replaces what stands between `<!-- bench:latest -->` and `<!-- /bench:latest -->` with
`bench/results/latest.md` and its charts. The prose around it is written by hand."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "performance.md"
BLOCK = re.compile(r"(<!-- bench:latest -->\n).*?(<!-- /bench:latest -->)", re.S)


def latest_section() -> str:
    results = json.loads((RESULTS / "latest.json").read_text())
    md = (RESULTS / "latest.md").read_text()
    md = re.sub(r"^(#+) ", r"##\1 ", md, flags=re.M)  # below the page's own section headings
    title = f"### Run {results['meta']['timestamp']} (`bench/results/latest.md`)"
    md = re.sub(r"^### Benchmark .*$", title, md, count=1, flags=re.M)
    md = re.sub(r"\nCharts: .*\n", "\n", md)
    charts = "\n".join(f"![{name}](../bench/results/{name})" for name in results.get("charts", []))
    return f"{md.strip()}\n\n{charts}\n"


def main() -> int:
    doc = DOC.read_text()
    if not BLOCK.search(doc):
        raise SystemExit("docs/performance.md has no <!-- bench:latest --> ... <!-- /bench:latest --> block")
    DOC.write_text(BLOCK.sub(lambda m: m.group(1) + latest_section() + m.group(2), doc))
    print("docs/performance.md: results of bench/results/latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

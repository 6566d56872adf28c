"""Refresh the generated parts of `docs/performance.md` from a benchmark run:

    .venv/bin/python -m bench.update_docs [bench/results/<timestamp>.json]   (default: latest.json)

Replaces what stands between `<!-- bench:latest -->` / `<!-- bench:profiles -->` and their
`<!-- /bench:... -->` markers: the run's summary with its charts, and its profiles. The prose
around them (what bounds each number) is written by hand from the evidence."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"


def latest_section(results: dict, results_dir: Path) -> str:
    stamp = results["meta"]["timestamp"]
    md = (results_dir / f"{stamp}.md").read_text()
    md = re.sub(r"^## ", "### ", md, flags=re.M)
    md = md.replace(f"# Benchmark {stamp}", f"## Latest results: `bench/results/{stamp}.md`", 1)
    md = re.sub(r"\nCharts: .*\n", "\n", md)
    rel = Path("..") / results_dir.relative_to(ROOT)
    charts = "\n".join(f"![{name}]({rel / name})" for name in results.get("charts", []))
    command = "make bench" + (
        " BENCH_ARGS=--profile" if any(s.get("profile") for s in results["scenarios"].values()) else ""
    )
    return f"{md.strip()}\n\n{charts}\n\nCommand: `{command}`."


def profiles_section(results: dict) -> str:
    out = []
    titles = {
        "hot_seller": "Scenario 1: the shard worker draining the hot seller",
        "many_sellers": "Scenario 2: shard worker 0",
        "http": "Scenario 3: all gunicorn workers, 32 clients",
    }
    for name, title in titles.items():
        profile = results["scenarios"].get(name, {}).get("profile")
        if not profile:
            continue
        out += [
            f"**{title}** ({profile['samples']} samples holding the GIL, 100 Hz)",
            "",
            "| inclusive | % | own | % |",
            "| --- | --- | --- | --- |",
        ]
        own = profile["own"] + [["", ""]] * len(profile["inclusive"])
        for (fi, pi), (fo, po) in zip(profile["inclusive"][:22], own, strict=False):
            out.append(f"| `{fi}` | {pi} | {f'`{fo}`' if fo else ''} | {po} |")
        out.append("")
    return "\n".join(out) or "(run with `--profile` to record them)"


def replace(doc: str, marker: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- bench:{marker} -->\n)(?:.*?\n)?(<!-- /bench:{marker} -->)", re.S)
    if not pattern.search(doc):
        raise SystemExit(f"docs/performance.md has no <!-- bench:{marker} --> ... <!-- /bench:{marker} --> block")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), doc)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else ROOT / "bench" / "results" / "latest.json"
    results = json.loads(path.read_text())
    doc = DOC.read_text()
    doc = replace(doc, "latest", latest_section(results, path.resolve().parent))
    doc = replace(doc, "profiles", profiles_section(results))
    DOC.write_text(doc)
    print(f"docs/performance.md: results of {results['meta']['timestamp']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

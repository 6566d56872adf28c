"""The project's docs stand alone: nothing in them points outside the repository, and every file
they link to is in it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)")
# A path that climbs ("../x"), not the "..." of an elided URL path.
PARENT = re.compile(r"(?<![.\w])((?:\.\./)+[\w./-]*)")


def test_no_doc_points_outside_the_repository():
    outside = [
        f"{doc.relative_to(ROOT)}: {line.strip()[:120]}"
        for doc in DOCS
        for line in doc.read_text().splitlines()
        for path in PARENT.findall(line)
        if not (doc.parent / path).resolve().is_relative_to(ROOT) or not (doc.parent / path).exists()
    ]
    assert not outside, "\n".join(outside)


def test_every_relative_link_of_the_docs_resolves():
    broken = [
        f"{doc.relative_to(ROOT)} -> {target}"
        for doc in DOCS
        for target in LINK.findall(doc.read_text())
        if not target.startswith(("http://", "https://", "mailto:"))
        and not (doc.parent / target).exists()
        and not (ROOT / target).exists()
    ]
    assert not broken, broken

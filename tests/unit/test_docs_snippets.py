"""Docs show code that runs: every snippet marked ``<!-- include: FILE MARKER -->`` in docs/ must be the
exact code between ``# [START MARKER]`` and ``# [END MARKER]`` in FILE (an example DAG that the tests run)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INCLUDE = re.compile(r"<!-- include: (\S+) (\S+) -->\n```python\n(.*?)```", re.S)


def _includes():
    for doc in sorted((ROOT / "docs").rglob("*.md")):
        for match in INCLUDE.finditer(doc.read_text()):
            yield pytest.param(doc, *match.groups(), id=f"{doc.relative_to(ROOT)}:{match.group(2)}")


def _snippet(path: Path, marker: str) -> str:
    text = path.read_text()
    start = re.search(rf"^[ \t]*# \[START {re.escape(marker)}\][^\n]*\n", text, re.M)
    end = re.search(rf"^[ \t]*# \[END {re.escape(marker)}\]", text, re.M)
    assert start and end, f"{path} has no [START/END {marker}] markers"
    return textwrap.dedent(text[start.end() : end.start()]).strip()


def test_docs_have_included_snippets():
    assert list(_includes()), "no <!-- include: ... --> snippets found in docs/"


@pytest.mark.parametrize(("doc", "source", "marker", "block"), list(_includes()))
def test_snippet_matches_source(doc, source, marker, block):
    expected = _snippet(ROOT / source, marker)
    assert block.strip() == expected, f"{doc.name}: snippet {marker} is out of date with {source}"

"""docs/runbook.md inside the admin (`/admin/pipeline/runbook/`), so the links of the pipeline
page's lights and of the alerts (RUNBOOK_URL) reach it on any deployment, without internet.

Headings get GitHub's anchors (`## 4. Consumer lag` -> `#4-consumer-lag`), so a link works the
same here and on the repository's page; showoff/tests/test_monitoring.py checks that every
anchor the alerts and the page use exists.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from markdown_it import MarkdownIt

RUNBOOK = Path(settings.BASE_DIR) / "docs" / "runbook.md"


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> list[str]:
    """The anchors of every heading, in order (a repeated one gets -1, -2 like on GitHub)."""
    seen: dict[str, int] = {}
    out = []
    for token, inline in _headings(MarkdownIt("commonmark").parse(markdown)):
        del token
        base = github_anchor(inline.content)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(base if n == 0 else f"{base}-{n}")
    return out


def _headings(tokens):
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            yield token, tokens[i + 1]


@lru_cache(maxsize=1)
def _rendered(mtime: float) -> str:
    del mtime  # the cache key: a changed file is read again
    text = RUNBOOK.read_text()
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(text)
    for (token, _inline), anchor in zip(_headings(tokens), anchors(text), strict=True):
        token.attrSet("id", anchor)
    return md.renderer.render(tokens, md.options, {})


def runbook_html() -> str:
    """The runbook as HTML (the Markdown source is the project's own file)."""
    return _rendered(RUNBOOK.stat().st_mtime)

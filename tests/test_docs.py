"""The manual stays navigable: every relative link in README.md and docs/ resolves."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)  # not inside code blocks
    return [m for m in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", m) and not m.startswith("#")]


def test_relative_links_resolve():
    broken = []
    checked = 0
    for md in markdown_files():
        for link in relative_links(md):
            target = (md.parent / link.split("#", 1)[0]).resolve()
            checked += 1
            if not target.exists():
                broken.append(f"{md.relative_to(REPO)}: {link}")
    assert checked > 20, "the link checker found almost no links: is the pattern broken?"
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_link_checker_catches_a_broken_link(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("see [a](missing.md) and [b](https://example.com) and [c](#anchor)\n```\n[d](nope.md)\n```\n")
    assert relative_links(md) == ["missing.md"]

"""The README and docs/ stay navigable: every relative link (images too) reaches a file, and every
#fragment a heading of the page it names, as GitHub makes heading anchors."""

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.database_agnostic

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 160

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)
# [text](target) and ![alt](target), with an optional "title"; [label]: target definitions;
# src="..." and href="..." in inline HTML.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
HTML_ATTRIBUTE = re.compile(r"\b(?:src|href)=\"([^\"]+)\"")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
EXTERNAL = ("http://", "https://", "mailto:")


def prose(markdown: str) -> str:
    """The page without fenced code blocks and code spans, where brackets and #s are not Markdown."""
    return CODE_SPAN.sub("", FENCE.sub("", markdown))


def link_targets(markdown: str) -> list[str]:
    text = prose(markdown)
    found = [*INLINE_LINK.findall(text), *DEFINITION.findall(text), *HTML_ATTRIBUTE.findall(text)]
    return [target for target in found if target and not target.lower().startswith(EXTERNAL)]


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: its text lowercased, punctuation but - and _ removed, spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        base = anchor(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in link_targets(page.read_text()):
        path_part, _, fragment = target.partition("#")
        linked = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not linked.exists():
            problems.append(f"{target}: no file {os.path.relpath(linked, ROOT)}")
        elif fragment and linked.suffix != ".md":
            problems.append(f"{target}: a #fragment on a file that is not a Markdown page")
        elif fragment and unquote(fragment).lower() not in anchors(linked):
            problems.append(f"{target}: no heading #{fragment} in {os.path.relpath(linked, ROOT)}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_heading_that_exist(page):
    assert broken_links(page) == []


def test_readme_stays_a_two_minute_read():
    lines = README.read_text().splitlines()
    assert len(lines) < README_MAX_LINES, "move the detail to a page under docs/ and link to it"


def test_the_link_check_sees_links_images_and_fragments(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "usage.md").write_text("# Using the site\n\n## Player, downloads and mix export\n")
    page = tmp_path / "README.md"
    page.write_text(
        "![shot](docs/images/missing.png) [ok](docs/usage.md#player-downloads-and-mix-export)\n"
        "[gone](docs/usage.md#no-such-heading) [web](https://example.org/x.md) `[code](nowhere.md)`\n"
        "```sh\n[fenced](nowhere.md)\n```\n"
    )

    assert link_targets(page.read_text()) == [
        "docs/images/missing.png",
        "docs/usage.md#player-downloads-and-mix-export",
        "docs/usage.md#no-such-heading",
    ]
    assert anchor("Names RQ stored: jobs/tasks.py and `jobs/exports.py`") == (
        "names-rq-stored-jobstaskspy-and-jobsexportspy"
    )
    assert anchors(tmp_path / "docs" / "usage.md") == {"using-the-site", "player-downloads-and-mix-export"}

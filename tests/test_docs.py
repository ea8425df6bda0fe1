"""The documentation stands alone: every relative link in README.md, docs/ and configs/ resolves to a file (and
heading) of the repository, nothing (documents, docstrings, comments, data notes) points outside it, and the README
stays a short front door that names CI's command."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "configs").rglob("*.md"))]
SOURCES = [p for folder in ("src", "tests", "configs") for p in sorted((ROOT / folder).rglob("*"))
           if p.suffix in (".py", ".json", ".yaml", ".md", ".txt") and p != Path(__file__).resolve()]
README_MAX_LINES = 150
# notes that live outside the repository: a user's clone has none of them
OUTSIDE_NAMES = re.compile(r"\b(?:PAPER|PROTOCOLS|FIELD)\.md\b|\.\./shared\b")
FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def _prose(text: str) -> str:
    """The text without fenced code blocks (kept as blank lines, so line numbers stay) and inline code."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return INLINE_CODE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: links reduced to their text, lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return found


def link_problems(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the links and references of one Markdown file: a missing file or heading, a link that
    leaves the repository or is absolute, a mention of notes that are not in the repository."""
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(root)
    problems = [f"{where}: names {m.group(0)!r}, which is not in the repository"
                for m in OUTSIDE_NAMES.finditer(text)]
    for target in LINK.findall(_prose(text)):
        if SCHEME.match(target):
            continue  # a web address
        file_part, _, anchor = target.partition("#")
        if file_part.startswith("/"):
            problems.append(f"{where}: absolute link {target!r} (use a path relative to the document)")
            continue
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.is_relative_to(root.resolve()) or "shared/" in file_part:
            problems.append(f"{where}: link {target!r} leaves the repository")
        elif not dest.exists():
            problems.append(f"{where}: link {target!r}: {file_part} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: link {target!r}: no heading #{anchor} in {dest.relative_to(root.resolve())}")
    return problems


def test_the_link_checker_finds_every_kind_of_problem(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## Two `words` here\n\n## Two words here\n")
    doc = tmp_path / "README.md"
    doc.write_text(
        "[ok](docs/a.md) [ok](docs/a.md#title) [ok](docs/a.md#two-words-here-1) [ok](#top) [web](https://x.org/a)\n"
        "# Top\n"
        "[gone](docs/b.md) [no heading](docs/a.md#three) [escape](../x.md) [abs](/etc/passwd)\n"
        "[notes](../shared/PROTOCOLS.md) see PAPER.md\n"
        "```\n[in code](nowhere.md) is not a link\n```\n`[inline](nowhere.md)`\n")
    assert link_problems(doc, tmp_path) == [
        "README.md: names '../shared', which is not in the repository",
        "README.md: names 'PROTOCOLS.md', which is not in the repository",
        "README.md: names 'PAPER.md', which is not in the repository",
        "README.md: link 'docs/b.md': docs/b.md does not exist",
        "README.md: link 'docs/a.md#three': no heading #three in docs/a.md",
        "README.md: link '../x.md' leaves the repository",
        "README.md: absolute link '/etc/passwd' (use a path relative to the document)",
        "README.md: link '../shared/PROTOCOLS.md' leaves the repository",
    ]


def test_slugs_follow_github():
    assert slug("The train-time attack's arithmetic") == "the-train-time-attacks-arithmetic"
    assert slug("`tga-zsr`") == "tga-zsr"
    assert slug("Recipes: the paper as written, and the released code") == (
        "recipes-the-paper-as-written-and-the-released-code")


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves_inside_the_repository(doc):
    assert link_problems(doc) == []


def test_no_source_file_names_notes_outside_the_repository():
    """Docstrings, comments, configs and data notes point at docs/, never at files a clone does not have."""
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in SOURCES
             for m in OUTSIDE_NAMES.finditer(p.read_text(encoding="utf-8", errors="replace"))]
    assert found == []


def test_the_docs_pages_exist():
    names = {p.name for p in DOCUMENTS}
    assert {"README.md", "protocols.md", "training.md", "evaluation.md", "benchmarks.md", "library.md",
            "distributed.md"} <= names


def test_readme_is_a_front_door_with_ci_command():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "make test" in text and "make quickstart" in text
    assert re.search(r"^test:", (ROOT / "Makefile").read_text(), re.M)  # what .ci/run calls
    linked = {Path(t.partition("#")[0]).name for t in LINK.findall(_prose(text)) if t.startswith("docs/")}
    assert {p.name for p in DOCUMENTS if p.parent == ROOT / "docs"} <= linked  # every page reachable from it

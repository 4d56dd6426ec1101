"""The repository's documentation cites only what ships with it: docs/METHOD.md (by its
numbered sections) or the paper, never a document users do not get."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHOD = ROOT / "docs" / "METHOD.md"
SCANNED = ("src", "tests", "benchmarks", "docs")

# References to a document outside the repository.
FORBIDDEN = re.compile(r"spec sections?\b|\bthe spec\b|\bspec §|\.\./shared|shared/spec", re.I)
# "docs/METHOD.md §2.4", "METHOD.md §2 and §3", "METHOD.md §4.1, §4.3"
CITATION = re.compile(r"METHOD\.md\)?((?:\s*(?:,|and|or|-)?\s*§\d+(?:\.\d+)*)+)")
SECTION_REF = re.compile(r"§(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{2,4}\s+(\d+(?:\.\d+)*)\.?\s", re.M)


def _text_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files.append(path)
    out = []
    for path in files:
        if path.resolve() == Path(__file__).resolve():
            continue
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary data (e.g. test fixtures)
        out.append(path)
    return out


def method_sections(text: str) -> set[str]:
    """Numbers of the numbered headings of METHOD.md: "## 4. ..." -> "4", "### 4.1 ..." -> "4.1"."""
    return set(HEADING.findall(text))


def cited_sections(text: str) -> list[str]:
    """Section numbers cited as ``METHOD.md §N`` (several after one mention included)."""
    return [
        number
        for match in CITATION.finditer(text)
        for number in SECTION_REF.findall(match.group(1))
    ]


def test_no_reference_to_documents_outside_the_repository():
    offenders = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
        for path in _text_files()
        for text in [path.read_text(encoding="utf-8")]
        for m in FORBIDDEN.finditer(text)
    ]
    assert not offenders, "cite docs/METHOD.md §N or the paper instead:\n" + "\n".join(offenders)


def test_method_sections_cited_exist():
    sections = method_sections(METHOD.read_text(encoding="utf-8"))
    assert {"1", "2", "3", "3.1", "4", "5", "6", "7", "8"} <= sections
    cited, missing = 0, []
    for path in _text_files():
        text = path.read_text(encoding="utf-8")
        numbers = cited_sections(text)
        if path == METHOD:  # its own cross-references: every "§N"
            numbers = SECTION_REF.findall(text)
        cited += len(numbers)
        missing += [f"{path.relative_to(ROOT)}: §{n}" for n in numbers if n not in sections]
    assert cited > 20  # the sources do cite it
    assert not missing, "no such section in docs/METHOD.md:\n" + "\n".join(missing)


def test_readme_links_the_method():
    assert "docs/METHOD.md" in (ROOT / "README.md").read_text(encoding="utf-8")


README_MAX_LINES = 200
# Narrated history: the docs say what is; dated records live in docs/results/, history in git.
HISTORY = re.compile(r"before the correction|this package's rule before", re.I)
# A relative Markdown link target: [text](path) or [text](path#anchor), not a URL.
LINK = re.compile(r"\]\((?!https?://|#|mailto:)([^)#\s]+)(?:#[^)\s]*)?\)")


def _docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; details go to docs/"


def test_docs_describe_the_present():
    offenders = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
        for path in _docs()
        for text in [path.read_text(encoding="utf-8")]
        for m in HISTORY.finditer(text)
    ]
    assert not offenders, "say what is, not what was:\n" + "\n".join(offenders)


def test_relative_links_resolve():
    broken = [
        f"{path.relative_to(ROOT)}: {target}"
        for path in _docs()
        for target in LINK.findall(path.read_text(encoding="utf-8"))
        if not (path.parent / target).exists()
    ]
    assert not broken, "no such file:\n" + "\n".join(broken)


def test_checks_can_fail():
    """The patterns catch what they are for and leave unrelated words alone."""
    assert FORBIDDEN.search("see spec section 4") and FORBIDDEN.search("as in The Spec.")
    assert FORBIDDEN.search("../shared/spec/x.md")
    assert not FORBIDDEN.search("power spectrogram; importlib.util.spec_from_file_location")
    assert not FORBIDDEN.search("the spectrogram, as specified")
    text = "(docs/METHOD.md §2 and §3.1), docs/METHOD.md §4.1, §4.3; unrelated §9"
    assert cited_sections(text) == ["2", "3.1", "4.1", "4.3"]
    assert method_sections("## 1. The method\n### 2.4 Composition head\n") == {"1", "2.4"}
    assert HISTORY.search("as before the correction")
    assert HISTORY.search("This package's rule before")
    assert not HISTORY.search("the heads' rule before L_v's backward")
    assert LINK.findall("[a](docs/X.md#y), [b](https://x.org/a.md), [c](#z), [d](../R.md)") == [
        "docs/X.md",
        "../R.md",
    ]

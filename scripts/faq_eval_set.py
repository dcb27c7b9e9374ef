"""Derive retrieval eval cases from the FAQ pages of a built HTML documentation corpus.

Usage: python scripts/faq_eval_set.py CORPUS_ROOT OUT.jsonl [--faq PAGE ...] [--prefix ID]

Each FAQ page (by default `faq/*.html`, as in Django; `--faq faq.html` for Scrapy, `--faq
gitfaq.html` for Git) asks real user questions as h2/h3 headings (Sphinx) or as the terms of a
definition list (Asciidoc's `dt.hdlist1`) and, in the prose under each one, links to the
documentation pages that answer it. Those links are a labelled
set written by the docs' own authors, so every question with at least one link into the
rest of the documentation becomes one answerable case whose expected sources are the
linked pages. The FAQ pages themselves are kept out of the index, so links back into
`faq/` (and to generated pages such as the index or search) are not expected sources.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel
from selectolax.lexbor import LexborHTMLParser, LexborNode

QUESTION_TAGS = frozenset({"h2", "h3"})
# Asciidoc writes a Q&A list as <dt class="hdlist1">question</dt><dd>answer</dd>.
LIST_QUESTION_CLASS = "hdlist1"
HEADING_TAGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
# A heading at these levels closes the running question; deeper ones (h4+) are parts of it.
CLOSING_TAGS = frozenset({"h1", "h2", "h3"})
# Generated pages and pages outside the index are never an answer to a question.
EXCLUDED_PREFIXES = ("faq/", "_modules/", "_sources/", "_static/")
EXCLUDED_PAGES = frozenset({"genindex.html", "search.html", "py-modindex.html"})


class FaqQuestion(BaseModel):
    """A question heading of one FAQ page and the documentation pages its answer links to."""

    page: str
    question: str
    sources: list[str]
    from_list: bool = False  # asked as a definition-list term rather than a heading


class EvalCase(BaseModel):
    """One line of an eval dataset (the format the eval harness reads)."""

    id: str
    question: str
    expected_sources: list[str]
    answerable: bool
    must_mention: list[str]
    version: str | None
    notes: str


def heading_text(node: LexborNode) -> str:
    """The visible heading text, without Sphinx's "¶" permalink and with whitespace collapsed."""
    text = node.text(deep=True, separator="").replace("¶", "")
    return " ".join(text.split())


def normalise_link(href: str, page: str) -> str | None:
    """Turn an href on `page` into a corpus-relative page path, or None if it is not a doc page.

    External URLs, same-page anchors and links to excluded pages give None; `#fragment` and
    `?query` are dropped so the result compares equal to an indexed document path.
    """
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    target = unquote(parts.path)
    if target.endswith("/"):
        # A folder link serves that folder's index page (normpath would drop the slash).
        target += "index.html"
    path = posixpath.normpath(posixpath.join(posixpath.dirname(page), target))
    if path.startswith("../") or path == ".." or posixpath.isabs(path):
        return None
    if path in EXCLUDED_PAGES or path.startswith(EXCLUDED_PREFIXES) or path == page:
        return None
    if not path.endswith(".html"):
        return None
    return path


def content_root(tree: LexborHTMLParser) -> LexborNode | None:
    """The element holding the page's own content.

    Sphinx wraps the whole article in the section of its h1; limiting the walk to that
    section keeps the sidebar (whose "Table of Contents" is itself an h3) and the
    previous/next navigation out of the questions.
    """
    for h1 in tree.css("h1"):
        parent = h1.parent
        if parent is None:
            continue
        classes = (parent.attributes.get("class") or "").split()
        if parent.tag == "section" or "section" in classes:
            return parent
    return tree.body


def walk(node: LexborNode) -> Iterator[LexborNode]:
    """Elements under `node` in document order (depth first)."""
    child = node.child
    while child is not None:
        if child.is_element_node:
            yield child
            yield from walk(child)
        child = child.next


def questions_in_page(html: str, page: str) -> list[FaqQuestion]:
    """Every h2/h3 question of one FAQ page with the doc pages linked in its own text.

    A question's text runs from its heading to the next h1–h3, so a question nested under
    another (h3 under h2) does not lend its links to the outer one.
    """
    root = content_root(LexborHTMLParser(html))
    if root is None:
        return []
    found: list[FaqQuestion] = []
    current: FaqQuestion | None = None
    inside_heading: LexborNode | None = None
    for node in walk(root):
        if node.tag == "dt" and LIST_QUESTION_CLASS in (node.attributes.get("class") or "").split():
            inside_heading = node
            current = FaqQuestion(page=page, question=heading_text(node), sources=[], from_list=True)
            found.append(current)
            continue
        if node.tag in HEADING_TAGS:
            inside_heading = node
            if node.tag in CLOSING_TAGS:
                current = None
                if node.tag in QUESTION_TAGS:
                    current = FaqQuestion(page=page, question=heading_text(node), sources=[])
                    found.append(current)
            continue
        if node.tag != "a" or current is None or _is_within(node, inside_heading):
            continue
        target = normalise_link(node.attributes.get("href") or "", page)
        if target is not None and target not in current.sources:
            current.sources.append(target)
    if any(q.from_list for q in found):
        # A page asking its questions as list terms uses its headings for topics ("Credentials")
        # and its footer ("GIT"), not for questions.
        found = [q for q in found if q.from_list]
    return [q for q in found if q.question and q.sources]


def _is_within(node: LexborNode, ancestor: LexborNode | None) -> bool:
    """Whether `node` sits inside `ancestor` (links inside a heading are permalinks, not answers)."""
    if ancestor is None:
        return False
    parent = node.parent
    while parent is not None:
        if parent.mem_id == ancestor.mem_id:
            return True
        parent = parent.parent
    return False


def faq_pages(corpus_root: Path, pages: list[str] | None) -> list[Path]:
    """The FAQ pages to read: the given corpus-relative paths, or every `faq/*.html`."""
    if pages:
        missing = [p for p in pages if not (corpus_root / p).is_file()]
        if missing:
            raise FileNotFoundError(f"No FAQ page {', '.join(missing)} under {corpus_root}.")
        return [corpus_root / p for p in pages]
    faq_dir = corpus_root / "faq"
    if not faq_dir.is_dir():
        raise FileNotFoundError(
            f"No faq/ folder under {corpus_root}: pass the folder that contains index.html and faq/."
        )
    return sorted(faq_dir.glob("*.html"))


def collect_questions(corpus_root: Path, pages: list[str] | None = None) -> list[FaqQuestion]:
    """All linked FAQ questions of a corpus, pages in the given (or name) order, questions in page order."""
    questions: list[FaqQuestion] = []
    for path in faq_pages(corpus_root, pages):
        page = path.relative_to(corpus_root).as_posix()
        questions.extend(questions_in_page(path.read_text(encoding="utf-8"), page))
    return questions


def to_cases(questions: list[FaqQuestion], prefix: str = "faq") -> list[EvalCase]:
    """Number the questions as answerable eval cases `faq-001`, `faq-002`, …"""
    return [
        EvalCase(
            id=f"{prefix}-{n:03d}",
            question=q.question,
            expected_sources=q.sources,
            answerable=True,
            must_mention=[],
            version=None,
            notes=f"derived from {q.page}",
        )
        for n, q in enumerate(questions, start=1)
    ]


def write_jsonl(cases: list[EvalCase], out: Path) -> None:
    lines = [json.dumps(case.model_dump(), ensure_ascii=False) for case in cases]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("corpus_root", type=Path, help="folder containing index.html and faq/")
    parser.add_argument("out", type=Path, help="JSONL file to write")
    parser.add_argument(
        "--faq", action="append", help="corpus-relative FAQ page (repeatable; default: faq/*.html)"
    )
    parser.add_argument("--prefix", default="faq", help="case id prefix (default: faq)")
    args = parser.parse_args(argv)
    try:
        cases = to_cases(collect_questions(args.corpus_root, args.faq), args.prefix)
    except FileNotFoundError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    write_jsonl(cases, args.out)
    sys.stderr.write(f"wrote {len(cases)} cases to {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

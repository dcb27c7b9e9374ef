"""Claim splitting: an answer cut into checkable claims, each with the citation markers it carries.

Sentences, list items and table rows are claims; a fenced code block is one claim; headings are
kept but never checked. Inline markers ``[n]`` stay with their sentence. A code block or a list
without markers takes the citations of the sentence that introduces it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Literal

from indexer.text.identifiers import ABBREVIATIONS, CITATION_MARKER
from server.answering.grounding.evidence import Evidence, evidence_for

INVALID_CITATION = "citation to a source that was not retrieved"

ClaimKind = Literal["sentence", "code", "heading"]


@dataclass
class Claim:
    text: str
    kind: ClaimKind
    citations: list[int] = field(default_factory=list)
    inherited: bool = False  # citations taken from the sentence before a code block or a list
    item: bool = False  # a list item (or table row)


_MARKER = CITATION_MARKER
_INLINE_CODE = re.compile(r"`[^`\n]+`")
FENCE_OPEN = re.compile(r"^\s*(```+|~~~+)")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s+")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}")
# Sentence end: punctuation, closing quotes/brackets, then any citation markers that follow it,
# then whitespace and something that starts a sentence.
_BOUNDARY = re.compile(r"[.!?][\"')\]]*(?:\s*\[\d+(?:\s*,\s*\d+)*\])*(?=\s+[A-Z0-9`\"'(*_])")
_ABBREVIATIONS = ABBREVIATIONS  # words after which a period does not end a sentence


def cited_numbers(text: str) -> list[int]:
    """The source numbers cited by `text` in order of first appearance."""
    seen: list[int] = []
    for match in _MARKER.finditer(_mask_inline_code(text)):
        for part in match.group(1).split(","):
            n = int(part)
            if n not in seen:
                seen.append(n)
    return seen


def answer_citations(answer: str) -> list[int]:
    """Source numbers cited anywhere in the answer's prose (not inside code blocks)."""
    seen: dict[int, None] = {}
    for claim in split_claims(answer):
        if not claim.inherited:
            seen.update(dict.fromkeys(claim.citations))
    return list(seen)


def invalid_citations(answer: str, evidence: list[Evidence]) -> list[int]:
    """Citation numbers in `answer` that point outside the usable evidence."""
    return [n for n in answer_citations(answer) if evidence_for(n, evidence) is None]


def split_claims(answer: str) -> list[Claim]:
    """Split an answer into checkable claims, keeping citation markers with their sentence."""
    claims: list[Claim] = []
    for kind, segment in _segments(answer):
        if kind == "code":
            claims.append(Claim(text=segment, kind="code", citations=_closing_fence_citations(segment)))
        elif kind == "heading":
            claims.append(Claim(text=segment, kind="heading"))
        else:
            claims.extend(
                Claim(text=s, kind="sentence", citations=cited_numbers(s), item=kind == "item")
                for s in _sentences(segment)
            )
    # A code block usually follows the sentence that introduces and cites it ("Use this [2]:").
    for previous, claim in itertools.pairwise(claims):
        if claim.kind == "code" and not claim.citations and previous.citations:
            claim.citations = list(previous.citations)
            claim.inherited = True
    _inherit_lead_citations(claims)
    return claims


def _inherit_lead_citations(claims: list[Claim]) -> None:
    """List items without a marker take the citations of the cited lead-in ("... containing [1]:")."""
    lead: list[int] = []
    for claim in claims:
        introduces = plain(claim.text).endswith(":")
        if claim.item:
            if not claim.citations and lead:
                claim.citations = list(lead)
                claim.inherited = True
            elif claim.citations and introduces:
                lead = list(claim.citations)  # a nested list under a cited item
        elif claim.kind == "sentence":
            lead = list(claim.citations) if introduces else []
        elif claim.kind == "heading":
            lead = []


def _closing_fence_citations(block: str) -> list[int]:
    """Markers written after a code block's closing fence; markers inside code are code."""
    lines = block.splitlines()
    if len(lines) < 2 or not FENCE_OPEN.match(lines[-1]):
        return []
    return cited_numbers(lines[-1].strip().lstrip("`~"))


def _segments(answer: str) -> list[tuple[str, str]]:
    """Cut the answer into fenced code blocks, headings, list items/table rows and paragraphs."""
    out: list[tuple[str, str]] = []
    paragraph: list[str] = []

    kind = "text"

    def flush() -> None:
        nonlocal kind
        if paragraph:
            out.append((kind, " ".join(line.strip() for line in paragraph)))
            paragraph.clear()
        kind = "text"

    lines = answer.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE_OPEN.match(line)
        if fence:
            flush()
            marker = fence.group(1)
            block = [line]
            i += 1
            while i < len(lines):
                block.append(lines[i])
                if lines[i].strip().startswith(marker):
                    break
                i += 1
            out.append(("code", "\n".join(block)))
        elif not line.strip():
            flush()
        elif _HEADING.match(line):
            flush()
            out.append(("heading", line.strip()))
        elif _TABLE_RULE.match(line) and "|" in line:
            flush()
        elif _LIST_ITEM.match(line) or line.lstrip().startswith("|"):
            flush()
            kind = "item"
            paragraph.append(_LIST_ITEM.sub("", line, count=1).strip().strip("|").strip())
        else:
            paragraph.append(line)
        i += 1
    flush()
    return [(kind, text) for kind, text in out if text.strip()]


def _mask_inline_code(text: str) -> str:
    """Same-length copy of `text` with inline code spans blanked, so their dots never split."""
    return _INLINE_CODE.sub(lambda m: "`" + "x" * (len(m.group(0)) - 2) + "`", text)


def _sentences(paragraph: str) -> list[str]:
    masked = _mask_inline_code(paragraph)
    pieces: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(masked):
        before = masked[start : match.start()]
        last_word = before.rsplit(None, 1)[-1] if before.split() else ""
        word = last_word.lstrip("(\"'").lower()
        # "e.g. Foo", "Mr. X", and single-letter initials do not end a sentence.
        if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            continue
        pieces.append(paragraph[start : match.end()].strip())
        start = match.end()
    pieces.append(paragraph[start:].strip())
    return [p for p in pieces if p]


def plain(text: str) -> str:
    """Claim text without citation markers and emphasis, as compared to sources."""
    return " ".join(_MARKER.sub(" ", text).replace("**", "").split())

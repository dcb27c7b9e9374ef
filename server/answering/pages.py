"""Which page an extractive answer quotes: the one whose best section answers the whole question.

Retrieval's first hit is often a page that merely mentions the topic (release notes, a proposal,
a tutorial). So each retrieved page is judged by its best section:

    coverage    the question's key terms and identifiers found in the section (title, headings
                and body); identifiers and named entities count double
    heading     the key terms the section's title and headings name ("Cancellation" names
                "cancel"), less the share of heading words the question never mentions: a section
                headed "Tasks" is about tasks even when its body says "cancel a request"
    evidence    the page's best single statement with a prior for its retrieval rank, so a lower
                page wins only on clearly better evidence
    title       the cosine between the question and the page's title: a page is about what its
                title names ("Database transactions" for "make several writes succeed or fail
                together", not "Multiple databases")

Title weight 1.0 raised citation precision (Django 0.698 → 0.767, MCP 0.636 → 0.682, with the
longer code examples of the extractive backend); coverage weight 0.2 then raised MCP to 0.727,
Django unchanged. The heading weight is 0: added to the page score, 0.2 lowered Django precision
(0.70 → 0.65). Coverage also decides the normative rule.

A page whose best section covers clearly more of the question (at least `coverage_gap` = 0.3
more of the weighted key terms) wins over the best-scored one: a title that repeats one word of
the question ("Completion" for "ask the client's language model to generate a completion") does
not outweigh a section that covers all of it (Sampling). Measured with gaps of 0.15 to 0.4: at
0.3 and 0.4 it switched one MCP answer (to the expected page) and two answers each of the Scrapy
and Git FAQs (each to a page the FAQ's authors linked: 0.649 → 0.703, 0.200 → 0.267), none on
Django or its FAQ; at 0.2 it switched five more, four of them away from an expected page (MCP
0.727 → 0.682, Django 0.814 → 0.791).

When the best statement of one of the chosen page's sections sends the reader elsewhere ("See
Deploying static files for proper strategies to serve static files in production") and a normative
page it names by title is among the retrieved ones, the answer comes from that page: the docs' own
pointer outranks any score (Django: the static files overview's pointer to its deployment page).

Normative pages (reference, guides, the specification) come before proposals, changelogs,
release notes and contributor guides (`internals/`, `contributing/`: written for people who
develop the documented project, not for its users) when both match: a supplementary page is
chosen only when no normative page's best section covers as many of the question's key terms.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from server.answering.grounding.evidence import Evidence
from server.answering.grounding.terms import content_terms, identifiers, question_terms

PageKind = Literal["normative", "proposal", "changelog", "contributor"]

_CHANGELOG_PATH = re.compile(
    r"(?:^|/)(?:changelogs?|changes|history|news|releases?|release[-_]?notes?|whats-?new)(?:/|\.|$)",
    re.IGNORECASE,
)
_CHANGELOG_TITLE = re.compile(r"release notes|change ?log|what'?s new|key changes", re.IGNORECASE)
_PROPOSAL_PATH = re.compile(
    r"(?:^|/)(?:seps?|peps?|rfcs?|proposals?|enhancements?)(?:/|$)|(?:^|/)(?:sep|pep|rfc)-?\d+",
    re.IGNORECASE,
)
_PROPOSAL_TITLE = re.compile(r"^(?:SEP|PEP|RFC)[- ]?\d+", re.IGNORECASE)
# Pages for people who develop the documented project itself, not for its users.
_CONTRIBUTOR_PATH = re.compile(r"(?:^|/)(?:internals|contributing|contribute)(?:/|\.|$)", re.IGNORECASE)
# "See <page title> for …", "…; see also <page title>.", "refer to the <page title>": where the
# docs send the reader. The target runs to the end of the sentence; a title must end where the
# reference does (the sentence ends, or "for", "to", "on", "about", "in" or a comma follows).
_POINTER = re.compile(
    r"(?:^|[,;:(]\s*)(?:see(?:\s+also)?|refer\s+to)\s+(?:the\s+)?(?P<target>.+)", re.IGNORECASE
)
_AFTER_TITLE = r"(?:\s*$|\s*[,.;:)]|\s+(?:for|to|on|about|in)\b)"
_MIN_POINTER_TITLE_WORDS = 2  # "See Tasks" could mean anything; "See Deploying static files" cannot
# Two stems name the same thing when one extends the other ("cancel", "cancellation").
_MIN_SHARED_PREFIX = 5


@dataclass(frozen=True)
class PageWeights:
    coverage: float = 0.2
    heading: float = 0.0
    foreign_heading: float = 0.2
    # Added to a statement's score by its chunk's retrieval rank prior when judging pages: a lower
    # page wins only with clearly better statements (Django cited pages right 23 → 28 of 45).
    rank: float = 0.65
    # Added per unit of cosine between the question and the page title (module docstring).
    title: float = 1.0
    # A normative page is preferred when its coverage is at least this close to the other's.
    normative_tolerance: float = 0.0
    # A page whose best section covers this much more of the key terms wins (module docstring).
    coverage_gap: float = 0.3


@dataclass(frozen=True)
class SectionFit:
    coverage: float
    heading: float
    foreign: float

    def subject(self, w: PageWeights) -> float:
        """How squarely the heading names the question's subject.

        Heading words the question never mentions only count against a heading that names the
        subject: most headings use the docs' vocabulary ("Command overview"), but between
        "Cancellation" and "Cancelling tasks" the first is about what was asked.
        """
        return self.heading - (w.foreign_heading * self.foreign if self.heading else 0.0)


def page_of(source: str) -> str:
    return source.split("#", 1)[0]


def page_kind(source: str, title: str) -> PageKind:
    """Proposal, changelog (release notes), contributor guide or normative, from path and title."""
    path = page_of(source)
    if _PROPOSAL_PATH.search(path) or _PROPOSAL_TITLE.match(title):
        return "proposal"
    if _CHANGELOG_PATH.search(path) or _CHANGELOG_TITLE.search(title):
        return "changelog"
    if _CONTRIBUTOR_PATH.search(path):
        return "contributor"
    return "normative"


def related(a: str, b: str) -> bool:
    """Same stem, or one stem extends the other by a suffix ("cancel" / "cancellation")."""
    if a == b:
        return True
    short, long = sorted((a, b), key=len)
    if len(short) >= _MIN_SHARED_PREFIX - 1 and long.startswith(short):
        return True  # "sett" / "setting": the crude stems of one word family
    prefix = short[: max(_MIN_SHARED_PREFIX, len(short) - 1)]
    return len(short) >= _MIN_SHARED_PREFIX and long.startswith(prefix)


class QuestionKeys:
    """The question's key terms (stemmed), which of them are entities, and its code identifiers."""

    def __init__(self, question: str) -> None:
        self.terms, entities = question_terms(question)
        self.entity_stems = content_terms(" ".join(entities))
        self.identifiers = [i.lower() for i in identifiers(question)]

    def weight(self, term: str) -> float:
        return 2.0 if term in self.entity_stems else 1.0

    def coverage(self, terms: set[str], text: str) -> float:
        """Weighted share of the key terms in `terms`, identifiers looked up in `text`."""
        total = sum(self.weight(t) for t in self.terms) + 2.0 * len(self.identifiers)
        if not total:
            return 0.0
        found = sum(self.weight(t) for t in self.terms if _has(terms, t))
        lowered = text.lower()
        found += 2.0 * sum(1 for i in self.identifiers if i in lowered)
        return found / total

    def fit(self, evidence: Evidence) -> SectionFit:
        headings = [evidence.title, *evidence.heading_path]
        heading_terms = content_terms(" ".join(dict.fromkeys(headings)))
        coverage = self.coverage(content_terms(evidence.context_text()), evidence.context_text())
        total = sum(self.weight(t) for t in self.terms)
        named = sum(self.weight(t) for t in self.terms if _has(heading_terms, t)) / total if total else 0.0
        # Foreign words of the section's own heading (the last one): what else it is about.
        own = content_terms(headings[-1])
        foreign = sum(1 for h in own if not any(related(h, t) for t in self.terms)) / len(own) if own else 0.0
        return SectionFit(round(coverage, 4), round(named, 4), round(foreign, 4))


@dataclass(frozen=True)
class PageCandidate:
    """One retrieved page as the page choice sees it."""

    page: str
    kind: PageKind
    evidence: float  # the best statement on the page: its score plus its chunk's rank prior
    fit: SectionFit  # the page's best section for the question
    title: float = 0.0  # cosine between the question and the page's title


def choose_page(pages: Sequence[PageCandidate], weights: PageWeights | None = None) -> PageCandidate | None:
    """The page to quote (None when there is none); see the module docstring for the rule."""
    w = weights or PageWeights()
    if not pages:
        return None

    def total(choice: PageCandidate) -> float:
        return (
            choice.evidence
            + w.title * choice.title
            + w.heading * choice.fit.subject(w)
            + w.coverage * choice.fit.coverage
        )

    chosen = max(pages, key=total)
    if chosen.kind != "normative":
        normative = [
            c
            for c in pages
            if c.kind == "normative" and c.fit.coverage >= chosen.fit.coverage - w.normative_tolerance
        ]
        if normative:
            chosen = max(normative, key=total)
    wider = [
        c
        for c in pages
        if c.fit.coverage >= chosen.fit.coverage + w.coverage_gap
        and (c.kind == "normative" or chosen.kind != "normative")  # never against the normative rule
    ]
    if wider:
        chosen = max(wider, key=total)
    return chosen


def pointed_page(statement: str, titles: Mapping[str, str]) -> str | None:
    """The page among `titles` (page → title) that `statement` sends the reader to by its title,
    or None: "See Deploying static files for …" names the page titled "Deploying static files"."""
    for match in _POINTER.finditer(statement):
        target = " ".join(match.group("target").lower().split())
        named = [
            page
            for page, title in titles.items()
            if len(title.split()) >= _MIN_POINTER_TITLE_WORDS
            and re.match(re.escape(" ".join(title.lower().split())) + _AFTER_TITLE, target)
        ]
        if named:
            return max(named, key=lambda page: len(titles[page]))  # the most specific title
    return None


def _has(terms: set[str], term: str) -> bool:
    return term in terms or any(related(term, t) for t in terms)

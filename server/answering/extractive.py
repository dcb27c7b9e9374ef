"""The offline extractive backend: the source statements that best answer a question, each cited.

page        `pages.choose_page`: the retrieved page with the best single statement (its rank
            prior included) and the title closest to the question, normative pages before
            proposals, changelogs and contributor guides
units       `units.units`: whole statements of that page's chunks (a sentence, a list with its
            lead-in, an item of a long list with the lead-in, a sentence with its code block)
score       semantic similarity to the question + weighted overlap with its key terms + a light
            prior for higher-ranked chunks + a bonus for naming an API element
select      greedily, with a redundancy penalty (maximal marginal relevance), stopping at
            `max_sentences` units, the token budget, or when the next unit scores far below the
            best one; then the example ("The following are equivalent:" and its code) that
            directly follows a chosen statement, when the budget allows
write       in reading order under each section's heading (`models.section_label`), every unit cited [n]
            (`units.render`)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from indexer.models import section_label
from server.answering.grounding.claims import split_claims
from server.answering.grounding.evidence import Evidence
from server.answering.grounding.terms import content_terms, identifiers
from server.answering.pages import (
    PageCandidate,
    PageWeights,
    QuestionKeys,
    SectionFit,
    choose_page,
    page_kind,
    page_of,
    pointed_page,
)
from server.answering.units import Unit, render, rows_as_statements, units


@dataclass(frozen=True)
class ExtractiveWeights:
    """Unit scoring of the extractive backend (see `extractive_answer`).

    Quoting from one page only raised Django citation precision from 0.45 to 0.56 at the same
    answer rate, because a second page was usually a loosely related one; which page that is
    matters most, so it is chosen first (`pages.py`) and units are scored within it.
    """

    semantic: float = 0.5
    lexical: float = 0.35
    prior: float = 0.15
    # A statement that names an API element (setting, method, option, protocol message) is usually
    # the one a developer can act on, and the name is rarely in the question. With 0.1, answers
    # contained the expected terms more often (Django 0.31 → 0.40, MCP 0.48 → 0.52).
    code_bonus: float = 0.1
    # Bonuses for naming the question's identifiers and for a section heading that names the
    # subject: at 0.1 each, Django citation precision fell from 0.73 to 0.61-0.63, so both are off.
    identifier_bonus: float = 0.0
    heading_bonus: float = 0.0
    keep_ratio: float = 0.6
    pages: PageWeights = field(default_factory=PageWeights)


@dataclass
class Extract:
    answer: str
    quotes: dict[int, list[str]]  # evidence number → statements taken from it


@dataclass(frozen=True)
class _Candidate:
    number: int  # evidence number (1-based), the citation
    rank: int  # order among the usable chunks
    page: str
    unit: Unit
    tokens: int  # what quoting it costs: its text, and its code when the code must come along
    text_tokens: int

    @property
    def prior(self) -> float:
        """1 for the top-ranked chunk, decaying with rank."""
        return 1.0 / (1.0 + 0.3 * self.rank)


_MIN_UNIT_TERMS = 3
_MAX_SENTENCE_TOKENS = 90
# A list, or an item with its nested code: 160 cut Django steps like "Modify PASSWORD_HASHERS …".
_MAX_UNIT_TOKENS = 240
_MAX_CODE_TOKENS = 240
_REDUNDANT = 0.9
_UNIT_OVERHEAD = 4  # tokens a quoted unit costs beyond its text: its citation marker and separators


def extractive_answer(
    question: str,
    evidence: Sequence[Evidence],
    embed: Callable[[list[str]], npt.NDArray[np.float32]],
    count_tokens: Callable[[str], int],
    *,
    max_sentences: int,
    token_budget: int,
    max_sources: int = 5,
    weights: ExtractiveWeights | None = None,
) -> Extract:
    """The statements of the best page that answer `question`, in reading order, each cited [n]."""
    w = weights or ExtractiveWeights()
    keys = QuestionKeys(question)
    usable = [(n, ev) for n, ev in enumerate(evidence, start=1) if ev.usable][:max_sources]
    if not usable or not keys.terms:
        return Extract("", {})
    pool: list[_Candidate] = []
    fits: dict[int, SectionFit] = {}
    for rank, (number, ev) in enumerate(usable):
        fits[number] = keys.fit(ev)
        for unit in units(ev.text, count_tokens, max_code_tokens=_MAX_CODE_TOKENS):
            if unit.code_required and unit.code is None:
                continue
            code = count_tokens(unit.code) if unit.code_required and unit.code else 0
            text_tokens = count_tokens(unit.scoring_text)
            pool.append(_Candidate(number, rank, page_of(ev.source), unit, text_tokens + code, text_tokens))
    if not pool:
        return Extract("", {})

    vectors = embed([question] + [c.unit.scoring_text for c in pool])
    question_vector, unit_vectors = vectors[0], vectors[1:]
    cosines = unit_vectors @ question_vector
    scores: list[float] = []
    eligible: list[bool] = []
    for index, candidate in enumerate(pool):
        text = candidate.unit.scoring_text
        unit_terms = content_terms(text)
        lexical = keys.coverage(unit_terms, text)
        semantic = min(1.0, max(0.0, (float(cosines[index]) - 0.1) / 0.6))
        lowered = text.lower()
        bonus = w.identifier_bonus if any(i in lowered for i in keys.identifiers) else 0.0
        if identifiers(text):
            bonus += w.code_bonus  # names the setting, method or option to use
        bonus += w.heading_bonus * fits[candidate.number].subject(w.pages)
        scores.append(w.semantic * semantic + w.lexical * lexical + w.prior * candidate.prior + bonus)
        limit = _MAX_SENTENCE_TOKENS if candidate.unit.kind == "sentence" else _MAX_UNIT_TOKENS
        eligible.append(
            len(unit_terms) >= _MIN_UNIT_TERMS
            and candidate.text_tokens <= limit
            and candidate.tokens <= token_budget
        )

    statements, best_texts = _statement_evidence(keys, usable, question_vector, embed, count_tokens, w)
    # Only a page with something quotable can be chosen.
    quotable = {c.number for c, ok in zip(pool, eligible, strict=True) if ok}
    statements = {n: v for n, v in statements.items() if n in quotable}
    titles = _title_similarity(usable, question_vector, embed)
    page = _choose_page(usable, statements, fits, titles, w.pages)
    if page is not None:
        page = followed_pointer(page, usable, statements, best_texts)
    if page is None:
        return Extract("", {})
    eligible = [ok and c.page == page for ok, c in zip(eligible, pool, strict=True)]
    # Each chunk's quotes sit under its section's heading: in reference pages the heading is the
    # subject of the sentences under it ("Combines two QuerySets using the SQL OR operator." under
    # "OR (|)"), and quoted without it they are fragments.
    labels = {number: section_label(ev.title, ev.heading_path) for number, ev in usable}
    label_tokens = {number: count_tokens(label) + 2 for number, label in labels.items()}
    chosen, used = _select(
        pool, scores, eligible, unit_vectors, max_sentences, token_budget, w.keep_ratio, label_tokens
    )
    chosen = _with_examples(pool, chosen, used, token_budget)
    # The chunk holding the best statement first, then the others; reading order within each.
    chunk_order = {n: i for i, n in enumerate(dict.fromkeys(pool[i].number for i in chosen))}
    picked = sorted((pool[i] for i in chosen), key=lambda c: (chunk_order[c.number], c.unit.position))
    used = sum(c.tokens for c in picked) + sum(label_tokens[n] for n in {c.number for c in picked})
    blocks: list[str] = []
    quotes: dict[int, list[str]] = {}
    label = ""
    for number in dict.fromkeys(c.number for c in picked):
        mine = [c.unit for c in picked if c.number == number]

        def with_code(unit: Unit) -> bool:
            nonlocal used
            cost = count_tokens(unit.code) if unit.code else 0
            if used + cost > token_budget:
                return False
            used += cost
            return True

        if labels[number] != label:  # consecutive chunks of one section share its heading
            label = labels[number]
            blocks.append(f"### {label}")
        blocks.extend(render(mine, number, with_code=with_code))
        quotes[number] = [u.scoring_text for u in mine]
    return Extract("\n\n".join(blocks), quotes)


def _with_examples(pool: list[_Candidate], chosen: list[int], used: int, token_budget: int) -> list[int]:
    """`chosen` (costing `used` tokens) plus the example that directly follows a chosen statement.

    A statement followed by "The following are equivalent:" and code is explained by that code;
    a how-to answer without it names the tool but not how to use it. An example is in a chunk
    already quoted, so it brings no heading of its own.
    """
    out = list(chosen)
    for i in chosen:
        for j, other in enumerate(pool):
            if (
                j not in out
                and other.number == pool[i].number
                and other.unit.code_required
                and other.unit.position == pool[i].unit.position + 1
                and used + other.tokens + _UNIT_OVERHEAD <= token_budget
            ):
                out.append(j)
                used += other.tokens + _UNIT_OVERHEAD
    return out


def _statement_evidence(
    keys: QuestionKeys,
    usable: list[tuple[int, Evidence]],
    question_vector: npt.NDArray[np.float32],
    embed: Callable[[list[str]], npt.NDArray[np.float32]],
    count_tokens: Callable[[str], int],
    w: ExtractiveWeights,
) -> tuple[dict[int, float], dict[int, str]]:
    """Per chunk: the score of its best single sentence (or list item) plus the chunk's rank
    prior, and that sentence.

    Pages are judged on single statements, not on the units quoted: a unit's lead-in and list
    dilute its similarity to the question, and judged by units the chosen page was an expected
    one less often (Django 0.70 → 0.61).
    """
    texts: list[tuple[int, int, str]] = []
    for rank, (number, ev) in enumerate(usable):
        for claim in split_claims(rows_as_statements(ev.text)):
            if (
                claim.kind == "sentence"
                and count_tokens(claim.text) <= _MAX_SENTENCE_TOKENS
                and len(content_terms(claim.text)) >= _MIN_UNIT_TERMS
            ):
                texts.append((number, rank, claim.text))
    if not texts:
        return {}, {}
    vectors = embed([t for _, _, t in texts])
    cosines = vectors @ question_vector
    best: dict[int, float] = {}
    best_text: dict[int, str] = {}
    for (number, rank, text), cosine in zip(texts, cosines, strict=True):
        semantic = min(1.0, max(0.0, (float(cosine) - 0.1) / 0.6))
        lexical = keys.coverage(content_terms(text), text)
        bonus = w.identifier_bonus if any(i in text.lower() for i in keys.identifiers) else 0.0
        if identifiers(text):
            bonus += w.code_bonus
        prior = 1.0 / (1.0 + 0.3 * rank)
        score = w.semantic * semantic + w.lexical * lexical + (w.prior + w.pages.rank) * prior + bonus
        if number not in best or score > best[number]:
            best[number], best_text[number] = score, text
    return best, best_text


def _title_similarity(
    usable: list[tuple[int, Evidence]],
    question_vector: npt.NDArray[np.float32],
    embed: Callable[[list[str]], npt.NDArray[np.float32]],
) -> dict[str, float]:
    """Per page: the cosine between the question and the page's title (what the page is about).

    Not for the docs' home page: its title names the whole product ("Lumen documentation"), so
    every question naming the product would be drawn to it.
    """
    titles = {page_of(ev.source): ev.title for _, ev in usable if ev.title and not _is_home(ev.source)}
    if not titles:
        return {}
    vectors = embed(list(titles.values()))
    return {page: float(v @ question_vector) for page, v in zip(titles, vectors, strict=True)}


def _is_home(source: str) -> bool:
    page = page_of(source)
    return "/" not in page and page.rsplit(".", 1)[0].lower() in ("index", "readme")


def _choose_page(
    usable: list[tuple[int, Evidence]],
    statements: dict[int, float],
    fits: dict[int, SectionFit],
    titles: dict[str, float],
    weights: PageWeights,
) -> str | None:
    pages: dict[str, PageCandidate] = {}
    for number, ev in usable:
        if number not in statements:
            continue
        page = page_of(ev.source)
        known = pages.get(page)
        best = statements[number]
        fit = fits[number]
        if known is None:
            kind = page_kind(ev.source, ev.title)
            pages[page] = PageCandidate(page, kind, best, fit, titles.get(page, 0.0))
        else:
            better = fit if fit.coverage + fit.heading > known.fit.coverage + known.fit.heading else known.fit
            pages[page] = PageCandidate(page, known.kind, max(best, known.evidence), better, known.title)
    chosen = choose_page(list(pages.values()), weights)
    return chosen.page if chosen is not None else None


def followed_pointer(
    page: str, usable: list[tuple[int, Evidence]], statements: dict[int, float], best_texts: dict[int, str]
) -> str:
    """`page`, or the retrieved page that the best statement of one of its sections points to
    (`pages.pointed_page`), the best-scored section first."""
    mine = sorted(
        (n for n, ev in usable if n in statements and page_of(ev.source) == page),
        key=lambda n: -statements[n],
    )
    others = {
        page_of(ev.source): ev.title
        for n, ev in usable
        if n in statements
        and page_of(ev.source) != page
        and ev.title
        and not _is_home(ev.source)
        and page_kind(ev.source, ev.title) == "normative"  # never away from the normative rule
    }
    for number in mine:
        target = pointed_page(best_texts.get(number, ""), others)
        if target is not None:
            return target
    return page


def _select(
    pool: list[_Candidate],
    scores: list[float],
    eligible: list[bool],
    vectors: npt.NDArray[np.float32],
    max_units: int,
    token_budget: int,
    keep_ratio: float,
    label_tokens: dict[int, int],
) -> tuple[list[int], int]:
    """The units to quote, greedily by score less redundancy, and the tokens they cost."""
    best_score = max((s for s, ok in zip(scores, eligible, strict=True) if ok), default=0.0)
    chosen: list[int] = []
    used = 0
    while len(chosen) < max_units:
        best, best_value = -1, -1.0
        for index, score in enumerate(scores):
            if not eligible[index] or index in chosen:
                continue
            redundancy = max((float(vectors[index] @ vectors[j]) for j in chosen), default=0.0)
            if redundancy > _REDUNDANT:
                continue  # says the same as a unit already taken
            value = score - 0.3 * max(0.0, redundancy)
            if value > best_value:
                best, best_value = index, value
        if best < 0 or (chosen and scores[best] < keep_ratio * best_score):
            break
        cost = pool[best].tokens + _UNIT_OVERHEAD
        if all(pool[j].number != pool[best].number for j in chosen):
            cost += label_tokens[pool[best].number]  # the first unit of a section brings its heading
        if chosen and used + cost > token_budget:
            break
        chosen.append(best)
        used += cost
    return chosen, used

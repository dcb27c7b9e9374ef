"""The offline extractive backend: the source sentences that best answer a question, each cited."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from server.answering.grounding import Evidence, content_terms, identifiers, question_terms, split_claims


@dataclass(frozen=True)
class ExtractiveWeights:
    """Sentence scoring of the extractive backend (see `extractive_answer`).

    Measured with scripts/tune_grounding.py on the Django eval set: quoting from one page only
    raised citation precision from 0.45 to 0.56 at the same answer rate (0.96), because the second
    page an answer drew on was usually a loosely related one. Which page that is matters most: the
    single best-matching sentence often sits on a page that merely mentions the topic (release
    notes, a tutorial), while fused retrieval ranks the page about it first. So the page is chosen
    with a strong rank prior (`page_prior`), and sentences within it with a light one (`prior`): a
    lower-ranked page wins only with clearly better sentences. Choosing the page that way raised
    cited pages that are expected ones from 23 to 28 of 45 on the Django set, 9 to 10 of 28 on the
    FAQ set and 16 to 18 of 24 on the MCP set (rank priors from 0.5 to 1.5 all beat 0.15); using
    the strong prior for the sentences too picked sentences that miss the question's key terms.
    """

    semantic: float = 0.5
    lexical: float = 0.35
    prior: float = 0.15
    page_prior: float = 0.8
    # A sentence that names an API element (setting, method, option, protocol message) is usually
    # the one a developer can act on, and the name is rarely in the question. With 0.1, answers
    # contained the expected terms more often (Django 0.31 → 0.40, MCP 0.48 → 0.52) and the Django
    # cited page was right in 30 instead of 28 of 45 cases; the FAQ set did not move.
    code_bonus: float = 0.1
    max_pages: int = 1
    other_page_ratio: float = 0.85
    keep_ratio: float = 0.6


@dataclass
class _Sentence:
    page: str  # the document the sentence comes from
    number: int  # evidence number (1-based), the citation
    position: int  # order inside the chunk
    text: str
    kind: str  # "sentence" or "code"
    follows: int | None = None  # for code: position of the sentence that introduces it


@dataclass
class Extract:
    answer: str
    quotes: dict[int, list[str]]  # evidence number → sentences taken from it


_TRAILING_MARKERS = re.compile(r"(?:\s*\[\d+(?:\s*,\s*\d+)*\])+\s*$")
_MIN_SENTENCE_TERMS = 3
_MAX_SENTENCE_TOKENS = 90
_MAX_CODE_TOKENS = 120


_TABLE_ROW = re.compile(r"^\s*\|?[^|\n]+(?:\s\|\s[^|\n]*)+\|?\s*$")


def _rows_as_sentences(text: str) -> str:
    """Table rows ("a | b | c") as separate sentences ("a: b; c."); header rows dropped.

    A row states one fact; run together as one paragraph the rows would read as one sentence.
    """
    out: list[str] = []
    in_table = False
    for line in text.splitlines():
        if "```" not in line and _TABLE_ROW.match(line) and line.count("|") >= 2:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not in_table:
                in_table = True  # the header row names columns, it states nothing
                continue
            if all(set(c) <= set("-: ") for c in cells):
                continue  # a Markdown rule row
            head, rest = cells[0], [c for c in cells[1:] if c]
            out.extend(["", f"{head}: {'; '.join(rest)}".rstrip(": ") + "", ""])
        else:
            in_table = False
            out.append(line)
    return "\n".join(out)


def _candidates(evidence: Sequence[Evidence], max_sources: int) -> list[_Sentence]:
    out: list[_Sentence] = []
    usable = [(number, ev) for number, ev in enumerate(evidence, start=1) if ev.usable]
    for number, ev in usable[:max_sources]:
        page = ev.source.split("#", 1)[0]
        last_sentence: int | None = None
        for position, claim in enumerate(split_claims(_rows_as_sentences(ev.text))):
            if claim.kind == "sentence":
                # Markers already in the docs ("[1]" footnotes) would read as our citations.
                text = _TRAILING_MARKERS.sub("", claim.text).strip()
                out.append(_Sentence(page, number, position, text, "sentence"))
                last_sentence = position
            elif claim.kind == "code" and last_sentence == position - 1:
                out.append(_Sentence(page, number, position, claim.text, "code", follows=last_sentence))
    return out


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
    """The source sentences that best answer `question`, in reading order, each cited [n].

    Score = semantic similarity to the question + weighted overlap with its key terms + a prior
    for higher-ranked chunks; picked greedily with a redundancy penalty (maximal marginal
    relevance), stopping at `max_sentences`, the token budget, or when the next sentence scores
    far below the best one. A short code block directly after a chosen sentence comes with it.
    """
    w = weights or ExtractiveWeights()
    pool = _candidates(evidence, max_sources)
    prose = [s for s in pool if s.kind == "sentence"]
    code = {(s.number, s.follows): s for s in pool if s.kind == "code"}
    terms, entities = question_terms(question)
    entity_stems = content_terms(" ".join(entities))
    if not prose or not terms:
        return Extract("", {})
    usable_numbers = sorted({s.number for s in prose})
    rank_of = {number: rank for rank, number in enumerate(usable_numbers)}
    # 1 for the top-ranked source, decaying with rank: weighted lightly for sentences, strongly for pages.
    rank_prior = [1.0 / (1.0 + 0.3 * rank_of[s.number]) for s in prose]
    vectors = embed([question] + [s.text for s in prose])
    question_vector, sentence_vectors = vectors[0], vectors[1:]
    cosines = sentence_vectors @ question_vector
    question_ids = {i.lower() for i in identifiers(question)}

    scores: list[float] = []
    eligible: list[bool] = []
    for index, sentence in enumerate(prose):
        sentence_terms = content_terms(sentence.text)
        total = sum(2.0 if t in entity_stems else 1.0 for t in terms)
        found = sum(2.0 if t in entity_stems else 1.0 for t in terms if t in sentence_terms)
        lexical = found / total
        semantic = min(1.0, max(0.0, (float(cosines[index]) - 0.1) / 0.6))
        bonus = 0.1 if question_ids and any(i in sentence.text.lower() for i in question_ids) else 0.0
        if identifiers(sentence.text):
            bonus += w.code_bonus  # names the setting, method or option to use
        scores.append(w.semantic * semantic + w.lexical * lexical + w.prior * rank_prior[index] + bonus)
        tokens = count_tokens(sentence.text)
        eligible.append(len(sentence_terms) >= _MIN_SENTENCE_TERMS and tokens <= _MAX_SENTENCE_TOKENS)

    # The first page quoted: best sentence once the retrieval rank weighs in strongly.
    anchor = max(
        (i for i, ok in enumerate(eligible) if ok),
        key=lambda i: scores[i] + (w.page_prior - w.prior) * rank_prior[i],
        default=-1,
    )
    anchor_page = prose[anchor].page if anchor >= 0 else None
    chosen: list[int] = []
    used_tokens = 0
    best_score = max(
        (
            s
            for s, ok, sentence in zip(scores, eligible, prose, strict=True)
            if ok and sentence.page == anchor_page
        ),
        default=0.0,
    )
    while len(chosen) < max_sentences:
        best, best_value = -1, -1.0
        for index, score in enumerate(scores):
            if not eligible[index] or index in chosen:
                continue
            if not chosen and prose[index].page != anchor_page:
                continue
            redundancy = max(
                (float(sentence_vectors[index] @ sentence_vectors[j]) for j in chosen), default=0.0
            )
            if redundancy > 0.9:
                continue  # says the same as a sentence already taken
            # Quote another page only while under max_pages and when it is nearly as good.
            pages = {prose[j].page for j in chosen}
            other_page = bool(chosen) and prose[index].page not in pages
            if other_page and (len(pages) >= w.max_pages or score < w.other_page_ratio * best_score):
                continue
            value = score - 0.3 * max(0.0, redundancy)
            if value > best_value:
                best, best_value = index, value
        if best < 0 or (chosen and scores[best] < w.keep_ratio * best_score):
            break
        cost = count_tokens(prose[best].text) + 4
        if chosen and used_tokens + cost > token_budget:
            break
        chosen.append(best)
        used_tokens += cost

    picked = sorted((prose[i] for i in chosen), key=lambda s: (rank_of[s.number], s.position))
    blocks: list[str] = []
    paragraph: list[str] = []
    quotes: dict[int, list[str]] = {}
    for sentence in picked:
        text = sentence.text
        if not text.endswith((".", "!", "?", ":")):
            text += "."
        paragraph.append(f"{text} [{sentence.number}]")
        quotes.setdefault(sentence.number, []).append(sentence.text)
        block = code.get((sentence.number, sentence.position))
        block_tokens = count_tokens(block.text) if block is not None else 0
        if (
            block is not None
            and block_tokens <= _MAX_CODE_TOKENS
            and used_tokens + block_tokens <= token_budget
        ):
            blocks.append(" ".join(paragraph))
            paragraph = []
            blocks.append(block.text)
            used_tokens += block_tokens
    if paragraph:
        blocks.append(" ".join(paragraph))
    return Extract("\n\n".join(blocks), quotes)

"""Grounding check: is every claim of an answer supported by the retrieved sources?

The check is independent of whichever backend wrote the answer (extractive or a remote model):

1. Split the answer into claims (sentences, list items, table rows; a fenced code block is one
   claim). Inline citation markers ``[n]`` stay with their sentence and point at ``evidence[n-1]``.
2. Score each claim against the evidence it cites: lexical overlap of content words plus embedding
   similarity to the best sentence window of the source. Numbers and code identifiers in a claim
   must appear in the supporting text, otherwise the claim's support is capped low: a fabricated
   setting name or port number is the failure that matters most in documentation answers.
3. Weight claim scores by claim length into one answer score.
4. Gate on question–evidence relevance. An extractive answer copies source sentences, so its claims
   always look supported; only relevance tells that the sources never addressed the question.

The answer is withheld (``abstain``) when either the score or the relevance is below its threshold.
Every weight is a named setting so an evaluation run can tune them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from indexer.text import QUESTION_WORDS, STOPWORDS, fold_text
from indexer.text import content_terms as _content_terms
from indexer.text import identifiers as identifiers  # the text core's, re-exported for answering
from indexer.text import numbers as numbers
from indexer.text import terms as bm25_terms
from indexer.text.identifiers import ABBREVIATIONS, CITATION_MARKER, code_names, source_numbers
from server.settings import GroundingSettings

EmbedFn = Callable[[list[str]], npt.NDArray[Any]]
"""Embeds texts into L2-normalised row vectors (one row per text)."""

INVALID_CITATION = "citation to a source that was not retrieved"


class Evidence(BaseModel):
    """One retrieved chunk as the answering and grounding steps see it."""

    chunk_id: str
    title: str
    heading_path: list[str] = Field(default_factory=list)
    source: str
    text: str
    retrieval_score: float = Field(description="Fused retrieval score (higher is better).")
    dense_similarity: float | None = Field(default=None, description="cosine(question, chunk) when known.")
    flags: list[str] = Field(
        default_factory=list,
        description="Prompt-injection screen flags; flagged evidence is never sent to a model or cited.",
    )

    @property
    def usable(self) -> bool:
        return not self.flags

    def context_text(self) -> str:
        """Title, headings and body: what a reader of this source sees."""
        return "\n".join([self.title, *self.heading_path, self.text])


class ClaimCheck(BaseModel):
    text: str
    chunk_id: str | None = Field(description="The source that supports the claim best (None if none).")
    score: float
    reasons: list[str] = Field(default_factory=list)
    citations: list[int] = Field(default_factory=list, description="The [n] markers of the claim.")
    weight: float = Field(default=0.0, description="Share in the answer score (0 = not scored).")
    quote: str | None = Field(
        default=None, description="The sentence window of the supporting source that matches best."
    )
    missing: list[str] = Field(
        default_factory=list, description="Numbers and identifiers of the claim absent from its source."
    )


class GroundingReport(BaseModel):
    score: float
    claims: list[ClaimCheck]
    relevance: float
    abstain: bool
    reasons: list[str] = Field(default_factory=list)
    invalid_citations: list[int] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Claim splitting

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
_FENCE_OPEN = re.compile(r"^\s*(```+|~~~+)")
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
    return [n for n in answer_citations(answer) if _evidence_for(n, evidence) is None]


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
        introduces = _plain(claim.text).endswith(":")
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
    if len(lines) < 2 or not _FENCE_OPEN.match(lines[-1]):
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
        fence = _FENCE_OPEN.match(line)
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


# ---------------------------------------------------------------------------------------------
# Terms, identifiers and numbers

# Stopwords, question words, the analyzer and the identifier extractor are the text core's, so a
# claim's terms are the very terms BM25 matched.
# A capitalised word or acronym that does not start a sentence: a product or API name (Rails, REST).
_ENTITY = re.compile(r"(?<=[\w,;:\"'()]\s)[A-Z][A-Za-z0-9]+")


def _stem(word: str) -> str:
    """The BM25 term of one word; a word the analyzer splits (an identifier) stays whole, folded."""
    found = bm25_terms(word)
    return found[0] if len(found) == 1 else fold_text(word)


def content_terms(text: str, extra_stopwords: frozenset[str] = frozenset()) -> set[str]:
    """Stemmed content words of `text` (stopwords and citation markers removed)."""
    return _content_terms(_MARKER.sub(" ", text), extra_stopwords)


def _source_numbers(text: str) -> set[str]:
    return source_numbers(text)


def _identifier_in(ident: str, source: str) -> bool:
    """Is `ident` in the source text? Exact for code, with a few forgiving equivalences."""
    if ident in source:
        return True
    if ident.endswith("()") and re.search(rf"(?<![\w]){re.escape(ident[:-2])}(?![\w])", source):
        return True  # "save()" vs "the save method"
    normalised = " ".join(ident.split())
    if " " in normalised:
        if normalised in " ".join(source.split()):
            return True
        # A backticked snippet (`pip install foo`): every code-looking word must be in the source.
        words = [w for w in re.findall(r"[\w.\-/]+", normalised) if len(w) > 1]
        return all(_identifier_in(w, source) for w in words)
    return False


def _code_names(block: str) -> list[str]:
    """API-looking names in a code block: dotted names, calls, UPPER_CASE and snake_case."""
    body = "\n".join(line for line in block.splitlines() if not _FENCE_OPEN.match(line))
    return code_names(body)


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass
class _Source:
    number: int
    evidence: Evidence
    text: str  # context text (title, headings, body)
    terms: set[str]
    numbers: set[str]
    windows: list[int]  # row indexes into the embedding matrix
    window_texts: list[str] = field(default_factory=list)


@dataclass
class _Support:
    score: float
    source: _Source
    reasons: list[str]
    quote: str | None = None
    missing: list[str] = field(default_factory=list)


def _evidence_for(n: int, evidence: list[Evidence]) -> Evidence | None:
    if n < 1 or n > len(evidence) or not evidence[n - 1].usable:
        return None
    return evidence[n - 1]


def _windows(text: str, limit: int) -> list[str]:
    """Single sentences and adjacent pairs: claims often paraphrase one sentence, sometimes two."""
    units = [c.text for c in split_claims(text) if c.kind != "heading"]
    windows = list(units)
    windows.extend(f"{a} {b}" for a, b in itertools.pairwise(units))
    return windows[:limit] or [text[:1000]]


def _clip(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


def _scale(value: float, floor: float, ceiling: float) -> float:
    return _clip((value - floor) / (ceiling - floor)) if ceiling > floor else float(value >= ceiling)


def _plain(text: str) -> str:
    """Claim text without citation markers and emphasis, as compared to sources."""
    return " ".join(_MARKER.sub(" ", text).replace("**", "").split())


def check(
    question: str,
    answer: str,
    evidence: list[Evidence],
    embed: EmbedFn,
    settings: GroundingSettings | None = None,
) -> GroundingReport:
    """Check `answer` against `evidence` (numbered from 1 as cited) and decide whether to abstain."""
    settings = settings or GroundingSettings()
    claims = split_claims(answer)
    usable = [(i + 1, e) for i, e in enumerate(evidence) if e.usable]
    if not usable:
        return _abstained(claims, "no usable sources were retrieved")
    if not claims:
        return _abstained(claims, "the answer is empty")

    # One embedding call for everything: claims, question, source windows, sources lacking a cosine.
    texts: list[str] = [_plain(c.text) for c in claims]
    question_row = len(texts)
    texts.append(question)
    sources: list[_Source] = []
    for number, ev in usable:
        windows = _windows(ev.text, settings.max_windows_per_source)
        rows = list(range(len(texts), len(texts) + len(windows)))
        texts.extend(windows)
        context = ev.context_text()
        sources.append(
            _Source(number, ev, context, content_terms(context), _source_numbers(context), rows, windows)
        )
    missing_dense: dict[int, int] = {}
    for src in sources:
        if src.evidence.dense_similarity is None:
            missing_dense[src.number] = len(texts)
            texts.append(src.text)
    vectors = _normalised(embed(texts))

    checks: list[ClaimCheck] = []
    for row, claim in enumerate(claims):
        checks.append(_check_claim(claim, vectors[row], vectors, sources, settings))

    total_weight = sum(c.weight for c in checks)
    score = sum(c.score * c.weight for c in checks) / total_weight if total_weight else 0.0

    relevance, relevance_reasons = _relevance(
        question, answer, sources, vectors[question_row], vectors, missing_dense, settings
    )
    bad = invalid_citations(answer, evidence)
    reasons: list[str] = []
    if not total_weight:
        reasons.append("the answer has no checkable claims")
    if bad:
        listed = ", ".join(f"[{n}]" for n in bad)
        reasons.append(f"{INVALID_CITATION}: {listed}")
    weak = [c for c in checks if c.weight and c.score < settings.threshold]
    if weak:
        reasons.append(f"{len(weak)} of {sum(1 for c in checks if c.weight)} claims are weakly supported")
    abstain = False
    if score < settings.threshold:
        abstain = True
        reasons.append(f"grounding score {score:.2f} is below the threshold {settings.threshold:.2f}")
    if relevance < settings.relevance_threshold:
        abstain = True
        reasons.append(
            f"question relevance {relevance:.2f} is below {settings.relevance_threshold:.2f}: "
            "the retrieved sources do not appear to address the question"
        )
        reasons.extend(relevance_reasons)
    return GroundingReport(
        score=round(score, 4),
        claims=checks,
        relevance=round(relevance, 4),
        abstain=abstain,
        reasons=reasons,
        invalid_citations=bad,
    )


def _abstained(claims: list[Claim], reason: str) -> GroundingReport:
    checks = [ClaimCheck(text=c.text, chunk_id=None, score=0.0, citations=c.citations) for c in claims]
    return GroundingReport(score=0.0, claims=checks, relevance=0.0, abstain=True, reasons=[reason])


def _normalised(matrix: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    # The embedder promises unit rows; normalising again is cheap and makes cosine a dot product.
    m = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    result: npt.NDArray[np.float32] = m / np.maximum(norms, 1e-12)
    return result


def _check_claim(
    claim: Claim,
    vector: npt.NDArray[np.float32],
    vectors: npt.NDArray[np.float32],
    sources: list[_Source],
    settings: GroundingSettings,
) -> ClaimCheck:
    plain = _plain(claim.text)
    terms = content_terms(plain)
    idents = identifiers(plain) if claim.kind == "sentence" else []
    nums = numbers(plain) if claim.kind == "sentence" else set()
    code_names = _code_names(claim.text) if claim.kind == "code" else []
    weight = float(min(len(terms), settings.max_claim_weight))
    base = ClaimCheck(text=claim.text, chunk_id=None, score=0.0, citations=claim.citations)
    if claim.kind == "heading":
        return base.model_copy(update={"reasons": ["heading, not checked"]})
    if claim.kind == "sentence" and len(terms) < settings.min_claim_terms and not idents and not nums:
        return base.model_copy(update={"reasons": ["too short to check"]})

    by_number = {s.number: s for s in sources}
    if any(n not in by_number for n in claim.citations):
        return base.model_copy(update={"weight": weight, "reasons": [INVALID_CITATION]})

    def support(src: _Source) -> _Support:
        lexical = len(terms & src.terms) / len(terms) if terms else 0.0
        similarities = vectors[src.windows] @ vector
        best_window = int(np.argmax(similarities))
        cosine = float(similarities[best_window])
        semantic = _scale(cosine, settings.semantic_floor, settings.semantic_ceiling)
        score = settings.lexical_weight * lexical + settings.semantic_weight * semantic
        reasons: list[str] = []
        missing = [i for i in idents if not _identifier_in(i, src.text)]
        missing += sorted(n for n in nums if n not in src.numbers)
        if code_names:
            absent = [n for n in code_names if not _identifier_in(n, src.text)]
            if len(absent) / len(code_names) > settings.code_missing_tolerance:
                missing += absent
        if missing:
            score = min(score, settings.identifier_cap)
            reasons.extend(f"identifier {m} not in the source" for m in missing[:5])
        quote = src.window_texts[best_window] if best_window < len(src.window_texts) else None
        return _Support(score, src, reasons, quote, missing)

    supports = [support(s) for s in sources]
    reasons: list[str] = []
    if claim.citations:
        cited = [s for s in supports if s.source.number in claim.citations]
        best = max(cited, key=lambda s: s.score)
        others = [s for s in supports if s.source.number not in claim.citations]
        other = max(others, key=lambda s: s.score, default=None)
        chosen, score = best, best.score
        if other is not None and other.score * settings.other_source_discount > best.score:
            chosen, score = other, other.score * settings.other_source_discount
            reasons.append(f"better supported by the uncited source [{other.source.number}]")
    else:
        chosen = max(supports, key=lambda s: s.score)
        score = chosen.score * settings.uncited_discount
        reasons.append("no citation")
    reasons.extend(chosen.reasons)
    if score < settings.threshold:
        reasons.append(f"weak support ({score:.2f})")
    return ClaimCheck(
        text=claim.text,
        chunk_id=chosen.source.evidence.chunk_id,
        score=round(score, 4),
        reasons=reasons,
        citations=claim.citations,
        weight=weight,
        quote=chosen.quote,
        missing=chosen.missing,
    )


def _question_terms(question: str) -> tuple[set[str], list[str]]:
    """Key terms of the question and the subset that are identifiers or named entities."""
    terms = content_terms(question, QUESTION_WORDS)
    entities = identifiers(question) + [e for e in _ENTITY.findall(question) if fold_text(e) not in STOPWORDS]
    return terms, list(dict.fromkeys(entities))


def question_terms(question: str) -> tuple[set[str], list[str]]:
    """Stemmed key terms of a question (question words dropped) and its identifiers/entities."""
    return _question_terms(question)


def _relevance(
    question: str,
    answer: str,
    sources: list[_Source],
    question_vector: npt.NDArray[np.float32],
    vectors: npt.NDArray[np.float32],
    missing_dense: dict[int, int],
    settings: GroundingSettings,
) -> tuple[float, list[str]]:
    reasons: list[str] = []
    dense_values = [
        float(vectors[missing_dense[s.number]] @ question_vector)
        if s.evidence.dense_similarity is None
        else s.evidence.dense_similarity
        for s in sources
    ]
    dense = _scale(max(dense_values), settings.dense_floor, settings.dense_ceiling)

    cited = set(answer_citations(answer))
    scope = [s for s in sources if s.number in cited] or sources
    scope_terms = set().union(*(s.terms for s in scope))
    scope_text = "\n".join(s.text for s in scope)
    terms, entities = _question_terms(question)
    entity_stems = {_stem(e) for e in entities}
    total = found = 0.0
    for term in terms:
        w = settings.entity_weight if term in entity_stems else 1.0
        total += w
        found += w if term in scope_terms else 0.0
    code_ids = identifiers(question)
    for ident in code_ids:
        if _stem(ident) not in terms:  # multi-word spans are not among the single-word terms
            total += settings.entity_weight
            found += settings.entity_weight if _identifier_in(ident, scope_text) else 0.0
    coverage = found / total if total else 1.0
    missing_entities = [
        e for e in entities if not _identifier_in(e, scope_text) and _stem(e) not in scope_terms
    ]
    if missing_entities:
        reasons.append("the sources never mention " + ", ".join(missing_entities[:5]))

    scores = sorted((s.evidence.retrieval_score for s in sources), reverse=True)
    if len(scores) > 1 and scores[0] > 0:
        rest = sum(scores[1:]) / (len(scores) - 1)
        margin = _scale((scores[0] - rest) / scores[0], 0.0, settings.margin_full)
    else:
        margin = 0.5  # one source: retrieval says nothing about its own confidence

    relevance = (
        settings.dense_weight * dense + settings.coverage_weight * coverage + settings.margin_weight * margin
    ) / (settings.dense_weight + settings.coverage_weight + settings.margin_weight)
    all_text = "\n".join(s.text for s in sources)
    if code_ids and not any(_identifier_in(i, all_text) for i in code_ids):
        relevance = min(relevance, settings.missing_identifier_relevance_cap)
    return _clip(relevance), reasons

"""Support scoring: how well the retrieved sources support one claim.

A claim's support from a source is lexical overlap of content words plus embedding similarity to
the source's best sentence window. Numbers and code identifiers of the claim must appear in the
source, otherwise the support is capped low. A claim is scored against the sources it cites; an
uncited source that supports it much better, or no citation at all, lowers its score.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from server.answering.grounding.claims import INVALID_CITATION, Claim, plain, split_claims
from server.answering.grounding.evidence import Evidence
from server.answering.grounding.terms import (
    code_block_names,
    content_terms,
    identifier_in,
    identifiers,
    numbers,
)
from server.settings import GroundingSettings


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


@dataclass
class Source:
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
    source: Source
    reasons: list[str]
    quote: str | None = None
    missing: list[str] = field(default_factory=list)


def source_windows(text: str, limit: int) -> list[str]:
    """Single sentences and adjacent pairs: claims often paraphrase one sentence, sometimes two."""
    units = [c.text for c in split_claims(text) if c.kind != "heading"]
    windows = list(units)
    windows.extend(f"{a} {b}" for a, b in itertools.pairwise(units))
    return windows[:limit] or [text[:1000]]


def clip(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


def scale(value: float, floor: float, ceiling: float) -> float:
    return clip((value - floor) / (ceiling - floor)) if ceiling > floor else float(value >= ceiling)


def check_claim(
    claim: Claim,
    vector: npt.NDArray[np.float32],
    vectors: npt.NDArray[np.float32],
    sources: list[Source],
    settings: GroundingSettings,
) -> ClaimCheck:
    text = plain(claim.text)
    terms = content_terms(text)
    idents = identifiers(text) if claim.kind == "sentence" else []
    nums = numbers(text) if claim.kind == "sentence" else set()
    code_names = code_block_names(claim.text) if claim.kind == "code" else []
    weight = float(min(len(terms), settings.max_claim_weight))
    base = ClaimCheck(text=claim.text, chunk_id=None, score=0.0, citations=claim.citations)
    if claim.kind == "heading":
        return base.model_copy(update={"reasons": ["heading, not checked"]})
    if claim.kind == "sentence" and len(terms) < settings.min_claim_terms and not idents and not nums:
        return base.model_copy(update={"reasons": ["too short to check"]})

    by_number = {s.number: s for s in sources}
    if any(n not in by_number for n in claim.citations):
        return base.model_copy(update={"weight": weight, "reasons": [INVALID_CITATION]})

    def support(src: Source) -> _Support:
        lexical = len(terms & src.terms) / len(terms) if terms else 0.0
        similarities = vectors[src.windows] @ vector
        best_window = int(np.argmax(similarities))
        cosine = float(similarities[best_window])
        semantic = scale(cosine, settings.semantic_floor, settings.semantic_ceiling)
        score = settings.lexical_weight * lexical + settings.semantic_weight * semantic
        reasons: list[str] = []
        missing = [i for i in idents if not identifier_in(i, src.text)]
        missing += sorted(n for n in nums if n not in src.numbers)
        if code_names:
            absent = [n for n in code_names if not identifier_in(n, src.text)]
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

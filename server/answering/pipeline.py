"""Grounded answers: retrieve → select context → write (extractive or a model) → check → answer or abstain.

No MCP in here: the MCP client's model is reached through a plain `SampleFn` callback that the
tool handler builds from its request context.

    retrieve      the same hybrid retrieval as `search`, `answer.depth` candidates
    context       whole chunks in rank order within `answer.context_tokens`; chunks flagged by the
                  injection screen stay in the numbered list (so numbers match retrieval) but are
                  never sent to a model, quoted or cited
    write         extractive (offline: best source sentences, each cited) or a remote/sampling model
                  (PII redacted first); any provider failure falls back to extractive
    check         `grounding.check` on every answer, whoever wrote it; below the thresholds, with an
                  invalid citation, a fabricated identifier or number, or a model saying the sources
                  are insufficient, the answer is replaced by the fixed abstention text and sources
    cost          tokens counted per request and priced from the provider table

Results are cached per tenant, scope and index generation (`cache.py`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import httpx
import numpy as np
import numpy.typing as npt
import structlog
from pydantic import BaseModel, Field

from indexer.embedding import Embedder
from server.answering.cache import CacheScope, SemanticCache
from server.answering.grounding import (
    Evidence,
    GroundingReport,
    check,
    content_terms,
    identifiers,
    question_terms,
    split_claims,
)
from server.answering.prompts import build_prompt, repair_request
from server.answering.providers import (
    AnswerBackend,
    Citation,
    GeneratedAnswer,
    ProviderBadOutput,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    Usage,
    estimate_cost,
    make_backend,
    parse_reply,
)
from server.observability.stages import StageTimer
from server.retrieval.catalog import CatalogView
from server.retrieval.hybrid import Candidate
from server.retrieval.service import Access, DocService
from server.security import guards
from server.settings import GroundingSettings, ServerSettings

log = structlog.get_logger()

ABSTENTION = "I could not find a confident answer in the documentation."
ABSTENTION_SOURCES = 3
_QUOTE_TOKENS = 80


# ---------------------------------------------------------------------------------------------
# Result models (the tool's output schema)


class AnswerCitation(BaseModel):
    n: int = Field(description="The number used in the answer's [n] markers.")
    chunk_id: str = Field(description="Pass to fetch_chunk to read the passage in full.")
    title: str
    heading_path: list[str]
    source: str = Field(description="Page URL or path, with #anchor when known.")
    quote: str = Field(description="The passage of the source that supports the cited sentences.")


class ClaimReport(BaseModel):
    text: str
    chunk_id: str | None = Field(description="The source that supports the claim best; null if none.")
    score: float = Field(description="Support from 0 (none) to 1 (stated by the source).")


class GroundingSummary(BaseModel):
    score: float = Field(description="Length-weighted support of all claims, 0-1.")
    relevance: float = Field(description="How well the sources address the question, 0-1.")
    claims: list[ClaimReport]
    reasons: list[str] = Field(default_factory=list, description="Why the check passed or abstained.")


class AnswerUsage(BaseModel):
    input_tokens: int = Field(description="Tokens the answer writer read (prompt or local sources).")
    output_tokens: int
    estimated_cost_usd: float


class AnswerResult(BaseModel):
    answer: str = Field(description="The answer with [n] citation markers, or the abstention text.")
    citations: list[AnswerCitation]
    grounding: GroundingSummary
    abstained: bool = Field(description="True when no answer was confident enough to give.")
    backend: str = Field(description="Who wrote the answer: extractive, openai, anthropic, sampling.")
    fallback_reason: str | None = Field(
        default=None, description="Why the configured model did not answer and extractive did."
    )
    usage: AnswerUsage
    trace_id: str = Field(description="Request id in the server's logs and audit trail.")
    cached: bool = Field(
        description="True when this is a stored answer to the same or a near-identical question."
    )


@dataclass
class AnswerTrace:
    """What the tool handler copies into the audit record and the trace event."""

    chunk_ids: list[str] = field(default_factory=list)
    generations: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    trace: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# MCP sampling as an answer backend


class SampledReply(BaseModel):
    text: str
    model: str


SampleFn = Callable[[str, list[dict[str, str]], int, float], Awaitable[SampledReply]]
"""(system prompt, messages, max output tokens, timeout seconds) → the client model's reply."""


class SamplingBackend:
    """Asks the connected MCP client's own model, with the same prompt and JSON contract as HTTP."""

    backend = "sampling"

    def __init__(self, sample: SampleFn, count_tokens: Callable[[str], int]) -> None:
        self.sample = sample
        self.count_tokens = count_tokens

    async def generate(
        self, question: str, evidence: list[Evidence], *, max_output_tokens: int, deadline: float
    ) -> GeneratedAnswer:
        prompt = build_prompt(question, evidence, guards.redact)
        if not prompt.sources:
            raise ProviderError("no evidence is left to send once flagged sources are excluded")
        messages = [{"role": "user", "content": prompt.user}]
        first = await self._ask(prompt.system, messages, max_output_tokens, deadline)
        usage = self._usage(prompt.system, messages, first.text)
        try:
            return self._answer(parse_reply(first.text), usage, first.model, repaired=False)
        except ValueError as exc:
            error = str(exc)
        messages = [
            *messages,
            {"role": "assistant", "content": first.text or "(empty reply)"},
            {"role": "user", "content": repair_request(error)},
        ]
        second = await self._ask(prompt.system, messages, max_output_tokens, deadline)
        usage = usage + self._usage(prompt.system, messages, second.text)
        try:
            reply = parse_reply(second.text)
        except ValueError as exc:
            raise ProviderBadOutput(
                f"the client's model did not return the required JSON after one repair request: {exc}"
            ) from None
        return self._answer(reply, usage, second.model, repaired=True)

    async def _ask(
        self, system: str, messages: list[dict[str, str]], max_tokens: int, deadline: float
    ) -> SampledReply:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProviderTimeout("the client's model did not answer within the deadline")
        try:
            with anyio.fail_after(remaining):
                return await self.sample(system, messages, max_tokens, remaining)
        except TimeoutError:
            raise ProviderTimeout("the client's model did not answer within the deadline") from None
        except ProviderError:
            raise
        except Exception as exc:  # the client may refuse or fail in any way; extractive answers instead
            raise ProviderUnavailable(
                f"the client's model could not answer ({type(exc).__name__}: {exc})"
            ) from exc

    def _usage(self, system: str, messages: list[dict[str, str]], reply: str) -> Usage:
        # Sampling replies carry no token counts: estimate with the local tokenizer.
        sent = self.count_tokens(system) + sum(self.count_tokens(m["content"]) for m in messages)
        return Usage(input_tokens=sent, output_tokens=self.count_tokens(reply))

    @staticmethod
    def _answer(reply: Any, usage: Usage, model: str, *, repaired: bool) -> GeneratedAnswer:
        return GeneratedAnswer(
            answer=reply.answer,
            citations=reply.citations,
            insufficient=reply.insufficient,
            usage=usage,
            model=model,
            backend="sampling",
            repaired=repaired,
        )


# ---------------------------------------------------------------------------------------------
# Extractive backend


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


# ---------------------------------------------------------------------------------------------
# The pipeline


@dataclass
class _Prepared:
    question: str
    scope: CacheScope
    vector: npt.NDArray[np.float32]
    view: CatalogView
    names: tuple[str, ...]
    generations: dict[str, int]
    question_tokens: int


@dataclass
class Retrieved:
    """Retrieval candidates and the context selected from them."""

    candidates: list[Candidate]
    evidence: list[Evidence]  # the context: what the writer sees, numbered from 1
    context_tokens: int
    flagged: list[str]
    timings_ms: dict[str, float]


@dataclass
class _Written:
    answer: str
    citations: list[Citation]
    backend: str
    usage: Usage
    cost: float
    insufficient: bool = False
    fallback_reason: str | None = None
    quotes: dict[int, list[str]] = field(default_factory=dict)
    model: str | None = None
    repaired: bool = False


class Answerer:
    """Answers questions for one server: shared embedder, catalog, HTTP client and cache."""

    def __init__(
        self,
        settings: ServerSettings,
        service: DocService,
        embedder: Embedder,
        *,
        client: httpx.AsyncClient | None = None,
        cache: SemanticCache[AnswerResult] | None = None,
    ) -> None:
        self.settings = settings
        self.answer_settings = settings.answer
        self.service = service
        self.embedder = embedder
        self.cache = cache
        self.remote: AnswerBackend | None = None
        provider = settings.answer.provider
        if settings.answer.backend in ("openai", "anthropic") and provider is not None:
            if client is None:
                raise ValueError("the openai and anthropic answer backends need a shared httpx.AsyncClient")
            self.remote = make_backend(provider, client, guards.redact)

    @property
    def grounding(self) -> GroundingSettings:
        return self.answer_settings.grounding

    async def answer(
        self,
        access: Access,
        question: str,
        *,
        collections: Sequence[str] | None = None,
        version: str | None = None,
        max_tokens: int = 1500,
        trace_id: str = "",
        sample: SampleFn | None = None,
    ) -> tuple[AnswerResult, AnswerTrace]:
        started = time.monotonic()
        trace = AnswerTrace()
        prepared = await anyio.to_thread.run_sync(
            self._prepare, access, question, collections, version, max_tokens
        )
        trace.generations = prepared.generations
        trace.tokens_in = prepared.question_tokens
        if self.cache is not None:
            hit = self.cache.get(prepared.scope, prepared.question, prepared.vector)
            if hit is not None:
                result = hit.value.model_copy(
                    update={
                        "cached": True,
                        "trace_id": trace_id,
                        "usage": AnswerUsage(input_tokens=0, output_tokens=0, estimated_cost_usd=0.0),
                    }
                )
                trace.chunk_ids = [c.chunk_id for c in result.citations]
                trace.trace = {"cached": True, "cache_similarity": round(hit.similarity, 4)}
                return result, trace

        retrieved = await anyio.to_thread.run_sync(self._retrieve, access, prepared)
        embed = memo_embed(self.embedder.embed)
        timer = StageTimer(retrieved.timings_ms)
        with timer.stage("generate"):
            written = await self._write(prepared.question, retrieved, max_tokens, embed, sample)
        with timer.stage("ground"):
            report = await anyio.to_thread.run_sync(
                lambda: check(prepared.question, written.answer, retrieved.evidence, embed, self.grounding)
            )
        reasons = self._extra_reasons(written, report, retrieved.evidence)
        abstained = report.abstain or bool(reasons)
        result = self._shape(prepared, retrieved, written, report, reasons, abstained, trace_id, max_tokens)

        trace.chunk_ids = [e.chunk_id for e in retrieved.evidence]
        trace.tokens_in = prepared.question_tokens + (written.usage.input_tokens if written.model else 0)
        trace.trace = {
            "cached": False,
            "backend": result.backend,
            "fallback_reason": written.fallback_reason,
            "model": written.model,
            "repaired": written.repaired,
            "abstained": abstained,
            "grounding_score": report.score,
            "relevance": report.relevance,
            "grounding_reasons": result.grounding.reasons,
            "context_ids": [e.chunk_id for e in retrieved.evidence],
            "context_tokens": retrieved.context_tokens,
            "flagged_ids": retrieved.flagged,
            "model_input_tokens": written.usage.input_tokens,
            "model_output_tokens": written.usage.output_tokens,
            "estimated_cost_usd": written.cost,
            "spans_ms": {**timer.spans, "answer_total": round((time.monotonic() - started) * 1000, 3)},
        }
        # Abstentions are cached too: within one generation the same question retrieves the same
        # sources and would abstain again, and repeated unanswerable questions are the costly kind.
        # Fallback answers are not: the model's failure may be transient.
        if self.cache is not None and written.fallback_reason is None:
            self.cache.put(prepared.scope, prepared.question, prepared.vector, result)
        return result, trace

    # --- steps --------------------------------------------------------------------------------

    def _prepare(
        self,
        access: Access,
        question: str,
        collections: Sequence[str] | None,
        version: str | None,
        max_tokens: int,
    ) -> _Prepared:
        view = self.service.catalog.view()
        names = self.service.scope(access, collections, version, view)
        generations = {name: view.snapshots[name].generation for name in names}
        scope = CacheScope.of(
            access.tenant, names, version, generations, self.answer_settings.backend, max_tokens
        )
        vector = self.embedder.embed([question])[0]
        return _Prepared(
            question=question,
            scope=scope,
            vector=vector,
            view=view,
            names=names,
            generations=generations,
            question_tokens=self.embedder.count_tokens(question),
        )

    def _retrieve(self, access: Access, prepared: _Prepared) -> Retrieved:
        return self.retrieve_context(
            access,
            prepared.question,
            collections=prepared.names,
            version=prepared.scope.version,
            view=prepared.view,
        )

    def retrieve_context(
        self,
        access: Access,
        question: str,
        *,
        collections: Sequence[str] | None = None,
        version: str | None = None,
        view: CatalogView | None = None,
    ) -> Retrieved:
        """Retrieve and select the numbered context (also used by the evaluation scripts)."""
        result, _ = self.service.retrieve(
            access,
            question,
            collections=collections,
            version=version,
            depth=self.answer_settings.depth,
            view=view,
        )
        budget = self.answer_settings.context_tokens
        evidence: list[Evidence] = []
        flagged: list[str] = []
        used = 0
        for candidate in result.candidates:
            chunk = candidate.chunk
            flags = guards.screen(chunk.text)
            if flags:
                flagged.append(chunk.chunk_id)
            else:
                cost = self.embedder.count_tokens(chunk.text)
                if used + cost > budget:
                    if evidence:
                        continue  # a smaller chunk further down may still fit; keep rank order
                    # Even the best chunk alone is over budget: take its opening.
                    chunk = chunk.model_copy(
                        update={"text": self.embedder.truncate_to_tokens(chunk.text, budget)}
                    )
                    cost = budget
                used += cost
            evidence.append(
                Evidence(
                    chunk_id=chunk.chunk_id,
                    title=chunk.title,
                    heading_path=chunk.heading_path,
                    source=chunk.source,
                    text=chunk.text,
                    retrieval_score=candidate.score,
                    dense_similarity=candidate.dense_score,
                    flags=flags,
                )
            )
        return Retrieved(result.candidates, evidence, used, flagged, result.timings_ms)

    async def _write(
        self,
        question: str,
        retrieved: Retrieved,
        max_tokens: int,
        embed: Callable[[list[str]], npt.NDArray[np.float32]],
        sample: SampleFn | None,
    ) -> _Written:
        configured = self.answer_settings.backend
        backend: AnswerBackend | None = self.remote
        reason: str | None = None
        if configured == "sampling":
            backend = SamplingBackend(sample, self.embedder.count_tokens) if sample is not None else None
            if sample is None:
                reason = "the MCP client does not support sampling"
        usable = [e for e in retrieved.evidence if e.usable]
        if backend is not None and not usable:
            backend, reason = None, "no usable sources to send"
        if backend is not None:
            deadline = time.monotonic() + self.answer_settings.deadline_s
            try:
                generated = await backend.generate(
                    question,
                    retrieved.evidence,
                    max_output_tokens=min(self.answer_settings.max_output_tokens, max_tokens),
                    deadline=deadline,
                )
            except ProviderError as error:
                reason = str(error)
                log.warning(
                    "answer_backend_failed", backend=configured, error=reason, kind=type(error).__name__
                )
            else:
                provider = self.answer_settings.provider
                cost = (
                    estimate_cost(generated.usage, provider)
                    if provider is not None and configured != "sampling"
                    else 0.0
                )
                return _Written(
                    answer=generated.answer,
                    citations=generated.citations,
                    backend=configured,
                    usage=generated.usage,
                    cost=cost,
                    insufficient=generated.insufficient,
                    model=generated.model,
                    repaired=generated.repaired,
                )
        extract = await anyio.to_thread.run_sync(
            lambda: extractive_answer(
                question,
                retrieved.evidence,
                embed,
                self.embedder.count_tokens,
                max_sentences=self.answer_settings.max_sentences,
                token_budget=max(50, max_tokens // 5),
            )
        )
        read = self.embedder.count_tokens(question) + sum(self.embedder.count_tokens(e.text) for e in usable)
        return _Written(
            answer=extract.answer,
            citations=[Citation(n=n, chunk_id=retrieved.evidence[n - 1].chunk_id) for n in extract.quotes],
            backend="extractive" if reason is None else f"extractive (fallback: {_short(reason)})",
            usage=Usage(input_tokens=read, output_tokens=self.embedder.count_tokens(extract.answer)),
            cost=0.0,
            fallback_reason=reason,
            quotes=extract.quotes,
        )

    def _extra_reasons(
        self, written: _Written, report: GroundingReport, evidence: list[Evidence]
    ) -> list[str]:
        """Abstention reasons beyond the score thresholds: never show a fabricated or mis-cited claim."""
        reasons: list[str] = []
        if written.insufficient:
            reasons.append("the model reported that the sources do not answer the question")
        for citation in written.citations:
            valid = 1 <= citation.n <= len(evidence) and evidence[citation.n - 1].usable
            if not valid or (
                bool(citation.chunk_id) and evidence[citation.n - 1].chunk_id != citation.chunk_id
            ):
                reasons.append(f"citation [{citation.n}] does not match a retrieved source")
        if report.invalid_citations:
            reasons.append("the answer cites sources that were not retrieved")
        fabricated = sorted({m for c in report.claims if c.weight for m in c.missing})
        if fabricated:
            reasons.append("not in the cited sources: " + ", ".join(fabricated[:5]))
        return reasons

    def _shape(
        self,
        prepared: _Prepared,
        retrieved: Retrieved,
        written: _Written,
        report: GroundingReport,
        extra: list[str],
        abstained: bool,
        trace_id: str,
        max_tokens: int,
    ) -> AnswerResult:
        evidence = retrieved.evidence
        grounding = GroundingSummary(
            score=report.score,
            relevance=report.relevance,
            claims=[ClaimReport(text=c.text, chunk_id=c.chunk_id, score=c.score) for c in report.claims],
            reasons=[*report.reasons, *extra],
        )
        usage = AnswerUsage(
            input_tokens=written.usage.input_tokens,
            output_tokens=written.usage.output_tokens,
            estimated_cost_usd=round(written.cost, 8),
        )
        if abstained:
            answer = ABSTENTION + _sources_to_read(retrieved.candidates)
            citations: list[AnswerCitation] = []
        else:
            answer = written.answer
            citations = self._citations(written, report, evidence)
        result = AnswerResult(
            answer=answer,
            citations=citations,
            grounding=grounding,
            abstained=abstained,
            backend=written.backend,
            fallback_reason=written.fallback_reason,
            usage=usage,
            trace_id=trace_id,
            cached=False,
        )
        return self._fit(result, max_tokens)

    def _citations(
        self, written: _Written, report: GroundingReport, evidence: list[Evidence]
    ) -> list[AnswerCitation]:
        numbers = list(dict.fromkeys(n for c in report.claims for n in c.citations))
        numbers += [c.n for c in written.citations if c.n not in numbers]
        out: list[AnswerCitation] = []
        for n in numbers:
            if not 1 <= n <= len(evidence) or not evidence[n - 1].usable:
                continue
            ev = evidence[n - 1]
            quotes = written.quotes.get(n) or [
                c.quote for c in report.claims if n in c.citations and c.chunk_id == ev.chunk_id and c.quote
            ]
            quote = " … ".join(dict.fromkeys(quotes)) if quotes else ev.text
            out.append(
                AnswerCitation(
                    n=n,
                    chunk_id=ev.chunk_id,
                    title=ev.title,
                    heading_path=ev.heading_path,
                    source=ev.source,
                    quote=self._clip(quote, _QUOTE_TOKENS),
                )
            )
        return out

    def _clip(self, text: str, tokens: int) -> str:
        clipped = self.embedder.truncate_to_tokens(text, tokens)
        return clipped if clipped == text else clipped.rstrip() + " …"

    def _fit(self, result: AnswerResult, max_tokens: int) -> AnswerResult:
        """Shrink the supporting detail until the response fits `max_tokens`; the answer stays whole.

        Order: shorter quotes and claim texts, then claim texts dropped (their scores stay), then the
        per-claim list, the reasons, the quotes. Citations keep their chunk IDs so every [n] stays
        resolvable with fetch_chunk. The extractive writer already keeps to a fifth of the budget.
        """
        for limit in (40, 16, 8):
            if self.service.tokens(result) <= max_tokens:
                return result
            result.citations = [
                c.model_copy(update={"quote": self._clip(c.quote, limit)}) for c in result.citations
            ]
            result.grounding.claims = [
                c.model_copy(update={"text": self._clip(c.text, limit)}) for c in result.grounding.claims
            ]
        if self.service.tokens(result) > max_tokens:
            result.grounding.claims = [c.model_copy(update={"text": ""}) for c in result.grounding.claims]
        if self.service.tokens(result) > max_tokens:
            result.grounding.claims = []
        if self.service.tokens(result) > max_tokens:
            result.grounding.reasons = result.grounding.reasons[:1]
        if self.service.tokens(result) > max_tokens:
            result.citations = [c.model_copy(update={"quote": "…"}) for c in result.citations]
        return result


def validate_question(question: object) -> str:
    """`guards.validate_query` with messages that name this tool's argument."""
    try:
        return guards.validate_query(question)
    except guards.InvalidArgument as error:
        raise guards.InvalidArgument(
            str(error).replace("query", "question", 1), argument="question"
        ) from None


def _sources_to_read(candidates: Sequence[Candidate]) -> str:
    lines: list[str] = []
    for candidate in candidates:
        chunk = candidate.chunk
        if guards.screen(chunk.text):
            continue
        headings = [h for h in chunk.heading_path if h != chunk.title]
        label = " › ".join([chunk.title, *headings[-1:]])
        line = f"- {label} ({chunk.source})"
        if line not in lines:
            lines.append(line)
        if len(lines) >= ABSTENTION_SOURCES:
            break
    return "\n\nSources that may help:\n" + "\n".join(lines) if lines else ""


def _short(reason: str) -> str:
    first = reason.split(";")[0].strip()
    return first if len(first) <= 120 else first[:117] + "..."


def memo_embed(
    embed: Callable[[Sequence[str]], npt.NDArray[np.float32]],
) -> Callable[[list[str]], npt.NDArray[np.float32]]:
    """Per-answer embedding memo: the writer and the checker embed many of the same sentences."""
    cache: dict[str, npt.NDArray[np.float32]] = {}

    def run(texts: list[str]) -> npt.NDArray[np.float32]:
        # Sorted by length: a batch is padded to its longest text, so mixing short claims with long
        # windows wastes most of the compute.
        todo = sorted(dict.fromkeys(t for t in texts if t not in cache), key=len)
        if todo:
            cache.update(zip(todo, embed(todo), strict=True))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([cache[t] for t in texts])

    return run

"""The write step: the configured model writes the answer, or the extractive backend does.

Any provider failure (timeout, bad output, no sampling support, nothing usable to send) falls
back to the extractive backend, and the reason is kept for the result and the trace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio.to_thread
import numpy as np
import numpy.typing as npt
import structlog

from indexer.embedding import Embedder
from server.answering.context import Retrieved
from server.answering.extractive import extractive_answer
from server.answering.providers import estimate_cost
from server.answering.replies import AnswerBackend, Citation, ProviderError, Usage
from server.answering.sampling import SampleFn, SamplingBackend
from server.settings import AnswerSettings

log = structlog.get_logger()


@dataclass
class Written:
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


async def write_answer(
    question: str,
    retrieved: Retrieved,
    max_tokens: int,
    embed: Callable[[list[str]], npt.NDArray[np.float32]],
    sample: SampleFn | None,
    *,
    settings: AnswerSettings,
    remote: AnswerBackend | None,
    embedder: Embedder,
) -> Written:
    configured = settings.backend
    backend: AnswerBackend | None = remote
    reason: str | None = None
    if configured == "sampling":
        backend = SamplingBackend(sample, embedder.count_tokens) if sample is not None else None
        if sample is None:
            reason = "the MCP client does not support sampling"
    usable = [e for e in retrieved.evidence if e.usable]
    if backend is not None and not usable:
        backend, reason = None, "no usable sources to send"
    if backend is not None:
        deadline = time.monotonic() + settings.deadline_s
        try:
            generated = await backend.generate(
                question,
                retrieved.evidence,
                max_output_tokens=min(settings.max_output_tokens, max_tokens),
                deadline=deadline,
            )
        except ProviderError as error:
            reason = str(error)
            log.warning("answer_backend_failed", backend=configured, error=reason, kind=type(error).__name__)
        else:
            provider = settings.provider
            cost = (
                estimate_cost(generated.usage, provider)
                if provider is not None and configured != "sampling"
                else 0.0
            )
            return Written(
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
            embedder.count_tokens,
            max_sentences=settings.max_sentences,
            token_budget=max(50, max_tokens // 5),
        )
    )
    read = embedder.count_tokens(question) + sum(embedder.count_tokens(e.text) for e in usable)
    return Written(
        answer=extract.answer,
        citations=[Citation(n=n, chunk_id=retrieved.evidence[n - 1].chunk_id) for n in extract.quotes],
        backend="extractive" if reason is None else f"extractive (fallback: {_short(reason)})",
        usage=Usage(input_tokens=read, output_tokens=embedder.count_tokens(extract.answer)),
        cost=0.0,
        fallback_reason=reason,
        quotes=extract.quotes,
    )


def _short(reason: str) -> str:
    first = reason.split(";")[0].strip()
    return first if len(first) <= 120 else first[:117] + "..."

"""How far an agent's reading strategies get, and what they cost (`docgate eval`, `agent` section).

For every answerable case with `must_mention` terms, three strategies read the docs the way an
agent does, through the same cores the tools serve (search, fetch, page shaping, token budgets):

    search               the first page of `search` (k hits, their titles, headings and snippets)
    search_fetch         that, plus `fetch_chunk` of the top hit
    search_read_page     that search, plus `read_page` of the top hit's source (its #anchor section)

A term counts as found when it occurs (case-insensitively) in what the strategy read. Reported per
strategy: the share of asked terms found (`mention_rate`), the share of cases with every term found
(`complete_rate`), and the mean tokens read per case (the responses' sizes as the budgets charge
them). The same search result feeds all three, so the differences are the follow-up call alone.
"""

from __future__ import annotations

import secrets
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field

from server.errors import ServiceError
from server.evals.dataset import EvalCase
from server.retrieval import pages
from server.retrieval.page_sources import PageRequest
from server.retrieval.service import Access, DocService, SearchResult
from server.security.guards import InvalidArgument

STRATEGIES = ("search", "search_fetch", "search_read_page")
SEARCH_K = 5
SEARCH_TOKENS = 2000
READ_TOKENS = 4000


class StrategyMetrics(BaseModel):
    cases: int
    mention_rate: float = Field(description="Asked terms found in what was read, over all asked terms.")
    complete_rate: float = Field(description="Cases with every asked term found.")
    mean_tokens: float = Field(description="Tokens read per case (responses as the budget charges them).")


class AgentMiss(BaseModel):
    id: str
    strategy: str
    missing_terms: list[str]
    top_source: str | None
    error: str | None = None


class AgentReport(BaseModel):
    k: int
    strategies: dict[str, StrategyMetrics]
    misses: list[AgentMiss] = Field(description="Cases where `search_read_page` still missed a term.")


@dataclass
class _Read:
    text: str
    tokens: int
    error: str | None = None


def _search_text(result: SearchResult) -> str:
    return "\n".join(
        " ".join([hit.title, " ".join(hit.heading_path), hit.snippet.replace("**", "")])
        for hit in result.hits
    )


def _missing(terms: Sequence[str], text: str) -> list[str]:
    lowered = text.lower()
    return [term for term in terms if term.lower() not in lowered]


def _reads(
    service: DocService, access: Access, question: str, collection: str, version: str | None, secret: bytes
) -> tuple[dict[str, _Read], str | None]:
    outcome = service.search(
        access, question, collections=[collection], version=version, k=SEARCH_K, max_tokens=SEARCH_TOKENS
    )
    searched = _Read(_search_text(outcome.result), outcome.tokens)
    reads = {"search": searched}
    if not outcome.result.hits:
        empty = _Read(searched.text, searched.tokens, "no hits")
        return {**reads, "search_fetch": empty, "search_read_page": empty}, None
    top = outcome.result.hits[0]
    fetched, size = service.fetch(access, top.chunk_id, max_tokens=READ_TOKENS)
    reads["search_fetch"] = _Read(f"{searched.text}\n{fetched.chunk.text}", searched.tokens + size)
    view = service.catalog.view()
    allowed = [name for name in sorted(view.snapshots) if access.allowed(name)]
    try:
        page, page_size = pages.read_page(
            view,
            allowed,
            PageRequest(top.source, top.collection, None, READ_TOKENS, None),
            tenant=access.tenant,
            secret=secret,
            count_tokens_batch=service.embedder.count_tokens_batch,
            count_tokens=service.embedder.count_tokens,
            truncate=service.embedder.truncate_to_tokens,
        )
        reads["search_read_page"] = _Read(f"{searched.text}\n{page.text}", searched.tokens + page_size)
    except (ServiceError, InvalidArgument) as error:
        reads["search_read_page"] = _Read(searched.text, searched.tokens, str(error))
    return reads, top.source


def run_agent(
    service: DocService, access: Access, cases: Sequence[EvalCase], collection: str, version: str | None
) -> AgentReport:
    """The three strategies over the answerable cases that name terms."""
    secret = secrets.token_bytes(32)
    found: dict[str, list[int]] = {name: [] for name in STRATEGIES}
    asked: list[int] = []
    complete: dict[str, list[bool]] = {name: [] for name in STRATEGIES}
    tokens: dict[str, list[int]] = {name: [] for name in STRATEGIES}
    misses: list[AgentMiss] = []
    for case in cases:
        terms = case.must_mention
        if not case.answerable or not terms:
            continue
        try:
            reads, top_source = _reads(
                service, access, case.question, collection, case.version or version, secret
            )
        except ServiceError as error:  # e.g. a case's version the index does not have
            reads = {name: _Read("", 0, str(error)) for name in STRATEGIES}
            top_source = None
        asked.append(len(terms))
        for name in STRATEGIES:
            read = reads[name]
            missing = _missing(terms, read.text)
            found[name].append(len(terms) - len(missing))
            complete[name].append(not missing)
            tokens[name].append(read.tokens)
            if name == "search_read_page" and (missing or read.error):
                misses.append(
                    AgentMiss(
                        id=case.id,
                        strategy=name,
                        missing_terms=missing,
                        top_source=top_source,
                        error=read.error,
                    )
                )
    total = sum(asked)
    return AgentReport(
        k=SEARCH_K,
        strategies={
            name: StrategyMetrics(
                cases=len(asked),
                mention_rate=round(sum(found[name]) / total, 4) if total else 0.0,
                complete_rate=round(sum(complete[name]) / len(asked), 4) if asked else 0.0,
                mean_tokens=round(statistics.fmean(tokens[name]), 1) if asked else 0.0,
            )
            for name in STRATEGIES
        },
        misses=misses,
    )

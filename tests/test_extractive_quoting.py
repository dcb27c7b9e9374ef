"""Extractive answers over a written corpus of lists, colons and code: whole units, the right page.

`tests/fixtures/quoting/` describes an invented protocol: a cancellation page (lists with lead-ins,
a colon sentence before code, a nested list), a jobs page whose body also says "cancel", a long
settings list, a proposal and a changelog that mention cancelling too, and a section that ends on
a sentence introducing nothing ("Operators usually reload by:").
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from indexer.build import BuildRequest
from indexer.embedding import Embedder
from server.answering.grounding.claims import split_claims
from server.answering.pipeline import Answerer, AnswerResult
from server.retrieval.service import Access, DocService
from server.settings import ServerSettings
from tests.conftest import REPO, build_corpus, open_service, settings_for
from tests.eval_fixtures import mcp_docs

__all__ = ["mcp_docs"]  # a session fixture, re-exported so pytest finds it here

CORPUS = REPO / "tests" / "fixtures" / "quoting"
ACCESS = Access(tenant="default", allowed=lambda name: True)
QUESTIONS = [
    "How do I cancel a request?",
    "What must a receiver do when a request is cancelled?",
    "Which setting controls how many requests are worked on at once?",
    "How do I stop a job?",
    "How do I reload the settings?",
    "What happens when a reply and a cancellation cross?",
    "What does the request_timeout setting do?",
    "Which fields does a cancellation notification carry?",
]
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


@pytest.fixture(scope="module")
def quoting(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, embedder: Embedder
) -> tuple[ServerSettings, DocService]:
    request = BuildRequest(collection="tidewire", source=CORPUS, version="2.1")
    data_dir = build_corpus(tmp_path_factory, model_dir, embedder, request)
    return settings_for(data_dir, model_dir), open_service(data_dir, model_dir, embedder)


@pytest.fixture(scope="module")
def answers(quoting: tuple[ServerSettings, DocService], embedder: Embedder) -> dict[str, AnswerResult]:
    settings, service = quoting

    async def run() -> dict[str, AnswerResult]:
        answerer = Answerer(settings, service, embedder)
        return {q: (await answerer.answer(ACCESS, q))[0] for q in QUESTIONS}

    return asyncio.run(run())


def _pages(result: AnswerResult) -> set[str]:
    return {c.source.split("#", 1)[0] for c in result.citations}


@pytest.mark.parametrize("question", QUESTIONS)
def test_every_answer_is_made_of_whole_units(answers: dict[str, AnswerResult], question: str) -> None:
    result = answers[question]
    assert not result.abstained, result.grounding.reasons
    text = result.answer
    assert not text.rstrip().endswith((":", ","))
    assert not text.lstrip()[0].islower()
    assert "reload by" not in text  # introduces something the page never says
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if _ITEM.match(line) and not line.startswith(" "):
            # A top-level item: under a lead-in ending in ":" or carrying its own citation.
            block_start = max(i for i in range(index + 1) if i == 0 or not lines[i - 1].strip())
            lead = lines[block_start]
            assert lead.rstrip().endswith(":") or re.search(r"\[\d+\]:?$", line), (line, text)
        if line.rstrip().endswith(":"):
            following = next((x for x in lines[index + 1 :] if x.strip()), "")
            assert _ITEM.match(following) or following.startswith("```"), (line, text)
    assert text.count("```") % 2 == 0  # code blocks are whole
    # The grounding check scores every quoted statement against the source it cites.
    cited = [c for c in split_claims(text) if c.kind == "sentence"]
    assert cited and all(c.citations for c in cited), text
    assert result.grounding.score >= 0.8
    assert all(claim.chunk_id for claim in result.grounding.claims if claim.score > 0)


def test_cancelling_a_request_quotes_the_cancellation_page_not_the_jobs_page(
    answers: dict[str, AnswerResult],
) -> None:
    result = answers["How do I cancel a request?"]
    assert _pages(result) == {"guide/cancellation.md"}
    assert "signals/abort" in result.answer
    assert "jobs/stop" not in result.answer
    # The lead-in and its list come together, the example after them.
    assert re.search(
        r"sends a `?signals/abort`? notification that carries \[\d+\]:\n- The `?requestId", result.answer
    )


def test_stopping_a_job_quotes_the_jobs_page(answers: dict[str, AnswerResult]) -> None:
    result = answers["How do I stop a job?"]
    assert _pages(result) == {"guide/jobs.md"}
    assert "jobs/stop" in result.answer
    assert '{"method": "jobs/stop"' in result.answer  # the example comes with its sentence


def test_an_item_of_a_long_list_comes_with_the_lists_lead_in(answers: dict[str, AnswerResult]) -> None:
    result = answers["Which setting controls how many requests are worked on at once?"]
    assert "worker_pool" in result.answer
    lines = result.answer.splitlines()
    item = next(i for i, line in enumerate(lines) if "worker_pool" in line)
    assert lines[item].startswith("- ")
    assert any("reads these settings when it starts" in line for line in lines[:item])


def test_a_colon_sentence_before_code_brings_the_code(answers: dict[str, AnswerResult]) -> None:
    result = answers["How do I reload the settings?"]
    assert "tidewire reload --config tidewire.toml" in result.answer
    before = result.answer.split("```", 1)[0]
    assert before.rstrip().endswith("]:")


def test_results_say_which_question_terms_the_answer_covers(answers: dict[str, AnswerResult]) -> None:
    covered = {t.term: t.covered for t in answers["What does the request_timeout setting do?"].question_terms}
    assert covered["request_timeout"] is True
    assert covered["setting"] is True
    job = {t.term: t.covered for t in answers["How do I stop a job?"].question_terms}
    assert job == {"stop": True, "job": True}


def test_normative_page_is_quoted_before_a_proposal_and_the_changelog(
    quoting: tuple[ServerSettings, DocService], embedder: Embedder
) -> None:
    """The changelog and the proposal answer "cancel several requests" too; the guide wins while it matches."""
    settings, service = quoting

    async def run(question: str) -> AnswerResult:
        return (await Answerer(settings, service, embedder).answer(ACCESS, question))[0]

    result = asyncio.run(run("Does cancelling a request need the requestId?"))
    assert not result.abstained
    assert _pages(result) == {"guide/cancellation.md"}
    # Only the proposal speaks of cancelling several requests with one notification.
    bulk = asyncio.run(run("Can one notification abort a list of several request IDs at once?"))
    assert _pages(bulk) == {"proposals/0012-bulk-abort.md"}


# ---------------------------------------------------------------------------------------------
# The MCP specification of one revision (about a minute to index)


@pytest.fixture(scope="module")
def one_revision(
    tmp_path_factory: pytest.TempPathFactory, mcp_docs: Path, model_dir: Path, embedder: Embedder
) -> tuple[ServerSettings, DocService]:
    request = BuildRequest(
        collection="mcp", source=mcp_docs / "specification" / "2025-06-18", version="2025-06-18"
    )
    data_dir = build_corpus(tmp_path_factory, model_dir, embedder, request)
    return settings_for(data_dir, model_dir), open_service(data_dir, model_dir, embedder)


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.parametrize(
    ("question", "page", "term"),
    [
        ("How do I cancel a request?", "basic/utilities/cancellation.mdx", "notifications/cancelled"),
        # The schema reference's SubscribeRequest entry competes; read block by block it no longer
        # offers a run-together "sentence" that outscored the resources page's own statements.
        ("How are resources subscribed to and updated?", "server/resources.mdx", "resources/subscribe"),
    ],
)
def test_a_section_whose_heading_names_the_subject_answers_without_abstaining(
    one_revision: tuple[ServerSettings, DocService], embedder: Embedder, question: str, page: str, term: str
) -> None:
    settings, service = one_revision

    async def run() -> AnswerResult:
        return (await Answerer(settings, service, embedder).answer(ACCESS, question))[0]

    result = asyncio.run(run())
    assert not result.abstained, result.grounding.reasons
    assert _pages(result) == {page}
    assert term in result.answer
    assert "tasks/cancel" not in result.answer
    assert not result.answer.rstrip().endswith(":")

"""Questions naming a product the collection does not document: the names found, the abstention."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from indexer.build import BuildRequest, build_collection
from indexer.embedding import Embedder
from server.answering.pipeline import Answerer
from server.answering.products import mentions, product_names, undocumented_products
from server.retrieval.service import Access
from server.settings import AnswerSettings, GroundingSettings
from tests.conftest import open_service, settings_for


@pytest.mark.parametrize(
    ("question", "names"),
    [
        ("How do I configure Flask's session cookie?", ["Flask"]),
        ("How do I define a relationship with SQLAlchemy?", ["SQLAlchemy"]),
        ("How do I cache a page with Next.js?", ["Next.js"]),
        ("How does an MCP client discover tools?", ["MCP"]),
        ("How do I configure consumer groups in Kafka?", ["Kafka"]),
        ("How does a tool declare its outputSchema?", ["outputSchema"]),
        # A question's first word, a contraction, a language and lower-case words are no products.
        ("What's the best way to parse big feeds?", []),
        ("Why are pages downloaded in English instead of my language?", []),
        ("how do i make a field optional?", []),
    ],
)
def test_product_names_are_found_and_ordinary_words_are_not(question: str, names: list[str]):
    assert product_names(question) == names


def test_mentions_match_whole_words_ignoring_case():
    assert mentions("Flask", "unlike flask, Django ...")
    assert not mentions("Flask", "a flasks rack")
    assert mentions("Next.js", "Next.js pages")


def test_a_name_is_undocumented_only_when_no_passage_and_few_chunks_mention_it():
    passages = ["Sessions store data server-side; SESSION_COOKIE_AGE sets the cookie age."]
    counts = {"Flask": 0, "Windows": 80}
    count = counts.__getitem__
    assert undocumented_products("How do I configure Flask's session cookie?", passages, count, 3) == [
        "Flask"
    ]
    # The collection talks about Windows a lot; these passages just do not repeat the word.
    assert undocumented_products("Why do sessions expire on Windows?", passages, count, 3) == []
    # A passage that names the product answers about it.
    assert undocumented_products("Flask sessions?", ["Flask keeps sessions"], count, 3) == []


ACCESS = Access(tenant="t", allowed=lambda _name: True)


def _answer(data_dir: Path, model_dir: Path, embedder: Embedder, question: str, **grounding: object):
    settings = settings_for(
        data_dir,
        model_dir,
        answer=AnswerSettings(grounding=GroundingSettings.model_validate(grounding)),
    )
    service = open_service(data_dir, model_dir, embedder)
    answerer = Answerer(settings, service, embedder)
    result, _ = asyncio.run(answerer.answer(ACCESS, question))
    return result


def test_question_about_a_product_the_docs_do_not_cover_abstains(
    lumen_data_dir: Path, model_dir: Path, embedder: Embedder
):
    # Every other word is answered by the build-cache section; Netlify appears nowhere in the docs.
    question = "Where does Netlify's build cache live and how do I move it?"
    result = _answer(lumen_data_dir, model_dir, embedder, question)
    assert result.abstained
    assert "the documentation does not cover Netlify" in result.grounding.reasons

    # The same question about the documented product is answered, and the check can be switched off.
    assert not _answer(
        lumen_data_dir, model_dir, embedder, question.replace("Netlify's", "Lumen's")
    ).abstained
    off = _answer(lumen_data_dir, model_dir, embedder, question, undocumented_product_chunks=-1)
    assert "the documentation does not cover Netlify" not in off.grounding.reasons


def test_a_product_another_version_documents_is_not_called_undocumented(
    tmp_path: Path, model_dir: Path, embedder: Embedder
):
    # v1 predates OAuth support and says so without naming it; v2 documents OAuth on many pages.
    docs = tmp_path / "docs"
    (docs / "v1").mkdir(parents=True)
    (docs / "v2").mkdir()
    (docs / "v1" / "auth.md").write_text(
        "# Auth\n\n## Authorization\n\nAuthorization is not part of the core protocol in this release. "
        "Clients and servers may negotiate their own authorization strategies.\n",
        encoding="utf-8",
    )
    for topic in ("tokens", "discovery", "registration", "scopes", "refresh", "errors"):
        (docs / "v2" / f"{topic}.md").write_text(
            f"# OAuth {topic}\n\n## {topic.title()}\n\nThe OAuth 2.1 {topic} step of authorization: "
            f"servers implement OAuth {topic} as described here, and clients follow it.\n",
            encoding="utf-8",
        )
    data_dir = tmp_path / "data"
    build_collection(
        settings_for(data_dir, model_dir),
        BuildRequest(collection="proto", source=docs, version="v2", version_from_path=r"^(v\d)/"),
        embedder=embedder,
    )
    settings = settings_for(data_dir, model_dir)
    answerer = Answerer(settings, open_service(data_dir, model_dir, embedder), embedder)
    question = "Which OAuth flow must a server support for authorization?"
    result, _ = asyncio.run(answerer.answer(ACCESS, question, version="v1"))
    # Scoped to v1, OAuth is in no retrieved passage and in no v1 chunk, but the collection documents it.
    assert "the documentation does not cover OAuth" not in result.grounding.reasons
    assert all("/v1/" in f"/{c.source}" for c in result.citations), result.citations

"""The real Django 3.2 documentation, indexed once per session: counts, titles, heading paths, retrieval."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from indexer import generations as gens
from indexer.lexical import LexicalIndex
from indexer.models import Chunk
from indexer.status import verify_collection
from server.retrieval.catalog import Catalog
from server.retrieval.hybrid import RetrievalQuery, retrieve
from tests.conftest import settings_for

# Text of the Sphinx theme's header, sidebar and footer, which must not leak into chunks.
NAVIGATION = re.compile(
    r"\b(Table of contents|You are here:|Getting help|Download:|Previous page|Next page|Search for information)\b(?!r)"
)


@pytest.fixture(scope="module")
def django_chunks(django_data_dir: Path, model_dir: Path) -> list[Chunk]:
    settings = settings_for(django_data_dir, model_dir)
    generation = gens.current_generation(settings.collections_dir, "django")
    assert generation is not None
    return list(
        LexicalIndex(
            gens.generation_dir(settings.collections_dir, "django", generation) / "tantivy"
        ).iter_chunks()
    )


def test_django_build_has_sane_counts_and_verifies(django_data_dir: Path, model_dir: Path, django_docs: Path):
    settings = settings_for(django_data_dir, model_dir)
    _, manifest = gens.require_current(settings.collections_dir, "django")
    pages = [
        p for p in django_docs.rglob("*.html") if not p.relative_to(django_docs).as_posix().startswith("faq/")
    ]
    assert manifest.document_count >= 0.95 * len(pages)
    assert 4000 <= manifest.chunk_count <= 15000
    assert not any(path.startswith("faq/") for path in manifest.documents)
    assert verify_collection(settings, "django").ok


def test_django_titles_and_heading_paths_come_from_the_pages(django_chunks):
    by_path = {c.path: c for c in django_chunks}
    assert by_path["ref/models/querysets.html"].title == "QuerySet API reference"
    assert by_path["topics/db/queries.html"].title == "Making queries"
    fields = [c for c in django_chunks if c.path == "ref/models/fields.html"]
    assert any(c.heading_path[:2] == ["Model field reference", "Field types"] for c in fields)
    assert any("DateField" in c.heading_path for c in fields)
    rooted = [c for c in django_chunks if c.heading_path and c.heading_path[0] == c.title]
    assert len(rooted) >= 0.99 * len(django_chunks)


def test_django_chunks_fit_the_model_window(django_chunks, embedder, django_data_dir, model_dir):
    """Long reference pages have long heading paths; their chunks still fit the 256-token model."""
    ceiling = settings_for(django_data_dir, model_dir).chunking.max_tokens
    sizes = embedder.count_tokens_batch([c.embedding_text() for c in django_chunks])
    over = [size for size in sizes if size > ceiling]
    # Only a heading path long enough to leave less than MIN_BODY_TOKENS of room may overflow.
    assert len(over) <= 0.002 * len(sizes), (len(over), sorted(over)[-5:])


def test_django_chunks_hold_no_navigation_text(django_chunks):
    offenders = [(c.path, m.group(0)) for c in django_chunks for m in NAVIGATION.finditer(c.text)]
    assert offenders == []
    assert not any("¶" in c.text or "¶" in " ".join(c.heading_path) for c in django_chunks)


@pytest.mark.parametrize(
    ("question", "page"),
    [
        ("select_related", "ref/models/querysets.html"),
        ("what is the difference between select_related and prefetch_related", "ref/models/querysets.html"),
        ("DEFAULT_AUTO_FIELD", "ref/settings.html"),
        ("how do I write a custom template filter", "howto/custom-template-tags.html"),
    ],
)
def test_django_retrieval_finds_the_page_that_answers(django_data_dir, model_dir, embedder, question, page):
    settings = settings_for(django_data_dir, model_dir)
    catalog = Catalog(settings, embedder.model_id, embedder.dimension)
    result = retrieve(
        catalog.view(), RetrievalQuery(question, ("django",)), embedder, settings.retrieval, depth=10
    )
    assert page in [c.chunk.path for c in result.candidates]

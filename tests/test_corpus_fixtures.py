"""The session fixtures that build shared corpora, exercised on the small written fixture corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer import generations as gens
from indexer.build import BuildRequest
from tests.conftest import FIXTURE_CORPUS, built_corpus, settings_for


@pytest.fixture(scope="session")
def written_docs() -> Path:
    return FIXTURE_CORPUS


written_data_dir = built_corpus(
    "written_data_dir",
    "written_docs",
    lambda docs: BuildRequest(collection="written", source=docs, version="2.0", exclude=["reference/*"]),
)


def test_built_corpus_indexes_the_docs_fixture_with_the_given_request(
    written_data_dir: Path, model_dir: Path
) -> None:
    settings = settings_for(written_data_dir, model_dir)
    _, manifest = gens.require_current(settings.collections_dir, "written")
    assert manifest.document_count > 0
    assert "index.md" in manifest.documents
    assert not any(path.startswith("reference/") for path in manifest.documents)
    assert (FIXTURE_CORPUS / "reference").is_dir()  # the exclusion, not the corpus, left them out

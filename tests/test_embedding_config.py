"""Each model gets the inputs it was trained on; an index built one way is never searched another way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import numpy as np
import pytest

from indexer import generations as gens
from indexer.build import BuildRequest, build_collection
from indexer.embedding import Embedder, load_embedder
from indexer.embedding.profiles import BGE_QUERY, profile_for
from indexer.errors import ModelMismatch
from indexer.settings import EmbeddingSettings
from tests.conftest import FIXTURE_CORPUS, settings_for
from tests.mcp_harness import call, call_error, stdio_session


@pytest.mark.parametrize(
    ("model", "query", "passage"),
    [
        ("BAAI/bge-small-en-v1.5", BGE_QUERY, ""),
        ("BAAI/bge-base-en-v1.5", BGE_QUERY, ""),
        ("intfloat/multilingual-e5-large", "query: ", "passage: "),
        ("nomic-ai/nomic-embed-text-v1.5", "search_query: ", "search_document: "),
        ("nomic-ai/nomic-embed-text-v1.5-Q", "search_query: ", "search_document: "),
        ("snowflake/snowflake-arctic-embed-m-long", BGE_QUERY, ""),
        ("sentence-transformers/all-MiniLM-L6-v2", "", ""),
        ("thenlper/gte-large", "", ""),
    ],
)
def test_each_model_family_gets_its_documented_prefixes(model: str, query: str, passage: str) -> None:
    profile = profile_for(model)
    assert (profile.query_prefix, profile.passage_prefix) == (query, passage)


def test_queries_and_passages_are_embedded_with_their_own_prefix(model_dir: Path, embedder: Embedder) -> None:
    asymmetric = load_embedder(
        EmbeddingSettings(model_dir=model_dir, query_prefix="query: ", passage_prefix="passage: "),
        model_dir.parent,
    )
    text = "how do I configure the cache backend"
    query = asymmetric.embed_queries([text], exact=True)[0]  # the published model: comparable rows
    passage = asymmetric.embed_passages([text])[0]
    assert np.allclose(query, embedder.embed_passages(["query: " + text])[0], atol=1e-6)
    assert np.allclose(passage, embedder.embed_passages(["passage: " + text])[0], atol=1e-6)
    assert not np.allclose(query, passage, atol=1e-3)
    assert asymmetric.config.mode == "asymmetric" and embedder.config.mode == "symmetric"


def test_manifest_records_model_backend_mode_prefixes_and_dimension(settings, model_dir: Path) -> None:
    asymmetric = load_embedder(
        EmbeddingSettings(model_dir=model_dir, query_prefix="query: ", passage_prefix="passage: "),
        model_dir.parent,
    )
    request = BuildRequest(collection="lumen", source=FIXTURE_CORPUS, version="1.0")
    build_collection(settings, request, embedder=asymmetric)
    manifest = gens.read_manifest(gens.generation_dir(settings.collections_dir, "lumen", 1))
    assert manifest.embedding_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert manifest.embedding_dimension == 384
    assert manifest.embedding_backend == "fastembed"
    assert manifest.embedding_mode == "asymmetric"
    assert (manifest.embedding_query_prefix, manifest.embedding_passage_prefix) == ("query: ", "passage: ")
    assert gens.manifest_embedding(manifest) == asymmetric.config

    # An update under the default (unprefixed) configuration must not reuse the prefixed vectors.
    symmetric = load_embedder(EmbeddingSettings(model_dir=model_dir), model_dir.parent)
    updated = build_collection(settings, request.model_copy(update={"incremental": True}), embedder=symmetric)
    assert updated.chunks_reused == 0 and updated.chunks_embedded == updated.chunks
    with pytest.raises(ModelMismatch, match="query prefix 'query: '"):
        gens.check_model(manifest, symmetric.config)


def test_manifests_written_before_the_new_fields_read_as_the_default_configuration(
    lumen_data_dir: Path, embedder: Embedder
) -> None:
    path = gens.generation_dir(lumen_data_dir / "collections", "lumen", 1) / "manifest.json"
    raw = json.loads(path.read_text())
    for key in ("embedding_backend", "embedding_mode", "embedding_query_prefix", "embedding_passage_prefix"):
        raw.pop(key)
    old = gens.Manifest.model_validate(raw)
    gens.check_model(old, embedder.config)  # no error: the default configuration built it


def _served_copy(lumen_data_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "served"
    shutil.copytree(lumen_data_dir, target)
    return target


def test_server_refuses_a_generation_built_with_other_prefixes(lumen_data_dir: Path, tmp_path: Path) -> None:
    data_dir = _served_copy(lumen_data_dir, tmp_path)

    async def main() -> tuple[str, str]:
        # The index was built unprefixed; this server would embed queries as "query: …".
        async with stdio_session(
            data_dir, DOCGATE_EMBEDDING__QUERY_PREFIX="query: ", DOCGATE_EMBEDDING__PASSAGE_PREFIX="passage: "
        ) as session:
            anywhere = await call_error(session, "search", query="configure the cache")
            named = await call_error(session, "search", query="configure the cache", collections=["lumen"])
            return anywhere, named

    for message in anyio.run(main):
        assert "collection 'lumen' cannot be served" in message
        assert "was embedded with sentence-transformers/all-MiniLM-L6-v2 via fastembed (dim 384)" in message
        assert "query prefix 'query: '" in message and "rebuild it" in message
        assert "\n" not in message.strip()


def test_server_refuses_a_generation_of_another_model(lumen_data_dir: Path, tmp_path: Path) -> None:
    data_dir = _served_copy(lumen_data_dir, tmp_path)
    path = gens.generation_dir(data_dir / "collections", "lumen", 1) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["embedding_model"] = "BAAI/bge-small-en-v1.5"
    manifest["embedding_mode"] = "asymmetric"
    manifest["embedding_query_prefix"] = BGE_QUERY
    path.write_text(json.dumps(manifest))

    async def main() -> str:
        async with stdio_session(data_dir) as session:
            return await call_error(session, "search", query="configure the cache")

    message = anyio.run(main)
    assert "was embedded with BAAI/bge-small-en-v1.5" in message
    assert "configured embedding is sentence-transformers/all-MiniLM-L6-v2" in message


def test_server_serves_a_generation_built_with_its_own_configuration(
    lumen_data_dir: Path, tmp_path: Path, model_dir: Path
) -> None:
    data_dir = _served_copy(lumen_data_dir, tmp_path)
    assert settings_for(data_dir, model_dir).embedding.query_prefix is None

    async def main() -> dict[str, object]:
        async with stdio_session(data_dir) as session:
            return await call(session, "search", query="configure the cache")

    assert anyio.run(main)["hits"]

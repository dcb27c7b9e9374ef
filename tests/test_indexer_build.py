"""Build, update, verify and drop on real Tantivy, qdrant-edge and fastembed, over the written fixture corpus."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from indexer import generations as gens
from indexer.build import BuildRequest, build_collection
from indexer.embedding import Embedder
from indexer.errors import CollectionNotFound, CorruptGeneration, ModelMismatch, SourceError
from indexer.lexical import LexicalIndex
from indexer.models import ChunkFilter
from indexer.status import collection_stats, verify_collection
from server.settings import ServerSettings


def _build(
    settings: ServerSettings,
    source: Path,
    embedder: Embedder,
    *,
    incremental: bool = False,
    name: str = "lumen",
):
    return build_collection(
        settings,
        BuildRequest(collection=name, source=source, version="1.0", incremental=incremental),
        embedder=embedder,
    )


def _lexical(settings: ServerSettings, name: str = "lumen") -> LexicalIndex:
    generation = gens.current_generation(settings.collections_dir, name)
    assert generation is not None
    return LexicalIndex(gens.generation_dir(settings.collections_dir, name, generation) / "tantivy")


def test_build_indexes_every_supported_format_and_skips_assets(settings, corpus_copy, embedder):
    summary = _build(settings, corpus_copy, embedder)
    assert summary.status == "published"
    assert summary.generation == 1
    paths = set(gens.read_manifest(gens.generation_dir(settings.collections_dir, "lumen", 1)).documents)
    assert {
        "index.md",
        "guides/themes.mdx",
        "guides/configuration.rst",
        "reference/api.html",
        "changelog.txt",
    } <= paths
    assert "legacy/faq-latin1.txt" in paths
    assert not any(p.endswith(".png") for p in paths)
    assert summary.documents_skipped >= 1
    assert summary.chunks == summary.chunks_embedded > summary.documents
    assert verify_collection(settings, "lumen").ok


def test_chunks_carry_heading_paths_titles_and_anchors(settings, lumen_data_dir, model_dir, embedder):
    from tests.conftest import settings_for

    built_with = settings_for(lumen_data_dir, model_dir)
    lexical = _lexical(built_with)
    chunks = list(lexical.iter_chunks())
    by_path: dict[str, list[Any]] = {}
    for chunk in chunks:
        by_path.setdefault(chunk.path, []).append(chunk)
    index_chunks = sorted(by_path["index.md"], key=lambda c: c.position)
    assert index_chunks[0].title == "Lumen documentation"
    assert [c.position for c in index_chunks] == list(range(len(index_chunks)))
    assert all(c.collection == "lumen" and c.version == "1.0" for c in chunks)
    assert any(len(c.heading_path) >= 2 for c in chunks), "nested headings should appear in heading paths"
    assert any(c.anchor for c in chunks), "markdown/html headings should yield anchors"
    # Code blocks stay whole: every fence that opens in a chunk closes in it.
    for chunk in chunks:
        assert chunk.text.count("```") % 2 == 0, chunk.text
    # What is embedded (title › headings line + body) fits the model's window, so no chunk has a
    # tail that only keyword search can see.
    ceiling = built_with.chunking.max_tokens
    sizes = {c.chunk_id: embedder.count_tokens(c.embedding_text()) for c in chunks}
    assert max(sizes.values()) <= ceiling, sorted(sizes.values())[-5:]
    assert all(c.tokens < sizes[c.chunk_id] for c in chunks)  # `tokens` counts the body alone


def test_bm25_finds_identifiers_and_respects_filters(settings, lumen_data_dir, model_dir):
    from tests.conftest import settings_for

    lexical = _lexical(settings_for(lumen_data_dir, model_dir))
    hits = lexical.search("build_site", ChunkFilter(collections=("lumen",)), 5)
    assert hits, "an exact identifier must be found"
    top = lexical.get(hits[0].chunk_id)
    assert top is not None and "build_site" in top.text
    assert lexical.search("build_site", ChunkFilter(collections=("other",)), 5) == []
    assert lexical.search("build_site", ChunkFilter(collections=("lumen",), version="9.9"), 5) == []
    guides = lexical.search("theme", ChunkFilter(collections=("lumen",), path_prefix="guides"), 20)
    assert guides and all(lexical.get(h.chunk_id).path.startswith("guides/") for h in guides)  # type: ignore[union-attr]


def test_update_without_changes_publishes_nothing_and_embeds_nothing(settings, corpus_copy, embedder):
    first = _build(settings, corpus_copy, embedder)
    before = embedder.texts_embedded
    again = _build(settings, corpus_copy, embedder, incremental=True)
    assert again.status == "unchanged"
    assert again.generation == first.generation
    assert embedder.texts_embedded == before


def test_update_reembeds_only_changed_documents_and_drops_deleted_ones(settings, corpus_copy, embedder):
    first = _build(settings, corpus_copy, embedder)
    old_lexical = _lexical(settings)
    old_chunks = {c.chunk_id: c for c in old_lexical.iter_chunks()}
    changed = corpus_copy / "guides" / "advanced" / "caching.md"
    changed.write_text(
        changed.read_text(encoding="utf-8")
        + "\n\n## Cache warming\n\nRun `lumen warm` to prefill the cache before deploys.\n",
        encoding="utf-8",
    )
    (corpus_copy / "changelog.txt").unlink()
    (corpus_copy / "guides" / "new-page.md").write_text(
        "# Plugins\n\nWrite a plugin with `register_plugin()`.\n", encoding="utf-8"
    )

    before = embedder.texts_embedded
    summary = _build(settings, corpus_copy, embedder, incremental=True)
    assert summary.status == "published" and summary.generation == first.generation + 1
    assert summary.documents_removed == 1
    assert summary.documents_parsed == 2  # the edited page and the new one
    new_lexical = _lexical(settings)
    new_chunks = {c.chunk_id: c for c in new_lexical.iter_chunks()}
    fresh = [c for c in new_chunks.values() if c.path in ("guides/advanced/caching.md", "guides/new-page.md")]
    unchanged_texts = {c.text_hash for c in old_chunks.values()}
    expected_embeds = len([c for c in fresh if c.text_hash not in unchanged_texts])
    assert embedder.texts_embedded - before == expected_embeds == summary.chunks_embedded
    assert expected_embeds >= 2
    assert not any(c.path == "changelog.txt" for c in new_chunks.values())
    # IDs of untouched documents survive the update unchanged.
    untouched = {cid for cid, c in old_chunks.items() if c.path == "index.md"}
    assert untouched <= set(new_chunks)
    assert verify_collection(settings, "lumen").ok


def test_previous_generation_is_kept_for_in_flight_readers_and_older_ones_collected(
    settings, corpus_copy, embedder
):
    _build(settings, corpus_copy, embedder)
    for round_ in range(2):
        (corpus_copy / f"extra-{round_}.md").write_text(
            f"# Extra {round_}\n\nText {round_}.\n", encoding="utf-8"
        )
        _build(settings, corpus_copy, embedder, incremental=True)
    assert gens.current_generation(settings.collections_dir, "lumen") == 3
    assert gens.existing_generations(settings.collections_dir, "lumen") == [2, 3]


def test_empty_or_missing_source_is_a_clear_error(settings, tmp_path, embedder):
    with pytest.raises(SourceError, match="does not exist"):
        _build(settings, tmp_path / "nope", embedder)
    empty = tmp_path / "empty"
    (empty / "img").mkdir(parents=True)
    (empty / "img" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(SourceError, match="no documentation found"):
        _build(settings, empty, embedder)
    assert gens.current_generation(settings.collections_dir, "lumen") is None


def test_corrupt_manifest_is_reported_not_served(settings, corpus_copy, embedder):
    _build(settings, corpus_copy, embedder)
    manifest = gens.generation_dir(settings.collections_dir, "lumen", 1) / "manifest.json"
    manifest.write_text('{"format_version": 1, "collection": ', encoding="utf-8")
    with pytest.raises(CorruptGeneration, match=r"manifest\.json is unreadable"):
        collection_stats(settings, "lumen", sizes=False)


def test_verify_detects_vector_and_bm25_disagreement(settings, corpus_copy, embedder):
    _build(settings, corpus_copy, embedder)
    gen_dir = gens.generation_dir(settings.collections_dir, "lumen", 1)
    shutil.rmtree(gen_dir / "vectors")
    report = verify_collection(settings, "lumen")
    assert not report.ok
    assert "vector store" in report.problems[0]


def test_model_mismatch_is_refused(settings, corpus_copy, embedder):
    _build(settings, corpus_copy, embedder)
    manifest = gens.read_manifest(gens.generation_dir(settings.collections_dir, "lumen", 1))
    with pytest.raises(ModelMismatch, match="rebuild it"):
        gens.check_model(manifest, "BAAI/bge-small-en-v1.5", 384)


def test_unknown_collection_and_drop(settings, corpus_copy, embedder):
    with pytest.raises(CollectionNotFound):
        collection_stats(settings, "missing", sizes=False)
    _build(settings, corpus_copy, embedder)
    gens.drop_collection(settings.collections_dir, "lumen")
    assert gens.list_collections(settings.collections_dir) == []
    with pytest.raises(CollectionNotFound):
        gens.drop_collection(settings.collections_dir, "lumen")


def test_qdrant_client_backend_builds_searches_and_switches_alias(
    isolated_env, model_dir, corpus_copy, embedder
):
    from qdrant_client import QdrantClient

    from indexer.stores import open_vectors
    from indexer.vectors import qdrant_client_for
    from tests.conftest import settings_for

    settings = settings_for(isolated_env, model_dir, vectors={"url": ":memory:"})
    first = _build(settings, corpus_copy, embedder)
    (corpus_copy / "more.md").write_text("# More\n\nAnother page about deploy targets.\n", encoding="utf-8")
    second = _build(settings, corpus_copy, embedder, incremental=True)
    assert second.generation == first.generation + 1
    client: QdrantClient = qdrant_client_for(settings.vectors)
    aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
    assert aliases["lumen"] == f"lumen__gen{second.generation}"
    manifest = gens.read_manifest(gens.generation_dir(settings.collections_dir, "lumen", second.generation))
    assert manifest.vector_backend.kind == "qdrant"
    store = open_vectors(
        settings, manifest, gens.generation_dir(settings.collections_dir, "lumen", second.generation)
    )
    query = embedder.embed(["how do I install lumen"])
    hits = store.search_batch(query, ChunkFilter(collections=("lumen",)), 3)[0]
    assert len(hits) == 3 and hits[0].score > 0.2
    assert store.count() == manifest.chunk_count
    assert verify_collection(settings, "lumen").ok
    assert (
        json.loads(manifest.model_dump_json())["vector_backend"]["qdrant_collection"]
        == f"lumen__gen{second.generation}"
    )


def test_version_labels_can_come_from_document_paths(settings, tmp_path, embedder):
    source = tmp_path / "spec"
    for version, text in (
        ("v1", "Batching is supported: send an array of requests."),
        ("v2", "Batching was removed."),
    ):
        folder = source / "specification" / version
        folder.mkdir(parents=True)
        (folder / "transports.md").write_text(f"# Transports\n\n{text}\n", encoding="utf-8")
    (source / "intro.md").write_text("# Introduction\n\nWhat the protocol is for.\n", encoding="utf-8")
    build_collection(
        settings,
        BuildRequest(
            collection="spec", source=source, version="docs", version_from_path=r"^specification/([^/]+)/"
        ),
        embedder=embedder,
    )
    manifest = gens.read_manifest(gens.generation_dir(settings.collections_dir, "spec", 1))
    assert manifest.versions == ["docs", "v1", "v2"]
    lexical = _lexical(settings, "spec")
    hits = lexical.search("batching", ChunkFilter(collections=("spec",), version="v2"), 5)
    assert [lexical.get(h.chunk_id).path for h in hits] == ["specification/v2/transports.md"]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="needs a capture group"):
        BuildRequest(collection="spec", source=source, version_from_path="^specification/")

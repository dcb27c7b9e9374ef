"""Read-only views of a published collection: stats for people and monitors, verify for operators."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from indexer import generations as gens
from indexer.errors import CorruptGeneration
from indexer.lexical import LexicalIndex
from indexer.settings import IndexerSettings
from indexer.stores import open_vectors


def collection_stats(settings: IndexerSettings, name: str, *, sizes: bool) -> dict[str, Any]:
    generation, manifest = gens.require_current(settings.collections_dir, name)
    gen_dir = gens.generation_dir(settings.collections_dir, name, generation)
    row: dict[str, Any] = {
        "collection": name,
        "version": manifest.version,
        "generation": generation,
        "documents": manifest.document_count,
        "chunks": manifest.chunk_count,
        "model": manifest.embedding_model,
        "dimension": manifest.embedding_dimension,
        "vector_backend": manifest.vector_backend.kind,
        "source": manifest.source,
        "version_dates": version_dates(manifest),
        "created_at": manifest.created_at.isoformat(),
        "build_seconds": manifest.build_seconds,
    }
    if sizes:
        # Measured from the files on disk (sum of their sizes), never estimated from counts.
        row["bm25_bytes"] = gens.directory_size(gen_dir / "tantivy")
        row["vector_bytes"] = (
            gens.directory_size(gen_dir / "vectors") if (gen_dir / "vectors").is_dir() else None
        )
        row["generation_bytes"] = gens.directory_size(gen_dir)
        # Only finished generations (the manifest is written last): one a build is still writing,
        # or one a crash left behind, is not an index anybody can serve.
        finished = [
            number
            for number in gens.existing_generations(settings.collections_dir, name)
            if (gens.generation_dir(settings.collections_dir, name, number) / "manifest.json").is_file()
        ]
        row["generations_on_disk"] = finished
        row["disk_bytes"] = sum(
            gens.directory_size(gens.generation_dir(settings.collections_dir, name, n)) for n in finished
        )
    return row


def version_dates(manifest: gens.Manifest) -> dict[str, str | None]:
    """Every version label with the day its newest document changed (None: built before dates were kept)."""
    dates = manifest.version_dates
    return {
        label: dates[label].isoformat() if label in dates else None
        for label in gens.manifest_versions(manifest)
    }


class VerifyReport(BaseModel):
    collection: str
    generation: int
    ok: bool
    chunks: int
    problems: list[str]


def verify_collection(settings: IndexerSettings, name: str) -> VerifyReport:
    """Manifest readable and consistent; Tantivy and vector stores hold exactly the same chunk IDs."""
    generation, manifest = gens.require_current(settings.collections_dir, name)
    gen_dir = gens.generation_dir(settings.collections_dir, name, generation)
    problems: list[str] = []
    if manifest.collection != name or manifest.generation != generation:
        problems.append(f"manifest names {manifest.collection}/gen-{manifest.generation}")
    if sum(d.chunks for d in manifest.documents.values()) != manifest.chunk_count:
        problems.append("per-document chunk counts do not add up to chunk_count")
    if len(manifest.documents) != manifest.document_count:
        problems.append("document_count does not match the documents listed")
    try:
        lexical_ids = LexicalIndex(gen_dir / "tantivy").chunk_ids()
        store = open_vectors(settings, manifest, gen_dir)
        try:
            vector_ids = store.chunk_ids()
        finally:
            store.close()
    except CorruptGeneration as error:
        problems.append(str(error))
        return VerifyReport(collection=name, generation=generation, ok=False, chunks=0, problems=problems)
    if len(lexical_ids) != manifest.chunk_count:
        problems.append(f"Tantivy holds {len(lexical_ids)} chunks, manifest says {manifest.chunk_count}")
    if lexical_ids != vector_ids:
        only_lexical = len(lexical_ids - vector_ids)
        only_vectors = len(vector_ids - lexical_ids)
        problems.append(f"ID sets differ: {only_lexical} only in Tantivy, {only_vectors} only in vectors")
    return VerifyReport(
        collection=name, generation=generation, ok=not problems, chunks=len(lexical_ids), problems=problems
    )

"""A generation's vector store: the embedded qdrant-edge shard or a collection on a Qdrant server.

Both the build (to create and reopen) and the server's catalog (to read) go through here, so the
catalog never needs the build orchestrator.
"""

from __future__ import annotations

from pathlib import Path

from indexer import generations as gens
from indexer.errors import CorruptGeneration
from indexer.settings import IndexerSettings
from indexer.vectors import (
    EdgeVectors,
    QdrantVectors,
    VectorStore,
    qdrant_client_for,
    qdrant_collection_name,
)


def open_vectors(settings: IndexerSettings, manifest: gens.Manifest, gen_dir: Path) -> VectorStore:
    if manifest.vector_backend.kind == "qdrant":
        if settings.vectors.url is None:
            raise CorruptGeneration(
                f"collection {manifest.collection!r} lives on a Qdrant server; set vectors.url to reach it"
            )
        name = manifest.vector_backend.qdrant_collection or qdrant_collection_name(
            manifest.collection, manifest.generation
        )
        return QdrantVectors.open(qdrant_client_for(settings.vectors), name, manifest.embedding_dimension)
    return EdgeVectors.open(gen_dir / "vectors", manifest.embedding_dimension)


def create_vectors(
    settings: IndexerSettings, collection: str, generation: int, gen_dir: Path, dimension: int
) -> tuple[VectorStore, gens.VectorBackend]:
    if settings.vectors.url is not None:
        name = qdrant_collection_name(collection, generation)
        store = QdrantVectors.create(qdrant_client_for(settings.vectors), name, dimension, settings.vectors)
        return store, gens.VectorBackend(kind="qdrant", qdrant_collection=name)
    return EdgeVectors.create(gen_dir / "vectors", dimension, settings.vectors), gens.VectorBackend(
        kind="edge"
    )

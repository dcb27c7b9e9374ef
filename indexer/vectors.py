"""Dense vectors behind one small protocol, two engines.

- `EdgeVectors`: qdrant-edge, Qdrant's in-process engine (HNSW + WAL) in the generation
  directory. The embedded default: ~1 ms queries and a 0.1 s reopen, no server to run.
- `QdrantVectors`: qdrant-client against a Qdrant server or cluster (`vectors.url`). Each
  generation is a collection `<name>__gen<n>`; publishing moves the alias `<name>` to it.
  `QdrantClient(":memory:")` speaks the same API, which is how this path is tested.

Point IDs are the chunk IDs read as UUIDs (both are 128 bits), so no mapping table is needed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import qdrant_edge as edge

from indexer.errors import CorruptGeneration
from indexer.lexical import path_prefixes
from indexer.models import Chunk, ChunkFilter
from indexer.settings import VectorSettings

FILTER_FIELDS = ("collection", "version", "path_prefix", "has_code")


@dataclass(frozen=True)
class VectorHit:
    chunk_id: str
    score: float


def point_id(chunk_id: str) -> str:
    return str(uuid.UUID(hex=chunk_id))


def chunk_id_of(point: Any) -> str:
    """Inverse of `point_id`: engines hand IDs back as UUID objects or strings."""
    return point.hex if isinstance(point, uuid.UUID) else uuid.UUID(str(point)).hex


def chunk_payload(chunk: Chunk) -> dict[str, Any]:
    return {
        "chunk_id": chunk.chunk_id,
        "collection": chunk.collection,
        "version": chunk.version,
        "path_prefix": path_prefixes(chunk.path),
        "has_code": "1" if chunk.has_code else "0",
    }


class VectorStore(Protocol):
    dimension: int

    def upsert(self, chunks: Sequence[Chunk], vectors: npt.NDArray[np.float32]) -> None: ...
    def search_batch(
        self, queries: npt.NDArray[np.float32], flt: ChunkFilter, limit: int
    ) -> list[list[VectorHit]]: ...
    def get_vectors(self, chunk_ids: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]: ...
    def chunk_ids(self) -> set[str]: ...
    def count(self) -> int: ...
    def finish(self) -> None: ...
    def close(self) -> None: ...


def _edge_filter(flt: ChunkFilter) -> edge.Filter | None:
    must: list[Any] = []
    if flt.collections:
        must.append(edge.FieldCondition(key="collection", match=edge.MatchAny(list(flt.collections))))
    if flt.version is not None:
        must.append(edge.FieldCondition(key="version", match=edge.MatchValue(flt.version)))
    if flt.versions:
        must.append(edge.FieldCondition(key="version", match=edge.MatchAny(list(flt.versions))))
    if flt.code_only:
        must.append(edge.FieldCondition(key="has_code", match=edge.MatchValue("1")))
    if flt.path_prefix:
        must.append(edge.FieldCondition(key="path_prefix", match=edge.MatchValue(flt.path_prefix.strip("/"))))
    return edge.Filter(must=must) if must else None


class EdgeVectors:
    """qdrant-edge shard in a generation directory."""

    def __init__(self, shard: edge.EdgeShard, dimension: int) -> None:
        self._shard = shard
        self.dimension = dimension

    @classmethod
    def create(cls, directory: Path, dimension: int, settings: VectorSettings) -> EdgeVectors:
        config = edge.EdgeConfig(
            vectors=edge.EdgeVectorParams(size=dimension, distance=edge.Distance.Cosine),
            hnsw_config=edge.HnswIndexConfig(
                m=settings.hnsw_m, ef_construct=settings.hnsw_ef_construct, full_scan_threshold=10_000
            ),
            # A generation is written once and then only read, by any number of processes (server
            # replicas, `update` reusing vectors). A WAL would add nothing after the final flush and
            # its lock would let only one process open the shard.
            wal_enabled=False,
        )
        shard = edge.EdgeShard.create(str(directory), config)
        for name in FILTER_FIELDS:
            shard.update(edge.UpdateOperation.create_field_index(name, edge.PayloadSchemaType.Keyword))
        return cls(shard, dimension)

    @classmethod
    def open(cls, directory: Path, dimension: int) -> EdgeVectors:
        if not directory.is_dir():
            raise CorruptGeneration(f"vector store missing at {directory}")
        try:
            shard = edge.EdgeShard.load(str(directory))
        except Exception as error:  # the binding raises plain exceptions for unreadable shards
            raise CorruptGeneration(f"vector store at {directory} will not open: {error}") from error
        return cls(shard, dimension)

    def upsert(self, chunks: Sequence[Chunk], vectors: npt.NDArray[np.float32]) -> None:
        points = [
            edge.Point(point_id(c.chunk_id), v.astype(float).tolist(), chunk_payload(c))
            for c, v in zip(chunks, vectors, strict=True)
        ]
        if points:
            self._shard.update(edge.UpdateOperation.upsert_points(points))

    def search_batch(
        self, queries: npt.NDArray[np.float32], flt: ChunkFilter, limit: int
    ) -> list[list[VectorHit]]:
        if len(queries) == 0:
            return []
        condition = _edge_filter(flt)
        requests = [
            edge.QueryRequest(
                limit=limit,
                query=edge.Query.Nearest(q.astype(float).tolist()),
                filter=condition,
                with_payload=False,
            )
            for q in queries
        ]
        results = self._shard.query_batch(edge.QueryBatchRequest(requests))
        return [[VectorHit(chunk_id_of(p.id), float(p.score)) for p in points] for points in results]

    def get_vectors(self, chunk_ids: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]:
        out: dict[str, npt.NDArray[np.float32]] = {}
        for start in range(0, len(chunk_ids), 512):
            batch = chunk_ids[start : start + 512]
            records = self._shard.retrieve([point_id(c) for c in batch], with_payload=True, with_vector=True)
            for record in records:
                vector: Any = record.vector
                if isinstance(vector, dict):
                    vector = vector.get("")
                out[str((record.payload or {})["chunk_id"])] = np.asarray(vector, dtype=np.float32)
        return out

    def chunk_ids(self) -> set[str]:
        ids: set[str] = set()
        offset: Any = None
        while True:
            records, offset = self._shard.scroll(
                edge.ScrollRequest(offset=offset, limit=2048, with_payload=True, with_vector=False)
            )
            ids.update(str((r.payload or {})["chunk_id"]) for r in records)
            if offset is None:
                return ids

    def count(self) -> int:
        return int(self._shard.count(edge.CountRequest(exact=True)))

    def finish(self) -> None:
        """Build the HNSW graph and make everything durable before the generation is published."""
        self._shard.flush()
        self._shard.optimize()
        self._shard.flush()

    def close(self) -> None:
        self._shard.close()


class QdrantVectors:
    """One generation as a collection on a Qdrant server (or `:memory:` for tests)."""

    def __init__(self, client: Any, collection_name: str, dimension: int) -> None:
        self._client = client
        self.collection_name = collection_name
        self.dimension = dimension

    @classmethod
    def create(
        cls, client: Any, collection_name: str, dimension: int, settings: VectorSettings
    ) -> QdrantVectors:
        from qdrant_client import models

        if client.collection_exists(collection_name):
            # A leftover of a crashed build with the same generation number: never published, safe to drop.
            client.delete_collection(collection_name)
        client.create_collection(
            collection_name,
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
            hnsw_config=models.HnswConfigDiff(m=settings.hnsw_m, ef_construct=settings.hnsw_ef_construct),
        )
        if settings.url != ":memory:":  # the in-process engine has no payload indexes (and warns)
            for name in FILTER_FIELDS:
                client.create_payload_index(collection_name, name, models.PayloadSchemaType.KEYWORD)
        return cls(client, collection_name, dimension)

    @classmethod
    def open(cls, client: Any, collection_name: str, dimension: int) -> QdrantVectors:
        if not client.collection_exists(collection_name):
            raise CorruptGeneration(f"Qdrant collection {collection_name} does not exist")
        return cls(client, collection_name, dimension)

    def _filter(self, flt: ChunkFilter) -> Any:
        from qdrant_client import models

        must: list[Any] = []
        if flt.collections:
            must.append(
                models.FieldCondition(key="collection", match=models.MatchAny(any=list(flt.collections)))
            )
        if flt.version is not None:
            must.append(models.FieldCondition(key="version", match=models.MatchValue(value=flt.version)))
        if flt.versions:
            must.append(models.FieldCondition(key="version", match=models.MatchAny(any=list(flt.versions))))
        if flt.code_only:
            must.append(models.FieldCondition(key="has_code", match=models.MatchValue(value="1")))
        if flt.path_prefix:
            must.append(
                models.FieldCondition(
                    key="path_prefix", match=models.MatchValue(value=flt.path_prefix.strip("/"))
                )
            )
        return models.Filter(must=must) if must else None

    def upsert(self, chunks: Sequence[Chunk], vectors: npt.NDArray[np.float32]) -> None:
        from qdrant_client import models

        points = [
            models.PointStruct(
                id=point_id(c.chunk_id), vector=v.astype(float).tolist(), payload=chunk_payload(c)
            )
            for c, v in zip(chunks, vectors, strict=True)
        ]
        if points:
            self._client.upsert(self.collection_name, points=points, wait=True)

    def search_batch(
        self, queries: npt.NDArray[np.float32], flt: ChunkFilter, limit: int
    ) -> list[list[VectorHit]]:
        from qdrant_client import models

        if len(queries) == 0:
            return []
        condition = self._filter(flt)
        requests = [
            models.QueryRequest(
                query=q.astype(float).tolist(), filter=condition, limit=limit, with_payload=False
            )
            for q in queries
        ]
        responses = self._client.query_batch_points(self.collection_name, requests=requests)
        return [
            [VectorHit(chunk_id_of(p.id), float(p.score)) for p in response.points] for response in responses
        ]

    def get_vectors(self, chunk_ids: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]:
        out: dict[str, npt.NDArray[np.float32]] = {}
        for start in range(0, len(chunk_ids), 512):
            batch = [point_id(c) for c in chunk_ids[start : start + 512]]
            for record in self._client.retrieve(
                self.collection_name, ids=batch, with_payload=True, with_vectors=True
            ):
                out[str(record.payload["chunk_id"])] = np.asarray(record.vector, dtype=np.float32)
        return out

    def chunk_ids(self) -> set[str]:
        ids: set[str] = set()
        offset = None
        while True:
            records, offset = self._client.scroll(
                self.collection_name, limit=2048, offset=offset, with_payload=["chunk_id"], with_vectors=False
            )
            ids.update(str(r.payload["chunk_id"]) for r in records)
            if offset is None:
                return ids

    def count(self) -> int:
        return int(self._client.count(self.collection_name, exact=True).count)

    def finish(self) -> None:
        """Qdrant indexes in the background; upserts used wait=True so points are durable already."""

    def close(self) -> None:
        """The client is shared by every generation of the process; it outlives one store."""


def qdrant_collection_name(collection: str, generation: int) -> str:
    return f"{collection}__gen{generation}"


_clients: dict[str, Any] = {}


def qdrant_client_for(settings: VectorSettings) -> Any:
    """One client per URL per process (`:memory:` included, so tests share one in-memory server)."""
    import os

    from qdrant_client import QdrantClient

    assert settings.url is not None
    client = _clients.get(settings.url)
    if client is None:
        if settings.url == ":memory:":
            client = QdrantClient(":memory:")
        else:
            client = QdrantClient(
                url=settings.url, api_key=os.environ.get(settings.api_key_env) or None, timeout=30
            )
        _clients[settings.url] = client
    return client


def switch_alias(client: Any, alias: str, collection_name: str) -> None:
    """Point `alias` at `collection_name` in one atomic alias operation."""
    from qdrant_client import models

    actions: list[Any] = []
    existing = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
    if alias in existing:
        actions.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
    actions.append(
        models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=collection_name, alias_name=alias)
        )
    )
    client.update_collection_aliases(change_aliases_operations=actions)

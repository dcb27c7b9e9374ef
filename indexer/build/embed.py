"""Embed: vectors for the new generation, copied from the previous one where the text is unchanged."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from indexer.build.request import Progress
from indexer.build.reuse import Previous
from indexer.embedding import Embedder
from indexer.models import Chunk
from indexer.vectors import VectorStore

EMBED_BATCH = 256


def write_vectors(
    chunks: Sequence[Chunk],
    store: VectorStore,
    previous: Previous | None,
    embedder: Embedder,
    progress: Progress,
) -> tuple[int, int, float]:
    """Copy reusable vectors from the previous generation (same text hash), embed the rest."""
    reused_vectors: dict[str, npt.NDArray[np.float32]] = {}
    if previous is not None and previous.lexical is not None and previous.vectors is not None:
        old_by_hash: dict[str, str] = {}
        wanted = {c.text_hash for c in chunks}
        for old in previous.lexical.iter_chunks():
            if old.text_hash in wanted:
                old_by_hash.setdefault(old.text_hash, old.chunk_id)
        old_vectors = previous.vectors.get_vectors(list(old_by_hash.values()))
        for digest, old_id in old_by_hash.items():
            if old_id in old_vectors:
                reused_vectors[digest] = old_vectors[old_id]

    # `text_hash` covers the embedded text (title + heading path + body), so a reused vector is
    # exactly the one the model would produce again.
    to_embed = [c for c in chunks if c.text_hash not in reused_vectors]
    progress.stage("embedding chunks", len(chunks))
    reused_count = len(chunks) - len(to_embed)
    if reused_count:
        reused_chunks = [c for c in chunks if c.text_hash in reused_vectors]
        for start in range(0, len(reused_chunks), EMBED_BATCH):
            batch = reused_chunks[start : start + EMBED_BATCH]
            store.upsert(batch, np.stack([reused_vectors[c.text_hash] for c in batch]))
        progress.advance(reused_count)
    embed_seconds = 0.0
    for start in range(0, len(to_embed), EMBED_BATCH):
        batch = to_embed[start : start + EMBED_BATCH]
        t0 = time.perf_counter()
        vectors = embedder.embed_passages([c.embedding_text() for c in batch])
        embed_seconds += time.perf_counter() - t0
        store.upsert(batch, vectors)
        progress.advance(len(batch))
    return len(to_embed), reused_count, embed_seconds

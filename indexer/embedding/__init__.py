"""Embeddings behind one seam, `Embedder`: fastembed in process (offline default) or a remote API.

base.py      the `Embedder` seam: query/passage embedding, token counting, the config a manifest records
profiles.py  which query/passage prefixes each known model expects
offline.py   the bundled model, assembled from installed packages
local.py     fastembed in process
remote.py    OpenAI-compatible `/v1/embeddings` over HTTP
"""

from __future__ import annotations

import threading
from pathlib import Path

from indexer.embedding.base import Embedder, EmbeddingConfig, InputKind, Vectors
from indexer.embedding.offline import assemble_offline_model
from indexer.settings import EmbeddingSettings

__all__ = [
    "Embedder",
    "EmbeddingConfig",
    "InputKind",
    "Vectors",
    "assemble_offline_model",
    "load_embedder",
    "shared_embedder",
]


def load_embedder(settings: EmbeddingSettings, models_dir: Path) -> Embedder:
    """A fresh embedder for `settings` (the backend `embedding.provider` names)."""
    if settings.provider == "openai":
        from indexer.embedding.remote import RemoteEmbedder

        return RemoteEmbedder(settings)
    from indexer.embedding.local import FastembedEmbedder

    return FastembedEmbedder(settings, models_dir)


_shared: dict[tuple[str, Path], Embedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(settings: EmbeddingSettings, models_dir: Path) -> Embedder:
    """One Embedder per configuration per process: loading a model costs ~0.3 s and memory."""
    key = (settings.model_dump_json(), models_dir)
    with _shared_lock:
        embedder = _shared.get(key)
        if embedder is None:
            embedder = load_embedder(settings, models_dir)
            _shared[key] = embedder
        return embedder

"""In-process embeddings with fastembed, offline by default.

The default model ships with the install (`offline.py`). Any other fastembed model name is a
settings switch; fastembed downloads it when a network exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from indexer.embedding.base import Embedder, InputKind, Vectors
from indexer.embedding.offline import assemble_offline_model
from indexer.embedding.profiles import profile_for
from indexer.errors import EmbeddingModelUnavailable
from indexer.settings import DEFAULT_MODEL, EmbeddingSettings

log = structlog.get_logger()


class FastembedEmbedder(Embedder):
    """One fastembed `TextEmbedding`; thread-safe for concurrent calls."""

    def __init__(self, settings: EmbeddingSettings, models_dir: Path) -> None:
        from fastembed import TextEmbedding  # heavy import: only when a model is really needed

        self.settings = settings
        self.model_id = settings.model
        kwargs: dict[str, Any] = {"model_name": settings.model, "threads": settings.threads}
        model_dir = settings.model_dir
        if model_dir is None and settings.model == DEFAULT_MODEL:
            model_dir = assemble_offline_model(models_dir, settings.max_length)
        if model_dir is not None:
            if not (Path(model_dir) / "model.onnx").is_file():
                raise EmbeddingModelUnavailable(f"embedding.model_dir {model_dir} has no model.onnx")
            kwargs["specific_model_path"] = str(model_dir)
        else:
            kwargs["cache_dir"] = str(models_dir / "fastembed")
        try:
            self._model = TextEmbedding(**kwargs)
        except Exception as error:  # fastembed raises bare exceptions on download/format problems
            raise EmbeddingModelUnavailable(
                f"cannot load embedding model {settings.model!r}: {error}".splitlines()[0]
            ) from error
        inner: Any = self._model.model
        self.dimension = int(inner.model_description.dim)
        profile = profile_for(settings.model)
        super().__init__(
            inner.tokenizer,
            query_prefix=profile.query_prefix if settings.query_prefix is None else settings.query_prefix,
            passage_prefix=profile.passage_prefix
            if settings.passage_prefix is None
            else settings.passage_prefix,
        )

    def _embed_texts(self, texts: Sequence[str], kind: InputKind) -> Vectors:
        # Batches are padded to their longest text: embedding in length order cuts the padding the
        # model computes on from about a third of all tokens to a few percent. Rows go back in order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        ordered = [texts[i] for i in order]
        # Prefixes are applied by the seam; fastembed's query/passage paths are the model's own hook.
        embed = self._model.query_embed if kind == "query" else self._model.passage_embed
        sorted_rows = list(embed(ordered, batch_size=self.settings.batch_size))
        rows: list[Any] = [None] * len(texts)
        for position, index in enumerate(order):
            rows[index] = sorted_rows[position]
        return np.asarray(rows, dtype=np.float32)

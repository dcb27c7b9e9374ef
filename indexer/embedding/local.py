"""In-process embeddings with fastembed, offline by default.

The default model ships with the install (`offline.py`). Any other fastembed model name is a
settings switch; fastembed downloads it when a network exists.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from indexer.embedding.base import Embedder, InputKind, Vectors
from indexer.embedding.offline import assemble_offline_model
from indexer.embedding.profiles import profile_for
from indexer.embedding.query_int8 import int8_query_model
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
        if settings.providers:
            kwargs["providers"] = checked_providers(settings.providers)
        model_dir = settings.model_dir
        if model_dir is None and settings.model == DEFAULT_MODEL:
            model_dir = assemble_offline_model(models_dir, settings.max_length)
        if model_dir is not None:
            if not (Path(model_dir) / "model.onnx").is_file():
                raise EmbeddingModelUnavailable(f"embedding.model_dir {model_dir} has no model.onnx")
            kwargs["specific_model_path"] = str(model_dir)
        else:
            kwargs["cache_dir"] = str(models_dir / "fastembed")
        self._model = _load(TextEmbedding, settings.model, kwargs)
        # Queries arrive one at a time from many request threads. A second session of the same model
        # with one thread runs each query on the calling thread: ONNX Runtime's pool of intra-op
        # threads only pays off for batches, and with one query it spins waiting for work, which
        # measured here as twice the CPU per query (9.2 ms against 4.7 ms) for the same latency under
        # concurrent load. Built on first use: the indexer never needs it.
        self._query_kwargs = {**kwargs, "threads": 1}
        self._models_dir = models_dir
        self._model_dir = Path(model_dir) if model_dir is not None else None
        # One-thread sessions by model directory: "query" runs the int8 copy where there is one,
        # "exact_query" (and "query" without a copy) the model as published.
        self._query_sessions: dict[str, Any] = {}
        self._session_of_kind: dict[InputKind, Any] = {}
        self._int8_in_use = False
        self._query_lock = threading.Lock()
        inner: Any = self._model.model
        self.dimension = int(inner.model_description.dim)
        profile = profile_for(settings.model)
        super().__init__(
            inner.tokenizer,
            query_prefix=profile.query_prefix if settings.query_prefix is None else settings.query_prefix,
            passage_prefix=profile.passage_prefix
            if settings.passage_prefix is None
            else settings.passage_prefix,
            query_cache_size=settings.query_cache_size,
        )

    def warm_queries(self) -> None:
        self._query_session("query")
        if self.approximates_queries:  # a second, published-model session for exact queries
            self._query_session("exact_query")

    @property
    def approximates_queries(self) -> bool:
        self._query_session("query")
        return self._int8_in_use

    def _query_session(self, kind: InputKind) -> Any:
        ready = self._session_of_kind.get(kind)
        if ready is not None:  # the common case: no lock on the hot path
            return ready
        with self._query_lock:
            if kind not in self._session_of_kind:
                int8_dir = self._int8_query_dir() if kind == "query" else None
                session = self._load_query_session(int8_dir) if int8_dir is not None else None
                self._int8_in_use = self._int8_in_use or session is not None
                self._session_of_kind[kind] = session or self._load_query_session(None)
            return self._session_of_kind[kind]

    def _load_query_session(self, int8_dir: Path | None) -> Any:
        """A one-thread session of the published model, or of the int8 copy in `int8_dir` (None
        when the copy will not load: the published model serves instead, with a warning)."""
        from fastembed import TextEmbedding

        kwargs = {**self._query_kwargs}
        if int8_dir is not None:
            kwargs["specific_model_path"] = str(int8_dir)
        key = str(kwargs.get("specific_model_path") or kwargs.get("cache_dir"))
        session = self._query_sessions.get(key)
        if session is None:
            try:
                session = _load(TextEmbedding, self.settings.model, kwargs)
            except EmbeddingModelUnavailable as error:
                if int8_dir is None:
                    raise
                self._not_quantized(f"the copy in {int8_dir} does not load: {error}")
                return None
            self._query_sessions[key] = session
        return session

    def _not_quantized(self, reason: str) -> None:
        log.warning("query_model_not_quantized", model=self.model_id, reason=reason[:300])

    def _int8_query_dir(self) -> Path | None:
        """The int8 query copy when `embedding.query_precision` asks for it and it can be made.

        Only on the CPU (GPU kernels gain nothing from it) and only for a model whose files are
        known here (the bundled one or `model_dir`); any other keeps the model as published, and
        says so."""
        if self.settings.query_precision != "int8":
            return None
        if self.settings.providers and self.settings.providers != ["CPUExecutionProvider"]:
            self._not_quantized(
                "embedding.providers is not the CPU alone: queries run the model as published"
            )
            return None
        if self._model_dir is None:
            self._not_quantized("only the bundled model or one in embedding.model_dir can be copied")
            return None
        try:
            return int8_query_model(self._model_dir, self._models_dir)
        except ModuleNotFoundError as error:
            self._not_quantized(f"{error.name} is not installed: pip install 'docgate[int8]'")
            return None
        except Exception as error:  # the quantiser raises anything for graphs it cannot convert
            self._not_quantized(str(error))
            return None

    def _embed_texts(self, texts: Sequence[str], kind: InputKind) -> Vectors:
        if kind != "passage":
            session = self._query_session(kind)
            # batch_size=1: no padding, and the same arithmetic whatever else is being searched.
            return np.asarray(list(session.query_embed(list(texts), batch_size=1)), dtype=np.float32)
        # Batches are padded to their longest text: embedding in length order cuts the padding the
        # model computes on from about a third of all tokens to a few percent. Rows go back in order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        ordered = [texts[i] for i in order]
        # Prefixes are applied by the seam; fastembed's query/passage paths are the model's own hook.
        sorted_rows = list(self._model.passage_embed(ordered, batch_size=self.settings.batch_size))
        rows: list[Any] = [None] * len(texts)
        for position, index in enumerate(order):
            rows[index] = sorted_rows[position]
        return np.asarray(rows, dtype=np.float32)


def checked_providers(wanted: list[str]) -> list[str]:
    """`embedding.providers` if this ONNX Runtime has every one of them, else a clear error.

    ONNX Runtime itself would only warn and fall back to the CPU, so a GPU build that silently ran
    on the CPU for hours would go unnoticed."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    missing = [name for name in wanted if name not in available]
    if missing:
        advice = (
            "install the GPU runtime: pip install 'docgate[gpu]', then replace the CPU runtime "
            "(pip uninstall -y onnxruntime && pip install --force-reinstall onnxruntime-gpu)"
            if any("CUDA" in name or "TensorRT" in name for name in missing)
            else "remove them from embedding.providers"
        )
        raise EmbeddingModelUnavailable(
            f"embedding.providers asks for {', '.join(missing)}, which this ONNX Runtime does not have "
            f"(available: {', '.join(available)}); {advice}"
        )
    return wanted


def _load(factory: Any, model: str, kwargs: dict[str, Any]) -> Any:
    try:
        return factory(**kwargs)
    except Exception as error:  # fastembed raises bare exceptions on download/format problems
        raise EmbeddingModelUnavailable(
            f"cannot load embedding model {model!r}: {error}".splitlines()[0]
        ) from error

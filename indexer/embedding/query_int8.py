"""An int8 copy of an ONNX embedding model for one-at-a-time queries on the CPU.

ONNX Runtime runs a model whose weights are stored as int8 (the bundled one) by folding them back
to float32 when it loads: every query then pays float32 matrix products. Dynamically quantised
(`MatMulInteger`: int8 weights per output channel, activations quantised per call), the same
model embeds a query in about 0.7x the CPU time (an AVX2 CPU without VNNI), and its vectors stay within
a cosine of 0.99 of the float ones (`scripts/bench_query_int8.py`). Not the default: a cosine of
0.996 still moves first hits whose margin is that thin (Scrapy FAQ MRR@10 0.779 -> 0.743, while
Django gained 0.011; docs/benchmarks.md). Documents are always embedded by the model as published,
so an index never depends on this setting.

The copy is made once per model, keyed by a digest of its files, this recipe and the ONNX Runtime
version (any of them changed makes a new copy), beside the model's directory
(so every data dir served from one model shares it) or, where that is not writable, under the data
dir's models folder; it is built in a staging directory renamed into place, so concurrent first
starts never load half a model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger()

# fastembed reads these beside model.onnx; the copy has the same ones.
COMPANION_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json")
MODEL_FILE = "model.onnx"
# Bump when the way the copy is made changes: older copies are then never reused.
RECIPE_VERSION = "1"
# One copy made at a time per process: the quantiser's log silencing below is process-wide.
_making = threading.Lock()


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_key(model_dir: Path) -> str:
    """What the copy depends on: the model and its companion files, the recipe, ONNX Runtime."""
    import onnxruntime

    parts = [RECIPE_VERSION, str(onnxruntime.__version__), file_digest(model_dir / MODEL_FILE)]
    parts += [file_digest(model_dir / name) for name in COMPANION_FILES if (model_dir / name).is_file()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def int8_query_model(model_dir: Path, models_dir: Path) -> Path:
    """The directory of `model_dir`'s int8 query copy, made on first use.

    Raises whatever ONNX Runtime's quantiser raises for a model it cannot convert; the caller
    then keeps the model as published.
    """
    if importlib.util.find_spec("onnx") is None:  # before any work: the quantiser needs it
        raise ModuleNotFoundError("No module named 'onnx'", name="onnx")
    name = f"{model_dir.name}.query-int8-{copy_key(model_dir)}"
    places = [model_dir.parent, models_dir]
    with _making:
        for place in places:
            if (place / name / MODEL_FILE).is_file():
                return place / name
        failure: OSError = OSError(f"neither {model_dir.parent} nor {models_dir} is writable")
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
    per tensor loses most there. Kept in float32 they cost about 40 % of the speed-up (0.54× →
    0.73× the CPU) and a third of the error (mean cosine to the float model 0.994 → 0.996 on the
    eval questions), the difference between a changed and an unchanged MCP ranking
    (docs/benchmarks.md).
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

"""Indexing benchmark: full build, raw embedding throughput on the same chunks, no-change update.

Usage:
    python scripts/bench_index.py [--corpus TARBALL_OR_DIR] [--out reports/bench_index.json]
                                  [--limit-docs N] [--profile DIR]

The three phases run one after another, each in a fresh subprocess of this script
(`--phase build|raw|update`), against one temporary data dir:

1. build   `build_collection` of the corpus with a freshly loaded `Embedder`;
2. raw     `Embedder.embed` alone over the `embedding_text()` of every chunk the build wrote,
           in the build's batch size and order: the ceiling the indexer's throughput is compared to;
3. update  an incremental update of the unchanged source (should find nothing to do).

Why subprocesses: `ru_maxrss` is a process-wide high-water mark, so in one process the raw
phase and the update would inherit the build's peak. A fresh process per phase gives each its
own peak RSS and its own cold model, exactly like a `docgate-index` run. Model loading happens
before each timer starts, so no phase pays for it.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_common import (
    DEFAULT_CORPUS,
    DEFAULT_EXCLUDE,
    extract_corpus,
    finish,
    load_average,
    machine_info,
    print_table,
    say,
    setup_logging,
    write_report,
)

from indexer import generations as gens
from indexer.build import EMBED_BATCH, BuildRequest, BuildSummary, build_collection
from indexer.embedding import load_embedder
from indexer.lexical import LexicalIndex
from indexer.models import RawDocument
from indexer.settings import IndexerSettings
from indexer.sources import walk_folder

TARGET_INDEXER_TO_RAW = 0.9  # indexer overhead (parse, chunk, write) ≤ ~10% of embedding time
TARGET_UPDATE_TO_BUILD = 0.05  # a no-change update costs ≤ 5% of a full build
PHASES = ("build", "raw", "update")


# --------------------------------------------------------------------------- phases (subprocess side)


class StageClock:
    """A build `Progress` that records how long each announced stage lasted."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._current: str | None = None
        self._since = time.perf_counter()

    def stage(self, name: str, total: int | None) -> None:
        self._close()
        self._current = name
        self._since = time.perf_counter()

    def advance(self, amount: int = 1) -> None:
        pass

    def finish(self) -> dict[str, float]:
        self._close()
        return {name: round(value, 3) for name, value in self.seconds.items()}

    def _close(self) -> None:
        if self._current is not None:
            elapsed = time.perf_counter() - self._since
            self.seconds[self._current] = self.seconds.get(self._current, 0.0) + elapsed
            self._current = None


def _peak_rss_mb() -> float:
    # Linux reports kilobytes (macOS bytes; these benchmarks target Linux servers).
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _documents(args: argparse.Namespace) -> Callable[[], Iterable[RawDocument]] | None:
    """The first `--limit-docs` documents of the walk, or None to let the build walk the source itself."""
    if args.limit_docs is None:
        return None
    source, exclude, limit = Path(args.source), list(args.exclude), int(args.limit_docs)
    return lambda: itertools.islice(walk_folder(source, (), exclude), limit)


def _settings(args: argparse.Namespace) -> IndexerSettings:
    return IndexerSettings.load(None, data_dir=Path(args.data_dir))


def _request(args: argparse.Namespace, *, incremental: bool) -> BuildRequest:
    return BuildRequest(
        collection=args.collection,
        source=Path(args.source),
        version="bench",
        exclude=list(args.exclude),
        incremental=incremental,
    )


@dataclass
class TimedBuild:
    summary: BuildSummary
    seconds: float
    stages: dict[str, float]
    peak_rss_before_mb: float  # after the model loaded, before the build started


def _timed_build(args: argparse.Namespace, *, incremental: bool) -> TimedBuild:
    """One build or update as `docgate-index` runs it, timed from after the model has loaded."""
    settings = _settings(args)
    embedder = load_embedder(settings.embedding, settings.models_dir)
    rss_before = _peak_rss_mb()
    clock = StageClock()
    started = time.perf_counter()
    summary = build_collection(
        settings,
        _request(args, incremental=incremental),
        embedder=embedder,
        progress=clock,
        documents=_documents(args),
    )
    return TimedBuild(summary, time.perf_counter() - started, clock.finish(), rss_before)


def phase_build(args: argparse.Namespace) -> dict[str, Any]:
    timed = _timed_build(args, incremental=False)
    summary = timed.summary
    return {
        "seconds": round(timed.seconds, 3),
        "documents": summary.documents,
        "documents_skipped": summary.documents_skipped,
        "chunks": summary.chunks,
        "embed_seconds": round(summary.embed_seconds, 3),
        "stages_seconds": timed.stages,
        "peak_rss_mb": _peak_rss_mb(),
        "peak_rss_before_build_mb": timed.peak_rss_before_mb,
        "generation": summary.generation,
    }


def _chunk_texts(settings: IndexerSettings, collection: str) -> list[str]:
    """Every chunk's embedding text, in the order the build embedded them (documents, then position)."""
    generation, manifest = gens.require_current(settings.collections_dir, collection)
    gen_dir = gens.generation_dir(settings.collections_dir, collection, generation)
    order = {path: index for index, path in enumerate(manifest.documents)}
    chunks = sorted(
        LexicalIndex(gen_dir / "tantivy").iter_chunks(),
        key=lambda c: (order.get(c.path, len(order)), c.position),
    )
    return [c.embedding_text() for c in chunks]


def phase_raw(args: argparse.Namespace) -> dict[str, Any]:
    settings = _settings(args)
    texts = _chunk_texts(settings, args.collection)
    embedder = load_embedder(settings.embedding, settings.models_dir)
    seconds = 0.0
    for start in range(0, len(texts), EMBED_BATCH):
        batch = texts[start : start + EMBED_BATCH]
        t0 = time.perf_counter()
        embedder.embed(batch)
        seconds += time.perf_counter() - t0
    return {
        "chunks": len(texts),
        "seconds": round(seconds, 3),
        "batch_size": EMBED_BATCH,
        "model_batch_size": settings.embedding.batch_size,
        "peak_rss_mb": _peak_rss_mb(),
    }


def phase_update(args: argparse.Namespace) -> dict[str, Any]:
    timed = _timed_build(args, incremental=True)
    summary = timed.summary
    return {
        "seconds": round(timed.seconds, 3),
        "status": summary.status,
        "documents_reused": summary.documents_reused,
        "documents_parsed": summary.documents_parsed,
        "chunks_embedded": summary.chunks_embedded,
        "stages_seconds": timed.stages,
        "peak_rss_mb": _peak_rss_mb(),
    }


PHASE_FUNCTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "build": phase_build,
    "raw": phase_raw,
    "update": phase_update,
}


def run_phase(args: argparse.Namespace) -> None:
    function = PHASE_FUNCTIONS[args.phase]
    if args.profile:
        profiler = cProfile.Profile()
        result = profiler.runcall(function, args)
        profile_dir = Path(args.profile)
        profile_dir.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(profile_dir / f"{args.phase}.prof")
    else:
        result = function(args)
    result["load_average_at_end"] = load_average()
    write_report(Path(args.phase_out), result)


# --------------------------------------------------------------------------- orchestration


def _spawn(phase: str, args: argparse.Namespace, source: Path, data_dir: Path, out: Path) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--phase",
        phase,
        "--source",
        str(source),
        "--data-dir",
        str(data_dir),
        "--collection",
        args.collection,
        "--phase-out",
        str(out),
    ]
    command += [f"--exclude={pattern}" for pattern in args.exclude]
    if args.limit_docs is not None:
        command += ["--limit-docs", str(args.limit_docs)]
    if args.profile:
        command += ["--profile", str(args.profile)]
    say(f"phase {phase}: running…")
    started = time.perf_counter()
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"benchmark phase {phase!r} failed with exit code {completed.returncode}")
    say(f"phase {phase}: done in {time.perf_counter() - started:.1f} s (process included)")
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


def _per_second(count: int, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else 0.0


def compose_report(
    machine: dict[str, Any],
    corpus: str,
    limit_docs: int | None,
    build: dict[str, Any],
    raw: dict[str, Any],
    update: dict[str, Any],
) -> dict[str, Any]:
    build_rate = _per_second(build["chunks"], build["seconds"])
    raw_rate = _per_second(raw["chunks"], raw["seconds"])
    ratio_raw = round(build_rate / raw_rate, 3) if raw_rate else 0.0
    ratio_update = round(update["seconds"] / build["seconds"], 4) if build["seconds"] else 0.0
    return {
        "benchmark": "index",
        "machine": machine,
        "corpus": corpus,
        "limit_docs": limit_docs,
        "documents": build["documents"],
        "chunks": build["chunks"],
        "build": {
            "seconds": build["seconds"],
            "docs_per_s": _per_second(build["documents"], build["seconds"]),
            "chunks_per_s": build_rate,
            "embed_seconds": build["embed_seconds"],
            "embed_share": round(build["embed_seconds"] / build["seconds"], 3) if build["seconds"] else 0.0,
            "stages_seconds": build["stages_seconds"],
            "peak_rss_mb": build["peak_rss_mb"],
            "peak_rss_before_build_mb": build["peak_rss_before_build_mb"],
            "documents_skipped": build["documents_skipped"],
            "load_average_at_end": build["load_average_at_end"],
        },
        "raw_embedding": {
            "seconds": raw["seconds"],
            "chunks_per_s": raw_rate,
            "batch_size": raw["batch_size"],
            "model_batch_size": raw["model_batch_size"],
            "peak_rss_mb": raw["peak_rss_mb"],
            "load_average_at_end": raw["load_average_at_end"],
        },
        "ratio_indexer_to_raw": ratio_raw,
        "update_no_change": {
            "seconds": update["seconds"],
            "ratio_to_build": ratio_update,
            "status": update["status"],
            "documents_reused": update["documents_reused"],
            "chunks_embedded": update["chunks_embedded"],
            "stages_seconds": update["stages_seconds"],
            "peak_rss_mb": update["peak_rss_mb"],
            "load_average_at_end": update["load_average_at_end"],
        },
        "targets": {
            "ratio_indexer_to_raw_min": TARGET_INDEXER_TO_RAW,
            "update_ratio_to_build_max": TARGET_UPDATE_TO_BUILD,
        },
        "targets_met": {
            "indexer_to_raw": ratio_raw >= TARGET_INDEXER_TO_RAW,
            "update_no_change": ratio_update <= TARGET_UPDATE_TO_BUILD and update["status"] == "unchanged",
        },
    }


def print_summary(report: dict[str, Any]) -> None:
    build, raw, update = report["build"], report["raw_embedding"], report["update_no_change"]
    met = report["targets_met"]
    print_table(
        f"Indexing benchmark: {report['documents']} documents, {report['chunks']} chunks",
        ["figure", "value", "target", "met"],
        [
            ["build seconds", build["seconds"], "", ""],
            ["build docs/s", build["docs_per_s"], "", ""],
            ["build chunks/s", build["chunks_per_s"], "", ""],
            ["build embed seconds", build["embed_seconds"], "", ""],
            ["build peak RSS MB", build["peak_rss_mb"], "", ""],
            ["raw embedding chunks/s", raw["chunks_per_s"], "", ""],
            ["indexer / raw throughput", report["ratio_indexer_to_raw"], "≥ 0.9", met["indexer_to_raw"]],
            ["no-change update seconds", update["seconds"], "", ""],
            ["update / build time", update["ratio_to_build"], "≤ 0.05", met["update_no_change"]],
        ],
    )


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    machine = machine_info()
    corpus_path = Path(args.corpus)
    with tempfile.TemporaryDirectory(prefix="docgate-bench-index-") as scratch:
        root = Path(scratch)
        source = extract_corpus(corpus_path, root / "corpus")
        data_dir = root / "data"
        results = {phase: _spawn(phase, args, source, data_dir, root / f"{phase}.json") for phase in PHASES}
    return compose_report(
        machine, str(corpus_path), args.limit_docs, results["build"], results["raw"], results["update"]
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="documentation folder or .tar.gz")
    parser.add_argument("--out", default="reports/bench_index.json", help="JSON report path")
    parser.add_argument("--limit-docs", type=int, default=None, help="index only the first N documents")
    parser.add_argument(
        "--exclude",
        action="append",
        default=None,
        help=f"glob of source paths to leave out (repeatable; default: {' '.join(DEFAULT_EXCLUDE)})",
    )
    parser.add_argument("--collection", default="bench", help="collection name inside the temporary data dir")
    parser.add_argument("--profile", default=None, help="write a cProfile file per phase into this folder")
    # Internal: one phase in this process (the orchestrator spawns these).
    parser.add_argument("--phase", choices=PHASES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--source", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--phase-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.exclude is None:
        args.exclude = list(DEFAULT_EXCLUDE)
    if args.limit_docs is not None and args.limit_docs < 1:
        parser.error("--limit-docs must be at least 1")
    if args.phase and not (args.source and args.data_dir and args.phase_out):
        parser.error("--phase needs --source, --data-dir and --phase-out")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    if args.phase:
        run_phase(args)
        return 0
    report = run_benchmark(args)
    return finish(Path(args.out), report, print_summary)


if __name__ == "__main__":
    sys.exit(main())

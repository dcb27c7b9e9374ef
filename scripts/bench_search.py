"""Search latency benchmark: BM25-only, dense-only, hybrid retrieval and the full `search` call.

Usage:
    python scripts/bench_search.py [--data-dir DIR] [--collection django] [--queries 200]
                                   [--out reports/bench_search.json]

Without `--data-dir` the Django corpus is first built into a temporary data dir (minutes).

Queries are generated deterministically from the index (a seeded sample of chunks turned into
"how do I use <heading>", a bare identifier, "<title> <heading>" and "what is <heading>?"),
plus the questions of `tests/evals/<collection>.jsonl` when that file exists. After a warm-up,
every query runs through all four series, in an order that rotates from one query to the next,
so machine noise and cache effects fall on every series alike:

- bm25     `DocService.retrieve(mode="bm25")`, rewrites on (BM25 is where they apply);
- dense    `DocService.retrieve(mode="dense")`: embed the query + vector search;
- hybrid   `DocService.retrieve(mode="hybrid", rewrites=True)`: the full fusion pipeline;
- search   `DocService.search`: hybrid plus snippets, hit shaping and the token budget.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench_common import (
    DEFAULT_CORPUS,
    DEFAULT_EXCLUDE,
    REPO,
    extract_corpus,
    finish,
    latency_summary,
    load_average,
    machine_info,
    print_table,
    say,
    setup_logging,
)

from indexer.build import BuildRequest, build_collection
from indexer.models import Chunk
from server.retrieval.hybrid import Mode, RetrievalResult
from server.retrieval.service import Access, DocService
from server.runtime import build_runtime
from server.settings import ServerSettings

SERIES = ("bm25", "dense", "hybrid", "search")
TARGET_HYBRID_P95_MS = 30.0
TARGET_HYBRID_TO_DENSE_P95 = 1.5
DEFAULT_VERSION_FOR_BUILD = "3.2"

# Code-like tokens as a developer would type them: dotted names, snake_case, CamelCase.
_IDENTIFIER = re.compile(
    r"\b[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+\b|\b[A-Za-z0-9]*_[A-Za-z0-9_]+\b|\b[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*\b"
)


# --------------------------------------------------------------------------- queries


def _heading(chunk: Chunk) -> str:
    return chunk.heading_path[-1] if chunk.heading_path else chunk.title


def _clean(text: str) -> str:
    return " ".join(text.split())[:200]


def _query_from(chunk: Chunk, template: int, rng: random.Random) -> str:
    heading = _heading(chunk)
    if template == 0:
        return f"how do I use {heading}"
    if template == 1:
        found = sorted({m.group(0).strip("._") for m in _IDENTIFIER.finditer(chunk.text)})
        found = [token for token in found if len(token) > 3]
        if found:
            return rng.choice(found)
        return f"{chunk.title} {heading}"
    if template == 2:
        return f"{chunk.title} {heading}" if heading != chunk.title else chunk.title
    return f"what is {heading}?"


def generated_queries(chunks: Sequence[Chunk], count: int, seed: int) -> list[str]:
    """`count` distinct queries from a seeded sample of chunks, cycling through four phrasings."""
    rng = random.Random(seed)
    ordered = sorted(chunks, key=lambda c: c.chunk_id)  # independent of the index's storage order
    pool = rng.sample(ordered, len(ordered))
    queries: list[str] = []
    seen: set[str] = set()
    for index, chunk in enumerate(pool):
        query = _clean(_query_from(chunk, index % 4, rng))
        if query and query.lower() not in seen:
            seen.add(query.lower())
            queries.append(query)
        if len(queries) >= count:
            break
    return queries


def eval_questions(path: Path | None) -> list[str]:
    if path is None or not path.is_file():
        return []
    questions = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            question = json.loads(line).get("question")
            if isinstance(question, str) and question.strip():
                questions.append(question.strip())
    return questions


# --------------------------------------------------------------------------- measurement


Call = Callable[[str], RetrievalResult]


def series_calls(service: DocService, access: Access, collection: str, depth: int) -> dict[str, Call]:
    scope = [collection]

    def retrieve(mode: Mode, rewrites: bool) -> Call:
        def call(query: str) -> RetrievalResult:
            result, _ = service.retrieve(
                access,
                query,
                collections=scope,
                version=None,
                depth=depth,
                mode=mode,
                rewrites=rewrites,
            )
            return result

        return call

    def search(query: str) -> RetrievalResult:
        return service.search(access, query, collections=scope, k=depth).retrieval

    return {
        "bm25": retrieve("bm25", True),
        "dense": retrieve("dense", False),
        "hybrid": retrieve("hybrid", True),
        "search": search,
    }


def measure(calls: dict[str, Call], queries: Sequence[str], warmup: int) -> dict[str, dict[str, Any]]:
    """Per-series latencies (ms), span timings and result counts over `queries`."""
    for query in queries[:warmup]:
        for name in SERIES:
            calls[name](query)
    latencies: dict[str, list[float]] = {name: [] for name in SERIES}
    spans: dict[str, dict[str, float]] = {name: {} for name in SERIES}
    results: dict[str, int] = dict.fromkeys(SERIES, 0)
    gc.collect()
    for index, query in enumerate(queries):
        # Rotate the order so no series always runs first (cold) or right after its sibling (warm).
        shift = index % len(SERIES)
        for name in SERIES[shift:] + SERIES[:shift]:
            started = time.perf_counter()
            result = calls[name](query)
            latencies[name].append((time.perf_counter() - started) * 1000)
            results[name] += len(result.candidates)
            for span, ms in result.timings_ms.items():
                spans[name][span] = spans[name].get(span, 0.0) + ms
    out: dict[str, dict[str, Any]] = {}
    for name in SERIES:
        summary: dict[str, Any] = latency_summary(latencies[name])
        count = len(queries) or 1
        # Means over all queries (a span a query skipped counts as 0), so spans add up to the latency.
        span_means = {span: round(total / count, 3) for span, total in sorted(spans[name].items())}
        summary["span_means_ms"] = span_means
        summary["unaccounted_mean_ms"] = round(summary["mean_ms"] - sum(span_means.values()), 3)
        summary["mean_results"] = round(results[name] / count, 2)
        out[name] = summary
    return out


# --------------------------------------------------------------------------- orchestration


def _build_django(scratch: Path, corpus: Path, collection: str) -> Path:
    say(
        "no --data-dir given: building the Django corpus into a temporary data dir first; "
        "this takes several minutes (pass --data-dir to reuse an index)"
    )
    source = extract_corpus(corpus, scratch / "corpus")
    data_dir = scratch / "data"
    settings = ServerSettings.load(None, data_dir=data_dir)
    build_collection(
        settings,
        BuildRequest(
            collection=collection,
            source=source,
            version=DEFAULT_VERSION_FOR_BUILD,
            exclude=list(DEFAULT_EXCLUDE),
        ),
    )
    return data_dir


def run_benchmark(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    machine = machine_info()
    settings = ServerSettings.load(None, data_dir=data_dir)
    runtime = build_runtime(settings)
    view = runtime.catalog.view()
    snapshot = view.snapshots.get(args.collection)
    if snapshot is None:
        available = ", ".join(sorted(view.snapshots)) or "none"
        raise SystemExit(
            f"collection {args.collection!r} is not published in {data_dir}; available: {available}"
        )
    chunks = list(snapshot.lexical.iter_chunks())
    generated = generated_queries(chunks, args.queries, args.seed)
    eval_file = (
        Path(args.eval_file) if args.eval_file else REPO / "tests" / "evals" / f"{args.collection}.jsonl"
    )
    questions = eval_questions(eval_file)
    queries = generated + questions
    say(f"{len(queries)} queries ({len(generated)} generated, {len(questions)} eval questions); measuring…")

    access = Access(tenant="bench", allowed=lambda name: True)
    calls = series_calls(runtime.service, access, args.collection, args.depth)
    started = time.perf_counter()
    series = measure(calls, queries, min(args.warmup, len(queries)))
    elapsed = time.perf_counter() - started

    hybrid_p95, dense_p95 = series["hybrid"]["p95_ms"], series["dense"]["p95_ms"]
    ratio = round(hybrid_p95 / dense_p95, 3) if dense_p95 else 0.0
    return {
        "benchmark": "search",
        "machine": machine,
        "data_dir": str(data_dir),
        "collection": args.collection,
        "version": snapshot.version,
        "generation": snapshot.generation,
        "chunks": len(chunks),
        "queries": {
            "total": len(queries),
            "generated": len(generated),
            "eval_questions": len(questions),
            "eval_file": str(eval_file) if questions else None,
            "seed": args.seed,
            "warmup": min(args.warmup, len(queries)),
            "examples": generated[:8],
        },
        "depth": args.depth,
        "retrieval_settings": settings.retrieval.model_dump(),
        "embedding_threads": settings.embedding.threads,
        "seconds": round(elapsed, 2),
        "load_average_at_end": load_average(),
        "series": series,
        "hybrid_to_dense_p95": ratio,
        "targets": {
            "hybrid_p95_ms_max": TARGET_HYBRID_P95_MS,
            "hybrid_to_dense_p95_max": TARGET_HYBRID_TO_DENSE_P95,
        },
        "targets_met": {
            "hybrid_p95": hybrid_p95 <= TARGET_HYBRID_P95_MS,
            "hybrid_to_dense_p95": ratio <= TARGET_HYBRID_TO_DENSE_P95,
        },
    }


def print_summary(report: dict[str, Any]) -> None:
    series = report["series"]
    print_table(
        f"Search latency (ms): {report['queries']['total']} queries over {report['chunks']} chunks, "
        f"depth {report['depth']}",
        ["series", "p50", "p95", "p99", "mean", "spans (mean ms)"],
        [
            [
                name,
                s["p50_ms"],
                s["p95_ms"],
                s["p99_ms"],
                s["mean_ms"],
                " ".join(f"{k}={v:.2f}" for k, v in s["span_means_ms"].items()),
            ]
            for name, s in series.items()
        ],
    )
    met = report["targets_met"]
    print_table(
        "Targets",
        ["figure", "value", "target", "met"],
        [
            ["hybrid p95 ms", series["hybrid"]["p95_ms"], "≤ 30", met["hybrid_p95"]],
            ["hybrid / dense p95", report["hybrid_to_dense_p95"], "≤ 1.5", met["hybrid_to_dense_p95"]],
        ],
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=None, help="data dir holding a built collection")
    parser.add_argument("--collection", default="django")
    parser.add_argument(
        "--queries", type=int, default=200, help="generated queries (eval questions come on top)"
    )
    parser.add_argument("--warmup", type=int, default=20, help="queries run once before measuring")
    parser.add_argument("--depth", type=int, default=8, help="results per retrieval (and k of search)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the query sample")
    parser.add_argument("--eval-file", default=None, help="JSONL with `question` fields to add")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="corpus to build without --data-dir")
    parser.add_argument("--out", default="reports/bench_search.json", help="JSON report path")
    args = parser.parse_args(argv)
    if args.queries < 1:
        parser.error("--queries must be at least 1")
    if not 1 <= args.depth <= 50:
        parser.error("--depth must be between 1 and 50")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    with tempfile.TemporaryDirectory(prefix="docgate-bench-search-") as scratch:
        data_dir = (
            Path(args.data_dir)
            if args.data_dir
            else _build_django(Path(scratch), Path(args.corpus), args.collection)
        )
        report = run_benchmark(args, data_dir)
    return finish(Path(args.out), report, print_summary)


if __name__ == "__main__":
    sys.exit(main())

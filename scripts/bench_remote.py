"""Remote-stage benchmark: build throughput through the HTTP embedding path, search cost of reranking.

Usage:
    python scripts/bench_remote.py [--corpus DIR|TARBALL] [--limit-docs 40] [--rounds 2]
                                   [--queries 60] [--rerank-delay-ms 50] [--out reports/bench_remote.json]

Both phases compare two series within one run, interleaved, so machine load falls on both alike:

1. build    the same documents built in process (fastembed) and through `RemoteEmbedder` against a
            local stub of `/v1/embeddings` (`tests/fake_services.py`) that answers with the *same*
            bundled model in its own process: equal model speed, so the ratio measures the HTTP path (JSON,
            sockets, batching). Target: remote chunks/s ≥ 0.9 × in-process chunks/s.
2. search   `DocService.search` without and with the rerank stage, against a stub `/rerank` that
            sleeps a fixed delay. Target: the stage adds its delay and little more
            (p50 and p95 overhead beyond the delay ≤ max(5 ms, 20 % of the delay)).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench_common import (
    DEFAULT_EXCLUDE,
    REPO,
    extract_corpus,
    finish,
    latency_summary,
    machine_info,
    print_table,
    say,
    setup_logging,
)

sys.path.insert(0, str(REPO))  # the stub servers live with the tests

from indexer.build import BuildRequest, build_collection
from indexer.embedding import Embedder, load_embedder
from indexer.embedding.remote import RemoteEmbedder
from indexer.settings import EmbeddingSettings, RemoteEmbeddingSettings
from server.retrieval.catalog import Catalog
from server.retrieval.service import Access, DocService
from server.settings import RerankSettings, RetrievalSettings, ServerSettings
from tests.fake_services import FakeServices, Reply

DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "mcp-spec-docs-md.tar.gz"
ACCESS = Access(tenant="bench", allowed=lambda name: True)
TARGET_REMOTE_TO_LOCAL = 0.9
SUFFIXES = {".md", ".mdx", ".rst", ".txt", ".html", ".htm"}


def _serve_stub(ready: Any, stop: Any, data_dir: str, delay_s: float) -> None:
    """A stub API in its own process, so its work never competes with the measured one for the GIL."""
    setup_logging()
    embedder = load_embedder(
        ServerSettings.load(None, data_dir=Path(data_dir)).embedding, Path(data_dir) / "models"
    )
    with FakeServices(embedder, default=Reply(delay_s=delay_s)) as stub:
        ready.put(stub.url)
        stop.wait()


@contextlib.contextmanager
def stub_process(scratch: Path, delay_s: float = 0.0) -> Iterator[str]:
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Queue(), context.Event()
    process = context.Process(target=_serve_stub, args=(ready, stop, str(scratch / "stub-home"), delay_s))
    process.start()
    try:
        yield str(ready.get(timeout=300))
    finally:
        stop.set()
        process.join(timeout=30)
        if process.is_alive():
            process.terminate()


def _sample_corpus(source: Path, scratch: Path, limit: int) -> Path:
    root = extract_corpus(source, scratch / "corpus-full")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)[:limit]
    target = scratch / "corpus"
    for path in files:
        destination = target / path.relative_to(root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)
    return target


def _settings(data_dir: Path, **overrides: Any) -> ServerSettings:
    return ServerSettings.load(None, data_dir=data_dir, **overrides)


def _build(data_dir: Path, corpus: Path, embedder: Embedder) -> dict[str, Any]:
    started = time.perf_counter()
    summary = build_collection(
        _settings(data_dir),
        BuildRequest(collection="bench", source=corpus, version="1", exclude=list(DEFAULT_EXCLUDE)),
        embedder=embedder,
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 3),
        "chunks": summary.chunks,
        "chunks_per_s": round(summary.chunks / seconds, 2),
        "embed_seconds": summary.embed_seconds,
        "embedding_tokens": summary.embedding_tokens,
    }


def phase_build(args: argparse.Namespace, scratch: Path, corpus: Path, local: Embedder) -> dict[str, Any]:
    # A long timeout: on a loaded machine one 256-text batch can take over a minute, and a timed-out
    # request that is retried makes the stub compute it twice, which would measure the retry, not HTTP.
    remote_settings = RemoteEmbeddingSettings(
        dimension=local.dimension, batch_size=args.remote_batch, concurrency=args.concurrency, timeout_s=600
    )
    runs: dict[str, list[dict[str, Any]]] = {"in_process": [], "remote": []}
    with stub_process(scratch) as url:
        remote = RemoteEmbedder(
            EmbeddingSettings(
                provider="openai",
                model="stub-minilm",
                remote=remote_settings.model_copy(update={"url": url + "/v1"}),
            )
        )
        try:
            for round_ in range(args.rounds):
                # Alternate which goes first so a warming cache or a load spike favours neither.
                order = [("in_process", local), ("remote", remote)]
                for name, embedder in order if round_ % 2 == 0 else order[::-1]:
                    say(f"build round {round_ + 1}: {name}")
                    runs[name].append(_build(scratch / f"data-{name}-{round_}", corpus, embedder))
        finally:
            remote.close()
    best = {name: max(r["chunks_per_s"] for r in series) for name, series in runs.items()}
    ratio = round(best["remote"] / best["in_process"], 3)
    return {
        "runs": runs,
        "best_chunks_per_s": best,
        "ratio_remote_to_in_process": ratio,
        "remote": {"batch_size": args.remote_batch, "concurrency": args.concurrency},
        "target_met": ratio >= TARGET_REMOTE_TO_LOCAL,
    }


def _queries(service: DocService, count: int) -> list[str]:
    snapshot = next(iter(service.catalog.view().snapshots.values()))
    headings = sorted({c.heading_path[-1] for c in snapshot.lexical.iter_chunks() if c.heading_path})
    if not headings:
        headings = ["configuration", "getting started", "error handling"]
    picked = [headings[(i * 7919) % len(headings)] for i in range(count)]
    return [f"how do I use {h}" for h in picked]


def phase_search(args: argparse.Namespace, scratch: Path, data_dir: Path, local: Embedder) -> dict[str, Any]:
    delay_s = args.rerank_delay_ms / 1000
    with stub_process(scratch, delay_s) as url:
        plain_settings = _settings(data_dir)
        rerank_settings = _settings(
            data_dir,
            retrieval=RetrievalSettings(
                rerank=RerankSettings(enabled=True, url=url + "/rerank", timeout_s=5)
            ),
        )
        plain = DocService(
            plain_settings, Catalog(plain_settings, local.config, interval=3600), local, b"k" * 32
        )
        reranked = DocService(
            rerank_settings, Catalog(rerank_settings, local.config, interval=3600), local, b"k" * 32
        )
        queries = _queries(plain, args.queries)
        for query in queries[:5]:  # warm-up: model, caches, the stub's connection
            plain.search(ACCESS, query)
            reranked.search(ACCESS, query)
        series: dict[str, list[float]] = {"without_rerank": [], "with_rerank": []}
        degraded = 0
        for index, query in enumerate(queries):
            pairs = [("without_rerank", plain), ("with_rerank", reranked)]
            for name, service in pairs if index % 2 == 0 else pairs[::-1]:
                started = time.perf_counter()
                outcome = service.search(ACCESS, query)
                series[name].append((time.perf_counter() - started) * 1000)
                degraded += outcome.result.degraded
    summaries = {name: latency_summary(values) for name, values in series.items()}
    allowance = max(5.0, 0.2 * args.rerank_delay_ms)
    overhead = {
        key: round(summaries["with_rerank"][key] - summaries["without_rerank"][key] - args.rerank_delay_ms, 3)
        for key in ("p50_ms", "p95_ms")
    }
    return {
        "queries": len(queries),
        "rerank_delay_ms": args.rerank_delay_ms,
        "latency": summaries,
        "overhead_beyond_delay_ms": overhead,
        "allowance_ms": allowance,
        "degraded_searches": degraded,
        "target_met": degraded == 0 and all(value <= allowance for value in overhead.values()),
    }


def print_summary(report: dict[str, Any]) -> None:
    build = report["build"]
    print_table(
        "remote embedding: build throughput (best of rounds)",
        ["path", "chunks/s"],
        [[name, value] for name, value in build["best_chunks_per_s"].items()]
        + [["ratio remote / in process", build["ratio_remote_to_in_process"]]],
    )
    search = report["search"]
    print_table(
        f"rerank stage: search latency (stub delay {search['rerank_delay_ms']} ms)",
        ["series", "p50 ms", "p95 ms"],
        [[name, s["p50_ms"], s["p95_ms"]] for name, s in search["latency"].items()]
        + [
            [
                "overhead beyond delay",
                search["overhead_beyond_delay_ms"]["p50_ms"],
                search["overhead_beyond_delay_ms"]["p95_ms"],
            ]
        ],
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="documentation folder or .tar.gz")
    parser.add_argument("--limit-docs", type=int, default=40, help="first N documents (sorted by path)")
    parser.add_argument("--rounds", type=int, default=2, help="builds per path, interleaved")
    parser.add_argument("--remote-batch", type=int, default=256, help="texts per /v1/embeddings request")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests in flight (1: same cores as in process)"
    )
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--rerank-delay-ms", type=float, default=50.0)
    parser.add_argument("--out", default=str(REPO / "reports" / "bench_remote.json"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    report: dict[str, Any] = {"machine": machine_info()}
    with tempfile.TemporaryDirectory(prefix="docgate-bench-remote-") as tmp:
        scratch = Path(tmp)
        corpus = _sample_corpus(Path(args.corpus), scratch, args.limit_docs)
        local = load_embedder(
            ServerSettings.load(None, data_dir=scratch / "models-home").embedding, scratch / "models"
        )
        report["documents"] = sum(1 for p in corpus.rglob("*") if p.is_file())
        report["build"] = phase_build(args, scratch, corpus, local)
        report["search"] = phase_search(args, scratch, scratch / "data-in_process-0", local)
    report["targets_met"] = {
        "remote_build": report["build"]["target_met"],
        "rerank_cost": report["search"]["target_met"],
    }
    return finish(Path(args.out), report, print_summary)


if __name__ == "__main__":
    sys.exit(main())

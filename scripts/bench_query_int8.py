"""Query embedding benchmark: the model as published against its int8 query copy.

Usage:
    python scripts/bench_query_int8.py [--questions tests/evals/*.jsonl] [--rounds 5]
                                       [--out reports/bench_query_int8.json]

Every eval question is embedded as a search query, one at a time on one thread (as the server
does), by both sessions in alternating rounds, so machine load falls on both alike. Reported:
process CPU time per query of each, their ratio (target ≤ 0.8), and the cosine between the two
vectors of each question (min, mean; target min ≥ 0.98). The model comes from
`embedding.model_dir` or the data dir, like the server's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import REPO, machine_info, setup_logging, write_report

from indexer.embedding import Embedder, load_embedder
from server.settings import ServerSettings

DEFAULT_QUESTIONS = sorted((REPO / "tests" / "evals").glob("*.jsonl"))


def questions(files: Sequence[Path]) -> list[str]:
    found: list[str] = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                found.append(json.loads(line)["question"])
    return list(dict.fromkeys(found))


def cpu_ms_per_query(embedder: Embedder, texts: Sequence[str], exact: bool) -> float:
    started = time.process_time()
    for text in texts:
        embedder.embed_queries([text], exact=exact)
    return (time.process_time() - started) * 1000 / len(texts)


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = ServerSettings.load(None)
    embedding = settings.embedding.model_copy(update={"query_cache_size": 0, "query_precision": "int8"})
    embedder = load_embedder(embedding, settings.models_dir)
    embedder.warm_queries()
    texts = questions(args.questions)
    fast = np.stack([embedder.embed_queries([t])[0] for t in texts])
    exact = np.stack([embedder.embed_queries([t], exact=True)[0] for t in texts])
    similarity = (fast * exact).sum(axis=1)
    rounds: dict[str, list[float]] = {"published": [], "int8": []}
    for _ in range(args.rounds):
        rounds["published"].append(round(cpu_ms_per_query(embedder, texts, exact=True), 3))
        rounds["int8"].append(round(cpu_ms_per_query(embedder, texts, exact=False), 3))
    best = {name: min(values) for name, values in rounds.items()}
    ratio = best["int8"] / best["published"]
    return {
        "benchmark": "query_int8",
        "model": embedding.model,
        "questions": len(texts),
        "rounds": args.rounds,
        "cpu_ms_per_query": rounds,
        "best_cpu_ms_per_query": best,
        "ratio_int8_to_published": round(ratio, 3),
        "cosine": {"min": round(float(similarity.min()), 4), "mean": round(float(similarity.mean()), 4)},
        "targets_met": {
            "cpu_ratio_le_0_8": ratio <= 0.8,
            "cosine_min_ge_0_98": float(similarity.min()) >= 0.98,
        },
        "machine": machine_info(),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=Path, nargs="+", default=DEFAULT_QUESTIONS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="Write the JSON report here.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    report = run(args)
    best = report["best_cpu_ms_per_query"]
    print(
        f"{report['questions']} questions: published {best['published']:.2f} ms, "
        f"int8 {best['int8']:.2f} ms of CPU per query (ratio {report['ratio_int8_to_published']:.2f}); "
        f"cosine min {report['cosine']['min']:.4f}, mean {report['cosine']['mean']:.4f}"
    )
    if args.out:
        write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

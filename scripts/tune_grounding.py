"""Tune the grounding gate of the extractive backend on a labelled eval set, and measure the cache.

    python scripts/tune_grounding.py --data-dir /tmp/smoke/data --collection django \\
        --eval tests/evals/django.jsonl

For every case: retrieve and select context exactly as `grounded_answer` does, write the extractive
answer once, then run the grounding check for each point of a small grid (embeddings are memoised,
so a grid point costs only arithmetic). Per point it prints

    answer rate       answerable cases that were answered
    abstention rate   unanswerable cases that abstained
    precision         over answered answerable cases: cited pages that are expected pages / cited pages

and picks the point whose neighbourhood (one relevance-threshold step either side) has the best
worst-case min(answer rate, abstention rate), among those with precision ≥ 0.8 (all points when
none reaches it). Then it measures the semantic cache on hand-written paraphrase pairs (should
hit) and pairs of different but lexically close questions (must not hit), with and without the
cache's rule that near-duplicates must name the same identifiers and numbers.

The grid is deliberately small (6 relevance thresholds × 2 relevance weightings × 2 score
thresholds): 59 cases cannot support a finer search without fitting noise, and judging a point
by its neighbours keeps a lucky isolated point from winning over a stable plateau. The collection
is copied to a temporary directory first, so the data dir is never opened for writing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.embedding import Embedder, shared_embedder
from indexer.logs import configure_logging
from server.answering.cache import CacheScope, SemanticCache
from server.answering.extractive import extractive_answer
from server.answering.grounding.verdict import check
from server.answering.memo import memo_embed
from server.answering.pipeline import Answerer, Retrieved
from server.retrieval.catalog import Catalog
from server.retrieval.service import Access, DocService
from server.settings import CacheSettings, GroundingSettings, ServerSettings

ACCESS = Access(tenant="eval", allowed=lambda name: True)

# (relevance_threshold, (dense_weight, coverage_weight, margin_weight), threshold)
RELEVANCE_THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55)
RELEVANCE_WEIGHTS = ((0.5, 0.4, 0.1), (0.6, 0.3, 0.1))
SCORE_THRESHOLDS = (0.5, 0.6)

# Same question, other words: the cache should reuse the answer.
PARAPHRASES = [
    (
        "What's the difference between select_related and prefetch_related?",
        "What is the difference between select_related and prefetch_related?",
    ),
    (
        "How do I make a model field optional so users can leave it empty in forms?",
        "How do I make a model field optional so that users can leave it empty in forms?",
    ),
    (
        "How can I filter a queryset with an OR between two conditions?",
        "How do I filter a queryset with OR between two conditions?",
    ),
    ("How do I send an email with Django?", "How can I send an email with Django?"),
    ("How do I create a custom management command?", "How to create a custom management command?"),
    ("How do I run my tests in parallel?", "How can I run my tests in parallel?"),
    ("Where should I put static files in my app?", "Where do I put static files in my app?"),
    ("How do I translate strings in templates?", "How can I translate strings in my templates?"),
]
# Different questions that share most words: the cache must not reuse the answer.
DIFFERENT = [
    ("When should I use select_related?", "When should I use prefetch_related?"),
    ("How do I add a field to a model form?", "How do I remove a field from a model form?"),
    ("What does null=True do on a model field?", "What does blank=True do on a model field?"),
    ("How do I cache a whole view?", "How do I cache a template fragment?"),
    ("How do I create a superuser?", "How do I create a custom user model?"),
    ("How do I write a data migration?", "How do I squash migrations?"),
    ("What is new in Django 3.2?", "What is new in Django 3.1?"),
    ("How do I set the DEFAULT_AUTO_FIELD setting?", "How do I set the DEFAULT_FROM_EMAIL setting?"),
    ("How do I sort a queryset in ascending order?", "How do I sort a queryset in descending order?"),
    ("How do I log in a user?", "How do I log out a user?"),
]


@dataclass
class Case:
    id: str
    question: str
    answerable: bool
    expected: set[str]
    version: str | None
    retrieved: Retrieved
    answer: str


def load_cases(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def document_of(source: str) -> str:
    return source.split("#", 1)[0]


def variants(base: GroundingSettings) -> list[GroundingSettings]:
    out = []
    for relevance, (dense, coverage, margin), threshold in itertools.product(
        RELEVANCE_THRESHOLDS, RELEVANCE_WEIGHTS, SCORE_THRESHOLDS
    ):
        out.append(
            base.model_copy(
                update={
                    "relevance_threshold": relevance,
                    "dense_weight": dense,
                    "coverage_weight": coverage,
                    "margin_weight": margin,
                    "threshold": threshold,
                }
            )
        )
    return out


def evaluate(cases: list[Case], settings: GroundingSettings, embed: Any) -> dict[str, float]:
    answered = abstained_unanswerable = answerable = unanswerable = 0
    cited = correct = 0
    for case in cases:
        report = check(case.question, case.answer, case.retrieved.evidence, embed, settings)
        fabricated = any(c.missing for c in report.claims if c.weight)
        abstain = report.abstain or fabricated
        if case.answerable:
            answerable += 1
            if not abstain:
                answered += 1
                pages = {
                    document_of(case.retrieved.evidence[n - 1].source)
                    for c in report.claims
                    for n in c.citations
                    if 1 <= n <= len(case.retrieved.evidence)
                }
                cited += len(pages)
                correct += len(pages & case.expected)
        else:
            unanswerable += 1
            abstained_unanswerable += abstain
    return {
        "answer_rate": answered / max(answerable, 1),
        "abstention_rate": abstained_unanswerable / max(unanswerable, 1),
        "precision": correct / cited if cited else 0.0,
    }


def balance(metrics: dict[str, float]) -> float:
    return round(min(metrics["answer_rate"], metrics["abstention_rate"]), 3)


def choose(
    rows: list[tuple[GroundingSettings, dict[str, float]]], base: GroundingSettings
) -> tuple[GroundingSettings, dict[str, float]]:
    """The grid point whose worst neighbour is best: robust, not a lucky single point.

    A point's merit is the lowest min(answer rate, abstention rate) of itself and the points one
    relevance-threshold step either side (same weights and score threshold; the grid's edge
    thresholds are never chosen); precision ≥ 0.8 is required when any point reaches it. Ties go to the current weights, then to the middle of
    the tied thresholds.
    """
    eligible = [row for row in rows if row[1]["precision"] >= 0.8] or rows
    steps = sorted({point.relevance_threshold for point, _ in rows})

    def merit(row: tuple[GroundingSettings, dict[str, float]]) -> float:
        point = row[0]
        i = steps.index(point.relevance_threshold)
        if len(steps) > 2 and i in (0, len(steps) - 1):
            return -1.0  # an edge point has one neighbour: its merit would be judged more leniently
        near = set(steps[max(0, i - 1) : i + 2])
        return min(
            balance(m)
            for p, m in rows
            if p.relevance_threshold in near
            and (p.threshold, p.dense_weight) == (point.threshold, point.dense_weight)
        )

    best = max(merit(row) for row in eligible)
    tied = [row for row in eligible if merit(row) == best]
    tied = [row for row in tied if distance(row[0], base, thresholds=False) == 0] or tied
    tied.sort(key=lambda row: row[0].relevance_threshold)
    return tied[len(tied) // 2]


def distance(settings: GroundingSettings, base: GroundingSettings, *, thresholds: bool = True) -> float:
    """How far a grid point is from the defaults (weights and score threshold; optionally relevance)."""
    far = abs(settings.threshold - base.threshold) + abs(settings.dense_weight - base.dense_weight)
    if thresholds:
        far += abs(settings.relevance_threshold - base.relevance_threshold)
    return far


def measure_cache(embedder: Embedder, similarity: float) -> None:
    settings = CacheSettings(similarity=similarity, ttl_s=None)
    scope = CacheScope.of("eval", ["django"], "3.2", {"django": 1}, "extractive", 1500)

    def hits(pairs: list[tuple[str, str]]) -> tuple[int, list[float]]:
        count = 0
        cosines: list[float] = []
        for first, second in pairs:
            cache = SemanticCache[str](settings)
            vectors = embedder.embed([first, second])
            cosines.append(round(float(np.dot(vectors[0], vectors[1])), 3))
            cache.put(scope, first, vectors[0], "answer")
            count += cache.get(scope, second, vectors[1]) is not None
        return count, cosines

    good, good_cos = hits(PARAPHRASES)
    bad, bad_cos = hits(DIFFERENT)
    by_cosine = sum(c >= similarity for c in bad_cos)
    print(f"\ncache at similarity {similarity}:")
    print(
        f"  paraphrase hit rate   {good}/{len(PARAPHRASES)} = {good / len(PARAPHRASES):.2f}  cosines {good_cos}"
    )
    print(f"  wrong-hit rate        {bad}/{len(DIFFERENT)} = {bad / len(DIFFERENT):.2f}  cosines {bad_cos}")
    print(f"  wrong hits by cosine alone (without the identifier/number rule): {by_cosine}/{len(DIFFERENT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/smoke/data"))
    parser.add_argument("--collection", default="django")
    parser.add_argument("--eval", type=Path, default=Path("tests/evals/django.jsonl"))
    parser.add_argument("--limit", type=int, default=0, help="Only the first N cases (quick runs).")
    args = parser.parse_args()
    configure_logging("WARNING")

    with tempfile.TemporaryDirectory(prefix="tune-grounding-") as tmp:
        data_dir = Path(tmp)
        shutil.copytree(
            args.data_dir / "collections" / args.collection, data_dir / "collections" / args.collection
        )
        settings = ServerSettings.load(None, data_dir=data_dir)
        embedder = shared_embedder(settings.embedding, settings.models_dir)
        catalog = Catalog(settings, embedder.model_id, embedder.dimension, interval=3600)
        service = DocService(settings, catalog, embedder, b"\0" * 32)
        answerer = Answerer(settings, service, embedder)
        base = settings.answer.grounding
        embed = memo_embed(embedder.embed)

        raw = load_cases(args.eval)
        if args.limit:
            raw = raw[: args.limit]
        cases: list[Case] = []
        for n, item in enumerate(raw, start=1):
            retrieved = answerer.retrieve_context(
                ACCESS, item["question"], collections=[args.collection], version=item.get("version")
            )
            extract = extractive_answer(
                item["question"],
                retrieved.evidence,
                embed,
                embedder.count_tokens,
                max_sentences=settings.answer.max_sentences,
                token_budget=1500 // 5,
            )
            cases.append(
                Case(
                    item["id"],
                    item["question"],
                    item["answerable"],
                    set(item["expected_sources"]),
                    item.get("version"),
                    retrieved,
                    extract.answer,
                )
            )
            sys.stderr.write(f"\r{n}/{len(raw)} answered")
        sys.stderr.write("\n")

        rows = []
        for point in variants(base):
            metrics = evaluate(cases, point, embed)
            rows.append((point, metrics))
        print(
            f"{'rel_thr':>7} {'dense/cov/margin':>16} {'thr':>5} | {'answer':>6} {'abstain':>7} {'prec':>5}"
        )
        for point, m in rows:
            weights = f"{point.dense_weight}/{point.coverage_weight}/{point.margin_weight}"
            print(
                f"{point.relevance_threshold:7.2f} {weights:>16} {point.threshold:5.2f} | "
                f"{m['answer_rate']:6.2f} {m['abstention_rate']:7.2f} {m['precision']:5.2f}"
            )
        chosen, metrics = choose(rows, base)
        print(
            f"\nchosen: relevance_threshold={chosen.relevance_threshold} dense/coverage/margin="
            f"{chosen.dense_weight}/{chosen.coverage_weight}/{chosen.margin_weight} threshold={chosen.threshold}"
        )
        print(
            f"        answer rate {metrics['answer_rate']:.2f}, abstention {metrics['abstention_rate']:.2f}, "
            f"citation precision {metrics['precision']:.2f} on {len(cases)} cases"
        )
        misses = []
        for case in cases:
            report = check(case.question, case.answer, case.retrieved.evidence, embed, chosen)
            abstain = report.abstain or any(c.missing for c in report.claims if c.weight)
            if abstain == case.answerable:
                misses.append(
                    f"  {case.id} answerable={case.answerable} relevance={report.relevance:.2f} score={report.score:.2f}"
                )
        print("disagreements at the chosen point:")
        print("\n".join(misses) or "  none")

        for similarity in (0.95, 0.97):
            measure_cache(embedder, similarity)


if __name__ == "__main__":
    main()

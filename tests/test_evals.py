"""The eval harness: ranking metrics on hand-made lists, baseline comparison, `docgate eval` end to end,
a deliberately broken fusion caught by the baseline gate, and the real corpora against committed baselines."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from indexer.embedding import Embedder
from server.evals.answers import answer_failures
from server.evals.configs import CONFIGS, retrieve_for
from server.evals.dataset import EvalCase, EvalDatasetError, load_cases, page_of
from server.evals.metrics import (
    AnswerMetrics,
    AnswerOutcome,
    RetrievalMetrics,
    answer_metrics,
    distinct_pages,
    first_relevant_rank,
    hit_at,
    mrr_at,
    ndcg_at,
    recall_at,
    retrieval_metrics,
)
from server.evals.report import AnswerReport, ConfigReport, EvalReport, compare, load_report
from server.evals.runner import run_eval
from server.retrieval.service import Access
from server.runtime import build_runtime
from tests.conftest import REPO, open_service, settings_for
from tests.eval_fixtures import git_data_dir, git_docs, mcp_data_dir, mcp_docs, scrapy_data_dir, scrapy_docs

# Session fixtures, re-exported so pytest finds them here.
__all__ = ["git_data_dir", "git_docs", "mcp_data_dir", "mcp_docs", "scrapy_data_dir", "scrapy_docs"]

BASELINES = REPO / "tests" / "evals" / "baselines"
CORPUS_TOLERANCE = 0.03

# ---------------------------------------------------------------------------------------------
# Ranking metrics


def test_page_of_drops_the_anchor_only():
    assert page_of("ref/models/fields.html#null") == "ref/models/fields.html"
    assert page_of("guides/themes.mdx") == "guides/themes.mdx"


def test_distinct_pages_keep_the_rank_of_the_best_chunk():
    chunks = ["a.html", "b.html#x", "a.html#y", "c.html", "b.html"]
    assert distinct_pages(chunks) == ["a.html", "b.html", "c.html"]


def test_single_relevant_page_at_rank_two():
    ranked = ["x", "rel", "y"]
    relevant = {"rel"}
    assert first_relevant_rank(ranked, relevant) == 2
    assert hit_at(ranked, relevant, 1) == 0.0
    assert hit_at(ranked, relevant, 5) == 1.0
    assert recall_at(ranked, relevant, 10) == 1.0
    assert mrr_at(ranked, relevant, 10) == 0.5
    assert ndcg_at(ranked, relevant, 10) == pytest.approx(1 / math.log2(3))


def test_two_relevant_pages_share_recall_and_ndcg():
    ranked = ["a", "x", "d", "y"]
    relevant = {"a", "d", "missing"}
    assert recall_at(ranked, relevant, 10) == pytest.approx(2 / 3)
    assert mrr_at(ranked, relevant, 10) == 1.0
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at(ranked, relevant, 10) == pytest.approx((1 + 1 / math.log2(4)) / ideal)


def test_a_relevant_page_below_the_cutoff_counts_for_nothing():
    ranked = [f"p{i}" for i in range(10)] + ["rel"]
    relevant = {"rel"}
    assert first_relevant_rank(ranked, relevant) is None
    assert (hit_at(ranked, relevant, 10), recall_at(ranked, relevant, 10)) == (0.0, 0.0)
    assert (mrr_at(ranked, relevant, 10), ndcg_at(ranked, relevant, 10)) == (0.0, 0.0)


def test_a_perfect_ranking_scores_one_and_an_empty_one_zero():
    assert ndcg_at(["a", "b", "z"], {"a", "b"}, 10) == pytest.approx(1.0)
    assert ndcg_at([], {"a"}, 10) == 0.0
    assert recall_at(["a"], set(), 10) == 0.0


def test_retrieval_metrics_average_over_cases():
    metrics = retrieval_metrics([(["rel", "x"], {"rel"}), (["x", "y"], {"rel"})], [10.0, 30.0])
    assert metrics.cases == 2
    assert metrics.hit_at_1 == 0.5
    assert metrics.mrr_at_10 == 0.5
    assert metrics.recall_at_10 == 0.5
    assert metrics.latency_p50_ms == 20.0


# ---------------------------------------------------------------------------------------------
# Answer metrics


def _case(
    case_id: str, *, answerable: bool = True, expected: list[str] | None = None, **extra: Any
) -> EvalCase:
    return EvalCase(
        id=case_id,
        question=f"question {case_id}?",
        expected_sources=expected if expected is not None else (["a.html#part"] if answerable else []),
        answerable=answerable,
        **extra,
    )


def _outcome(
    case: EvalCase, *, abstained: bool = False, cited: list[str] | None = None, **extra: Any
) -> AnswerOutcome:
    defaults: dict[str, Any] = {"answer": "", "grounding_score": 0.9, "latency_ms": 100.0}
    defaults.update(extra)
    return AnswerOutcome(case=case, abstained=abstained, cited_pages=cited or [], **defaults)


def test_answer_metrics_score_answers_abstentions_and_citations():
    outcomes = [
        _outcome(
            _case("1", must_mention=["blank", "null"]),
            cited=["a.html", "b.html"],
            answer="Set BLANK=True [1].",
        ),
        _outcome(
            _case("2", must_mention=["atomic"]), cited=["a.html"], answer="Use atomic() [1].", cost_usd=0.002
        ),
        _outcome(_case("3"), abstained=True, grounding_score=0.1),
        _outcome(_case("4", answerable=False), abstained=True),
        _outcome(_case("5", answerable=False), cited=["z.html"], answer="Made up [1]."),
    ]
    metrics = answer_metrics(outcomes, "extractive")
    assert (metrics.answerable_cases, metrics.unanswerable_cases) == (3, 2)
    assert metrics.answer_rate == pytest.approx(2 / 3, abs=1e-4)
    assert metrics.abstention_rate == 0.5
    assert metrics.citation_precision == pytest.approx(2 / 3, abs=1e-4)  # a.html twice of three cited
    assert metrics.must_mention_rate == pytest.approx(2 / 3, abs=1e-4)  # "null" is missing
    assert metrics.mean_grounding_score == pytest.approx(0.9)  # abstentions do not count
    assert metrics.total_cost_usd == pytest.approx(0.002)


def test_answer_failures_list_wrong_pages_missing_terms_and_wrong_abstentions():
    outcomes = [
        _outcome(_case("right", must_mention=["atomic"]), cited=["a.html"], answer="Use atomic() [1]."),
        _outcome(_case("off-page", must_mention=["atomic"]), cited=["b.html"], answer="Use atomic() [1]."),
        _outcome(_case("missing", must_mention=["atomic"]), cited=["a.html"], answer="Use a block [1]."),
        _outcome(_case("abstained"), abstained=True),
        _outcome(_case("declined", answerable=False), abstained=True),
        _outcome(_case("made-up", answerable=False), cited=["z.html"], answer="Made up [1]."),
    ]
    listed = {f.id: f for f in answer_failures(outcomes)}
    assert set(listed) == {"off-page", "missing", "abstained", "made-up"}
    assert listed["off-page"].cited == ["b.html"] and listed["off-page"].missing_terms == []
    assert listed["missing"].missing_terms == ["atomic"]


def test_per_answer_rates_count_whole_answers_not_terms():
    outcomes = [
        # Every term and an expected page: counts for both.
        _outcome(_case("1", must_mention=["blank", "null"]), cited=["a.html"], answer="blank and NULL [1]."),
        # Half the terms, a wrong page: counts for neither, although term-wise it is 1 of 2.
        _outcome(_case("2", must_mention=["atomic", "savepoint"]), cited=["b.html"], answer="atomic [1]."),
        # No terms asked for: only the page rate sees it; an expected page among two counts.
        _outcome(_case("3"), cited=["b.html", "a.html"], answer="Text [1] [2]."),
        _outcome(_case("4", must_mention=["x"]), abstained=True),  # abstained: in neither
        _outcome(_case("5", answerable=False), cited=["a.html"], answer="Made up [1]."),
    ]
    metrics = answer_metrics(outcomes, "extractive")
    assert metrics.must_mention_rate == pytest.approx(3 / 4, abs=1e-4)
    assert metrics.complete_answer_rate == pytest.approx(1 / 2, abs=1e-4)
    assert metrics.expected_page_rate == pytest.approx(2 / 3, abs=1e-4)


def test_answer_metrics_without_citations_report_no_precision():
    metrics = answer_metrics([_outcome(_case("1"), abstained=True)], "extractive")
    assert metrics.citation_precision is None
    assert metrics.must_mention_rate is None
    assert metrics.complete_answer_rate is None and metrics.expected_page_rate is None
    assert metrics.answer_rate == 0.0


# ---------------------------------------------------------------------------------------------
# Baseline comparison


def _metrics(**values: float) -> RetrievalMetrics:
    base = dict.fromkeys(
        ("hit_at_1", "hit_at_5", "hit_at_10", "recall_at_10", "mrr_at_10", "ndcg_at_10"), 0.8
    )
    base.update(values)
    return RetrievalMetrics(cases=10, **base)


def _report(
    configs: dict[str, RetrievalMetrics], answers: Mapping[str, float | None] | None = None
) -> EvalReport:
    answer_report = None
    if answers is not None:
        answer_report = AnswerReport(
            metrics=AnswerMetrics(
                backend="extractive",
                answerable_cases=8,
                unanswerable_cases=2,
                mean_grounding_score=0.9,
                latency_p50_ms=1.0,
                latency_p95_ms=1.0,
                mean_input_tokens=0,
                mean_output_tokens=0,
                mean_cost_usd=0,
                total_cost_usd=0,
                errors=0,
                cached_results=0,
                must_mention_rate=None,
                **answers,
            ),
            failures=[],
        )
    return EvalReport(
        dataset="d.jsonl",
        dataset_sha256="0" * 64,
        cases=10,
        answerable=8,
        collection="c",
        version=None,
        depth=30,
        created_at="2026-01-01T00:00:00+00:00",
        settings={},
        configs={
            name: ConfigReport(mode="hybrid", rewrites=True, metrics=m, ranks={}, failures=[])
            for name, m in configs.items()
        },
        answers=answer_report,
    )


def test_drops_beyond_the_tolerance_are_regressions_and_gains_are_not():
    baseline = _report({"full": _metrics(), "bm25": _metrics(recall_at_10=0.5)})
    current = _report({"full": _metrics(mrr_at_10=0.75, ndcg_at_10=0.79), "bm25": _metrics(recall_at_10=0.9)})
    regressions = compare(current, baseline, tolerance=0.02)
    assert [(r.scope, r.metric) for r in regressions] == [("full", "mrr_at_10")]
    assert regressions[0].drop == pytest.approx(0.05)


def test_a_drop_equal_to_the_tolerance_passes():
    baseline = _report({"full": _metrics(recall_at_10=0.80)})
    assert compare(_report({"full": _metrics(recall_at_10=0.78)}), baseline, tolerance=0.02) == []


def test_answer_metrics_are_compared_when_both_reports_have_them():
    good = {"answer_rate": 0.9, "abstention_rate": 0.9, "citation_precision": 0.8}
    worse = {"answer_rate": 0.9, "abstention_rate": 0.5, "citation_precision": None}
    regressions = compare(_report({}, worse), _report({}, good), tolerance=0.02)
    assert [(r.scope, r.metric) for r in regressions] == [
        ("answers", "abstention_rate"),
        ("answers", "citation_precision"),
    ]
    assert compare(_report({}), _report({}, good), tolerance=0.02) == []  # --no-answers run


def test_configurations_missing_on_one_side_are_not_compared():
    assert compare(_report({}), _report({"full": _metrics()}), tolerance=0.0) == []


# ---------------------------------------------------------------------------------------------
# Datasets


def test_cases_load_with_anchors_removed_from_expected_pages(tmp_path: Path):
    path = tmp_path / "set.jsonl"
    path.write_text(
        '{"id": "a", "question": "q?", "expected_sources": ["x.html#y"], "answerable": true}\n\n'
        '{"id": "b", "question": "r?", "expected_sources": [], "answerable": false, "version": "2"}\n'
    )
    cases = load_cases(path)
    assert [c.id for c in cases] == ["a", "b"]
    assert cases[0].expected_pages == {"x.html"}
    assert cases[1].version == "2"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "question": "q?", "answerable": true}\nnot json\n', "set.jsonl:2"),
        ('{"id": "a", "question": "q?"}\n', "set.jsonl:1"),
        ('{"id": "a", "question": "q?", "answerable": true}\n' * 2, "duplicate case id 'a'"),
        ("\n", "no eval cases"),
    ],
)
def test_malformed_datasets_are_rejected_with_the_line(tmp_path: Path, content: str, message: str):
    path = tmp_path / "set.jsonl"
    path.write_text(content)
    with pytest.raises(EvalDatasetError, match=message):
        load_cases(path)


def test_the_committed_baselines_are_readable_reports():
    for name in ("django.json", "mcp-spec.json"):
        report = load_report(BASELINES / name)
        assert {"bm25", "dense", "hybrid_no_rewrite", "full"} <= set(report.configs)
        assert report.answers is not None
    for name in ("scrapy-faq.json", "git-faq.json"):
        report = load_report(BASELINES / name)
        assert set(report.configs) == {"bm25", "dense", "rrf60", "hybrid_no_rewrite", "full"}


# ---------------------------------------------------------------------------------------------
# `docgate eval` on the fixture corpus

LUMEN_CASES = [
    {
        "id": "l-1",
        "question": "Which Python function renders every page, and what does it return?",
        "expected_sources": ["reference/api.html#lumen.build_site"],
        "answerable": True,
        "must_mention": ["build_site"],
        "version": None,
    },
    {
        "id": "l-2",
        "question": "Where does the build cache live and how do I move it?",
        "expected_sources": ["guides/configuration.rst"],
        "answerable": True,
        "must_mention": ["LUMEN_CACHE_DIR"],
        "version": None,
    },
    {
        "id": "l-3",
        "question": "How do I switch my site to the ink theme?",
        "expected_sources": ["guides/themes.mdx"],
        "answerable": True,
        "must_mention": ["theme"],
        "version": None,
    },
    {
        "id": "l-4",
        "question": "Can file names contain accented letters such as é?",
        "expected_sources": ["legacy/faq-latin1.txt"],
        "answerable": True,
        "must_mention": [],
        "version": None,
    },
    {
        "id": "l-5",
        "question": "How do I keep unfinished pages from being published?",
        "expected_sources": ["guides/configuration.rst"],
        "answerable": True,
        "must_mention": ["draft"],
        "version": None,
    },
    {
        "id": "l-6",
        "question": "How do I deploy Lumen on Kubernetes with a Helm chart?",
        "expected_sources": [],
        "answerable": False,
        "must_mention": [],
        "version": None,
    },
]


@pytest.fixture
def lumen_eval(tmp_path: Path, lumen_data_dir: Path) -> tuple[Path, Path]:
    """A private copy of the fixture index (the server keeps state files there) and a dataset."""
    data_dir = tmp_path / "data"
    shutil.copytree(lumen_data_dir, data_dir, dirs_exist_ok=True)
    dataset = tmp_path / "lumen.jsonl"
    dataset.write_text("".join(json.dumps(c) + "\n" for c in LUMEN_CASES), encoding="utf-8")
    return data_dir, dataset


def _eval(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOCGATE_")}
    environment["DOCGATE_DATA_DIR"] = str(data_dir)
    environment["DOCGATE_EMBEDDING__MODEL_DIR"] = os.environ["DOCGATE_EMBEDDING__MODEL_DIR"]
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "eval", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_eval_reports_every_configuration_and_the_answers(lumen_eval: tuple[Path, Path], tmp_path: Path):
    data_dir, dataset = lumen_eval
    out = tmp_path / "report.json"
    run = _eval(data_dir, str(dataset), "--collection", "lumen", "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "recall@10" in run.stdout and "answer rate" in run.stdout

    report = json.loads(out.read_text())
    assert report["cases"] == 6 and report["answerable"] == 5
    assert len(report["dataset_sha256"]) == 64
    assert set(report["configs"]) == {"bm25", "dense", "rrf60", "hybrid_no_rewrite", "full"}
    full = report["configs"]["full"]
    assert (full["mode"], full["rewrites"]) == ("hybrid", True)
    assert full["overrides"] == {}
    plain = report["configs"]["rrf60"]
    assert (plain["mode"], plain["rewrites"]) == ("hybrid", False)
    assert plain["overrides"] == {"bm25_weight": 1.0, "dense_weight": 1.0, "rrf_k": 60, "fusion": "plain"}
    assert full["metrics"]["cases"] == 5
    assert full["metrics"]["hit_at_5"] == 1.0
    assert full["metrics"]["mrr_at_10"] >= 0.8
    assert set(full["ranks"]) == {"l-1", "l-2", "l-3", "l-4", "l-5"}
    assert report["settings"]["retrieval"]["rrf_k"] >= 1

    answers = report["answers"]["metrics"]
    assert answers["backend"] == "extractive"
    assert (answers["answerable_cases"], answers["unanswerable_cases"]) == (5, 1)
    assert answers["abstention_rate"] == 1.0  # nothing about Kubernetes in the corpus
    assert answers["answer_rate"] >= 0.6
    assert answers["errors"] == 0
    assert report["answers"]["cache"]["misses"] == 6

    # A baseline claiming better retrieval than this index can give: the gate exits 3 and says why.
    inflated = json.loads(out.read_text())
    inflated["configs"]["full"]["metrics"]["recall_at_10"] = 1.5
    inflated["configs"]["dense"]["metrics"]["mrr_at_10"] = 1.5
    baseline = tmp_path / "inflated.json"
    baseline.write_text(json.dumps(inflated))
    gate = _eval(data_dir, str(dataset), "-c", "lumen", "--no-answers", "--baseline", str(baseline))
    assert gate.returncode == 3, gate.stderr[-2000:]
    assert "full.recall_at_10" in gate.stdout and "dense.mrr_at_10" in gate.stdout
    assert "2 metric(s) regressed" in gate.stderr

    # Against its own report the same index passes.
    same = _eval(data_dir, str(dataset), "-c", "lumen", "--no-answers", "--baseline", str(out))
    assert same.returncode == 0, same.stderr[-2000:]


def test_broken_fusion_weights_fail_the_baseline_gate(lumen_eval: tuple[Path, Path], tmp_path: Path):
    data_dir, dataset = lumen_eval
    good = tmp_path / "good.json"
    run = _eval(data_dir, str(dataset), "-c", "lumen", "--no-answers", "--out", str(good))
    assert run.returncode == 0, run.stderr[-2000:]

    # Dense switched off and BM25 almost so: fusion is left with BM25's order alone.
    broken = _eval(
        data_dir,
        str(dataset),
        "-c",
        "lumen",
        "--no-answers",
        "--baseline",
        str(good),
        "--tolerance",
        "0.05",
        DOCGATE_RETRIEVAL__DENSE_WEIGHT="0",
        DOCGATE_RETRIEVAL__BM25_WEIGHT="0.01",
    )
    assert broken.returncode == 3, broken.stdout[-2000:]
    assert "full.mrr_at_10" in broken.stdout


def test_the_rrf60_baseline_is_plain_equal_weight_rrf_and_leaves_the_service_alone(
    lumen_data_dir: Path, model_dir: Path, embedder: Embedder
):
    service = open_service(lumen_data_dir, model_dir, embedder)
    access = Access(tenant="eval", allowed=lambda _name: True)
    plain = next(c for c in CONFIGS if c.name == "rrf60")
    question = "Where does the build cache live and how do I move it?"

    result = retrieve_for(service, access, question, "lumen", None, plain, depth=10)

    assert result.candidates
    for candidate in result.candidates:
        expected = sum(1 / (60 + r) for r in (candidate.bm25_rank, candidate.dense_rank) if r is not None)
        assert candidate.score == pytest.approx(expected)
    assert result.variants == [question]  # no rewrites
    # The served settings are untouched: `full` still fuses with its own weights.
    assert service.settings.retrieval.rrf_k != 60
    full = next(c for c in CONFIGS if c.name == "full")
    served = retrieve_for(service, access, question, "lumen", None, full, depth=10)
    assert served.candidates[0].score > 2 / 61


def test_eval_of_an_unknown_collection_fails_with_a_message(lumen_eval: tuple[Path, Path]):
    data_dir, dataset = lumen_eval
    run = _eval(data_dir, str(dataset), "-c", "nope", "--no-answers")
    assert run.returncode == 2
    assert "unknown collection 'nope'" in run.stderr


# ---------------------------------------------------------------------------------------------
# The real corpora against the committed baselines (minutes: each corpus is indexed once per session)


def _corpus_eval(
    source_dir: Path,
    scratch: Path,
    model_dir: Path,
    dataset: Path,
    collection: str,
    *,
    answers: bool,
    **kw: Any,
) -> EvalReport:
    data_dir = scratch / "data"
    if not data_dir.exists():  # a private copy: the runtime keeps state files in its data dir
        shutil.copytree(source_dir, data_dir)
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith("DOCGATE_")]:
            env.delenv(name)
        runtime = build_runtime(settings_for(data_dir, model_dir))
        return run_eval(
            runtime.settings,
            runtime.service,
            runtime.answerer if answers else None,
            dataset,
            collection=collection,
            **kw,
        )


@pytest.fixture(scope="module")
def django_report(
    tmp_path_factory: pytest.TempPathFactory, django_data_dir: Path, model_dir: Path
) -> EvalReport:
    scratch = tmp_path_factory.mktemp("django-eval")
    dataset = REPO / "tests" / "evals" / "django.jsonl"
    return _corpus_eval(django_data_dir, scratch, model_dir, dataset, "django", answers=True, version="3.2")


@pytest.fixture(scope="module")
def mcp_report(tmp_path_factory: pytest.TempPathFactory, mcp_data_dir: Path, model_dir: Path) -> EvalReport:
    scratch = tmp_path_factory.mktemp("mcp-eval")
    dataset = REPO / "tests" / "evals" / "mcp-spec.jsonl"
    return _corpus_eval(mcp_data_dir, scratch, model_dir, dataset, "mcp", answers=True)


def _assert_hybrid_beats_single_retrievers(report: EvalReport) -> None:
    full = report.configs["full"].metrics
    for single in ("bm25", "dense"):
        other = report.configs[single].metrics
        # Recall ties where no retriever reaches the last expected pages; fusion must not lose any.
        assert full.recall_at_10 >= other.recall_at_10, (single, full, other)
        assert full.mrr_at_10 > other.mrr_at_10, (single, full, other)


def _assert_matches_baseline(report: EvalReport, name: str) -> None:
    baseline = load_report(BASELINES / name)
    assert report.dataset_sha256 == baseline.dataset_sha256, f"{name} was made from another dataset version"
    regressions = compare(report, baseline, CORPUS_TOLERANCE)
    assert not regressions, [f"{r.scope}.{r.metric}: {r.baseline} -> {r.current}" for r in regressions]


@pytest.mark.corpus
@pytest.mark.slow
def test_django_eval_holds_its_baseline(django_report: EvalReport):
    _assert_matches_baseline(django_report, "django.json")


@pytest.mark.corpus
@pytest.mark.slow
def test_django_hybrid_retrieval_beats_bm25_and_dense(django_report: EvalReport):
    _assert_hybrid_beats_single_retrievers(django_report)


@pytest.mark.corpus
@pytest.mark.slow
def test_django_extractive_answers_answer_and_abstain_as_targeted(django_report: EvalReport):
    assert django_report.answers is not None
    answers = django_report.answers.metrics
    assert answers.backend == "extractive"
    assert answers.errors == 0
    assert answers.answer_rate >= 0.85
    assert answers.abstention_rate >= 0.85


@pytest.mark.corpus
@pytest.mark.slow
def test_django_extractive_citations_are_precise_and_mention_what_they_must(django_report: EvalReport):
    _assert_answers_cite_expected_pages_and_name_the_terms(django_report)


def _assert_answers_cite_expected_pages_and_name_the_terms(report: EvalReport) -> None:
    """Citation precision ≥ 0.8 and must-mention rate ≥ 0.6 for the extractive backend."""
    assert report.answers is not None
    metrics = report.answers.metrics
    assert metrics.citation_precision is not None and metrics.citation_precision >= 0.8, metrics
    assert metrics.must_mention_rate is not None and metrics.must_mention_rate >= 0.6, metrics


@pytest.mark.corpus
@pytest.mark.slow
def test_django_faq_derived_set_is_retrieved(
    tmp_path_factory: pytest.TempPathFactory, django_data_dir: Path, django_docs: Path, model_dir: Path
):
    """Questions and labels written by the docs' own authors: a second, independent retrieval check."""
    scratch = tmp_path_factory.mktemp("faq-eval")
    faq = scratch / "faq.jsonl"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "faq_eval_set.py"), str(django_docs), str(faq)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    report = _corpus_eval(django_data_dir, scratch, model_dir, faq, "django", answers=False, version="3.2")
    full, bm25, dense = (report.configs[name].metrics for name in ("full", "bm25", "dense"))
    assert full.cases >= 20
    assert full.hit_at_10 >= 0.6
    assert full.recall_at_10 >= bm25.recall_at_10
    assert full.mrr_at_10 > max(bm25.mrr_at_10, dense.mrr_at_10)


@pytest.mark.corpus
@pytest.mark.slow
def test_mcp_spec_eval_holds_its_baseline(mcp_report: EvalReport):
    _assert_matches_baseline(mcp_report, "mcp-spec.json")


@pytest.mark.corpus
@pytest.mark.slow
def test_mcp_spec_hybrid_retrieval_beats_bm25_and_dense(mcp_report: EvalReport):
    _assert_hybrid_beats_single_retrievers(mcp_report)


@pytest.mark.corpus
@pytest.mark.slow
def test_mcp_spec_extractive_citations_are_precise_and_mention_what_they_must(mcp_report: EvalReport):
    _assert_answers_cite_expected_pages_and_name_the_terms(mcp_report)


# ---------------------------------------------------------------------------------------------
# Held-out FAQ sets (docgate's fusion settings were never tuned on them): Scrapy and Git


def _assert_at_least_as_good_as_plain_methods(report: EvalReport) -> None:
    """The served pipeline is no worse than BM25 alone, dense alone and plain RRF (k = 60)."""
    full = report.configs["full"].metrics
    for plain in ("bm25", "dense", "rrf60"):
        other = report.configs[plain].metrics
        assert full.recall_at_10 >= other.recall_at_10, (plain, full, other)
        assert full.mrr_at_10 >= other.mrr_at_10, (plain, full, other)


@pytest.fixture(scope="module")
def scrapy_report(
    tmp_path_factory: pytest.TempPathFactory, scrapy_data_dir: Path, model_dir: Path
) -> EvalReport:
    scratch = tmp_path_factory.mktemp("scrapy-eval")
    dataset = REPO / "tests" / "evals" / "scrapy-faq.jsonl"
    return _corpus_eval(scrapy_data_dir, scratch, model_dir, dataset, "scrapy", answers=False)


@pytest.fixture(scope="module")
def git_report(tmp_path_factory: pytest.TempPathFactory, git_data_dir: Path, model_dir: Path) -> EvalReport:
    scratch = tmp_path_factory.mktemp("git-eval")
    dataset = REPO / "tests" / "evals" / "git-faq.jsonl"
    return _corpus_eval(git_data_dir, scratch, model_dir, dataset, "git", answers=False)


@pytest.mark.corpus
@pytest.mark.slow
def test_scrapy_faq_eval_holds_its_baseline(scrapy_report: EvalReport):
    _assert_matches_baseline(scrapy_report, "scrapy-faq.json")


@pytest.mark.corpus
@pytest.mark.slow
def test_scrapy_full_pipeline_is_at_least_as_good_as_plain_methods(scrapy_report: EvalReport):
    _assert_at_least_as_good_as_plain_methods(scrapy_report)


@pytest.mark.corpus
@pytest.mark.slow
def test_git_faq_eval_holds_its_baseline(git_report: EvalReport):
    _assert_matches_baseline(git_report, "git-faq.json")


@pytest.mark.corpus
@pytest.mark.slow
def test_git_full_pipeline_is_at_least_as_good_as_plain_methods(git_report: EvalReport):
    _assert_at_least_as_good_as_plain_methods(git_report)


# ---------------------------------------------------------------------------------------------
# Near-domain abstention: a neighbouring product's questions, asked of a collection that lacks it


@pytest.mark.corpus
@pytest.mark.slow
def test_near_domain_questions_are_abstained_on_while_answerable_ones_are_answered(
    tmp_path_factory: pytest.TempPathFactory,
    django_data_dir: Path,
    mcp_data_dir: Path,
    model_dir: Path,
    django_report: EvalReport,
    mcp_report: EvalReport,
):
    """MCP questions of the Django index, Django questions of the MCP index, other products in their words."""
    scratch = tmp_path_factory.mktemp("near-domain")
    datasets = REPO / "tests" / "evals"
    django = _corpus_eval(
        django_data_dir,
        scratch / "django",
        model_dir,
        datasets / "django-near-domain.jsonl",
        "django",
        answers=True,
        version="3.2",
    )
    mcp = _corpus_eval(
        mcp_data_dir, scratch / "mcp", model_dir, datasets / "mcp-near-domain.jsonl", "mcp", answers=True
    )
    near = [r.answers.metrics for r in (django, mcp) if r.answers is not None]
    cases = sum(m.unanswerable_cases for m in near)
    abstained = sum(m.abstention_rate * m.unanswerable_cases for m in near)
    assert cases >= 30
    assert abstained / cases >= 0.9, [m.abstention_rate for m in near]
    for report in (django_report, mcp_report):  # the answerable questions are still answered
        assert report.answers is not None
        assert report.answers.metrics.answer_rate >= 0.9


def test_with_a_reranker_configured_the_eval_adds_a_reranked_configuration(
    lumen_eval: tuple[Path, Path], tmp_path: Path, embedder
):
    from tests.fake_services import FakeServices

    data_dir, dataset = lumen_eval
    out = tmp_path / "reranked.json"
    with FakeServices(embedder) as fake:
        run = _eval(
            data_dir,
            str(dataset),
            "-c",
            "lumen",
            "--no-answers",
            "--out",
            str(out),
            DOCGATE_RETRIEVAL__RERANK__ENABLED="true",
            DOCGATE_RETRIEVAL__RERANK__URL=fake.url + "/rerank",
        )
        reranked_requests = len(fake.requests)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["configs"]) == {"bm25", "dense", "rrf60", "hybrid_no_rewrite", "full", "reranked"}
    # Only `reranked` asked the reranker (once per answerable case; the agent runs serve as configured).
    assert report["configs"]["full"]["overrides"]["rerank"]["enabled"] is False
    assert report["configs"]["reranked"]["overrides"] == {}
    assert reranked_requests >= report["answerable"]
    assert report["configs"]["reranked"]["metrics"]["cases"] == 5

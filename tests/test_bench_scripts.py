"""The benchmark scripts still run end to end on tiny inputs (their timings are never asserted)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import FIXTURE_CORPUS, REPO

SCRIPTS = REPO / "scripts"


def run_script(name: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    # The child inherits os.environ, so it uses this test's data dir and the session's model.
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS / name), *arguments],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def read_report(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return report


def test_index_benchmark_reports_build_raw_embedding_and_update(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "index.json"

    completed = run_script(
        "bench_index.py", "--corpus", str(FIXTURE_CORPUS), "--limit-docs", "5", "--out", str(out)
    )

    report = read_report(out)
    assert "indexer / raw throughput" in completed.stdout
    assert report["machine"]["cpu_count"] >= 1
    assert 0 < report["documents"] <= 5
    assert report["chunks"] > 0
    build = report["build"]
    for key in ("seconds", "docs_per_s", "chunks_per_s", "embed_seconds", "peak_rss_mb"):
        assert build[key] > 0, key
    assert report["raw_embedding"]["seconds"] > 0
    assert report["raw_embedding"]["chunks_per_s"] > 0
    assert report["ratio_indexer_to_raw"] > 0
    update = report["update_no_change"]
    assert update["status"] == "unchanged"
    assert update["chunks_embedded"] == 0
    assert update["seconds"] > 0
    assert update["ratio_to_build"] > 0
    assert set(report["targets_met"]) == {"indexer_to_raw", "update_no_change"}
    assert all(isinstance(value, bool) for value in report["targets_met"].values())


def test_search_benchmark_reports_every_series_with_spans(tmp_path: Path, lumen_data_dir: Path) -> None:
    data_dir = tmp_path / "lumen"
    shutil.copytree(lumen_data_dir, data_dir)  # the runtime writes a cursor key into its data dir
    out = tmp_path / "search.json"

    completed = run_script(
        "bench_search.py",
        "--data-dir",
        str(data_dir),
        "--collection",
        "lumen",
        "--queries",
        "10",
        "--out",
        str(out),
    )

    report = read_report(out)
    assert "hybrid / dense p95" in completed.stdout
    assert report["queries"]["generated"] == 10
    assert report["queries"]["total"] >= 10
    assert report["chunks"] > 0
    assert set(report["series"]) == {"bm25", "dense", "hybrid", "search"}
    for name, series in report["series"].items():
        assert series["count"] == report["queries"]["total"], name
        for key in ("p50_ms", "p95_ms", "p99_ms", "mean_ms"):
            assert series[key] > 0, (name, key)
        assert series["p50_ms"] <= series["p95_ms"] <= series["p99_ms"] <= series["max_ms"]
        assert series["mean_results"] > 0, name
    assert {"bm25", "embed", "dense", "fuse"} <= set(report["series"]["hybrid"]["span_means_ms"])
    assert "embed" not in report["series"]["bm25"]["span_means_ms"]
    assert report["hybrid_to_dense_p95"] > 0
    assert set(report["targets_met"]) == {"hybrid_p95", "hybrid_to_dense_p95"}


def test_remote_benchmark_reports_both_paths_and_the_rerank_cost(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "remote.json"

    completed = run_script(
        "bench_remote.py",
        "--corpus",
        str(FIXTURE_CORPUS),
        "--limit-docs",
        "4",
        "--rounds",
        "1",
        "--queries",
        "6",
        "--rerank-delay-ms",
        "30",
        "--out",
        str(out),
    )

    report = read_report(out)
    assert "ratio remote / in process" in completed.stdout
    build = report["build"]
    assert set(build["runs"]) == {"in_process", "remote"}
    for series in build["runs"].values():
        assert series[0]["chunks"] > 0 and series[0]["chunks_per_s"] > 0
    assert build["runs"]["in_process"][0]["chunks"] == build["runs"]["remote"][0]["chunks"]
    assert build["runs"]["remote"][0]["embedding_tokens"] > 0
    assert build["ratio_remote_to_in_process"] > 0
    search = report["search"]
    assert search["degraded_searches"] == 0
    # The stage sleeps 30 ms per search, so the reranked series cannot be faster by that much.
    assert search["latency"]["with_rerank"]["p50_ms"] > search["latency"]["without_rerank"]["p50_ms"]
    assert set(report["targets_met"]) == {"remote_build", "rerank_cost"}


def test_query_int8_benchmark_reports_both_sessions_and_their_agreement(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "query_int8.json"
    questions = tmp_path / "questions.jsonl"
    asked = ["How do I cache a view?", "where does the build cache live", "How do I cancel a request?"]
    questions.write_text("".join(json.dumps({"question": q}) + "\n" for q in asked), encoding="utf-8")

    completed = run_script(
        "bench_query_int8.py", "--questions", str(questions), "--rounds", "2", "--out", str(out)
    )

    report = read_report(out)
    assert "ms of CPU per query" in completed.stdout
    assert report["questions"] == 3
    assert all(len(series) == 2 for series in report["cpu_ms_per_query"].values())
    assert report["ratio_int8_to_published"] > 0
    assert 0.98 <= report["cosine"]["min"] <= report["cosine"]["mean"] < 1.0
    assert set(report["targets_met"]) == {"cpu_ratio_le_0_8", "cosine_min_ge_0_98"}

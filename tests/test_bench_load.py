"""The load benchmark runs real MCP clients against a real server and reports without errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_load_benchmark_reports_latency_per_tool_and_no_errors(lumen_data_dir: Path, tmp_path: Path):
    out = tmp_path / "load.json"
    # The child inherits os.environ: the session's model; the data dir is copied, never served in place.
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench_load.py"),
            "--data-dir",
            str(lumen_data_dir),
            "--clients",
            "3",
            "--requests",
            "30",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr[-3000:] + completed.stdout[-3000:]
    report = json.loads(out.read_text())
    assert (report["clients"], report["requests"], report["errors"]) == (3, 30, 0)
    assert report["throughput_rps"] > 0
    tools = report["tools"]
    assert tools["search"]["count"] + tools["fetch_chunk"]["count"] == 30
    assert tools["search"]["count"] > 0
    for stats in tools.values():
        assert set(stats) == {"count", "errors", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms"}
        assert stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    # The server's own trace events: the timed calls plus one warm-up search per client.
    server = report["server"]["tools"]
    assert server["search"]["calls"] == tools["search"]["count"] + 3
    assert {"bm25", "embed", "dense", "fuse"} <= set(server["search"]["spans"])
    assert report["server"]["error_codes"] == {}
    assert set(report["targets"]) == {"search_p95_ms", "search_p95_met", "zero_errors"}
    assert json.loads(completed.stdout)["requests"] == 30

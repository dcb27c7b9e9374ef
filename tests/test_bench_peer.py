"""The parts of the peer benchmark that need no peer: the offline model cache layout, the CPU clock
and the per-stage breakdown read back from docgate's trace events."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))

import bench_peer


def test_model_cache_has_the_hugging_face_layout_fastembed_resolves(model_dir: Path, tmp_path: Path) -> None:
    cache = bench_peer.peer_model_cache(model_dir, tmp_path / "cache")
    repo = cache / "models--Qdrant--all-MiniLM-L6-v2-onnx"
    snapshot = (repo / "refs" / "main").read_text()
    assert len(snapshot) == 40 and all(c in "0123456789abcdef" for c in snapshot)
    files = repo / "snapshots" / snapshot
    for name in ("model.onnx", "tokenizer.json", "tokenizer_config.json", "config.json"):
        assert (files / name).read_bytes() == (model_dir / name).read_bytes()


def test_cpu_clock_advances_with_work() -> None:
    before = bench_peer.cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    assert bench_peer.cpu_seconds(os.getpid()) - before >= 0.2


def test_stage_breakdown_reads_only_the_phase_and_counts_missing_spans_as_zero(tmp_path: Path) -> None:
    def event(latency: float, spans: dict[str, float], tool: str = "search") -> str:
        return json.dumps(
            {"event": "tool_call", "tool": tool, "outcome": "ok", "latency_ms": latency, "spans_ms": spans}
        )

    log = tmp_path / "docgate.log"
    log.write_text(
        "\n".join(
            [
                event(999.0, {"embed": 999.0}),  # before the phase: skipped
                "not json",
                event(10.0, {"embed": 4.0, "deepen": 2.0}),
                event(20.0, {"embed": 6.0}),
                event(50.0, {"embed": 50.0}, tool="fetch_chunk"),
            ]
        )
        + "\n"
    )
    breakdown = bench_peer.stage_breakdown(log, skip_lines=1)
    assert breakdown["calls"] == 2
    stages = breakdown["stages"]
    assert stages["in_server_total"]["mean_ms"] == 15.0
    assert stages["embed"]["mean_ms"] == 5.0
    assert stages["deepen"] == {"mean_ms": 1.0, "p50_ms": 2.0, "calls_with_span": 1}

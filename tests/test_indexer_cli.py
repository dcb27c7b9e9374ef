"""`docgate-index` as a user runs it: subprocesses, JSON output, exit codes, and a kill -9 mid-build."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexer import generations as gens
from tests.conftest import FIXTURE_CORPUS


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "indexer.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ.copy(),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr[-2000:]}")
    return result


def test_build_list_stats_verify_drop_with_json(isolated_env):
    built = json.loads(
        run(
            "build", "--collection", "lumen", "--source", str(FIXTURE_CORPUS), "--version", "1.0", "--json"
        ).stdout
    )
    assert built["status"] == "published" and built["generation"] == 1 and built["chunks"] > 0

    listed = json.loads(run("list", "--json").stdout)
    assert [row["collection"] for row in listed] == ["lumen"]
    assert {"documents", "chunks", "generation", "model", "created_at"} <= set(listed[0])

    stats = json.loads(run("stats", "lumen", "--json").stdout)
    assert stats["documents"] == built["documents"] and stats["chunks"] == built["chunks"]
    assert stats["bm25_bytes"] > 0 and stats["vector_bytes"] > 0

    verified = run("verify", "lumen", "--json")
    assert json.loads(verified.stdout)["ok"] is True

    unchanged = json.loads(
        run(
            "update", "--collection", "lumen", "--source", str(FIXTURE_CORPUS), "--version", "1.0", "--json"
        ).stdout
    )
    assert unchanged["status"] == "unchanged" and unchanged["chunks_embedded"] == 0

    run("drop", "lumen")
    assert json.loads(run("list", "--json").stdout) == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("build", "--collection", "x", "--source", "/no/such/dir"), 2, "does not exist"),
        (("build", "--collection", "../evil", "--source", str(FIXTURE_CORPUS)), 2, "invalid collection name"),
        (("stats", "missing"), 3, "does not exist"),
        (("verify", "missing"), 3, "does not exist"),
        (("drop", "missing"), 3, "does not exist"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(args, code, message):
    result = run(*args, check=False)
    assert result.returncode == code
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in result.stderr


def test_corrupt_generation_exits_with_clear_message(isolated_env):
    run("build", "--collection", "lumen", "--source", str(FIXTURE_CORPUS))
    (isolated_env / "collections" / "lumen" / "gen-1" / "manifest.json").write_text(
        "{not json", encoding="utf-8"
    )
    result = run("stats", "lumen", check=False)
    assert result.returncode == 4
    assert "unreadable" in result.stderr and "Traceback" not in result.stderr


def _big_corpus(target: Path, copies: int) -> Path:
    for i in range(copies):
        shutil.copytree(FIXTURE_CORPUS, target / f"copy-{i:02d}")
    return target


def test_kill_9_mid_build_leaves_previous_generation_served_and_next_build_cleans_up(isolated_env, tmp_path):
    from indexer.status import verify_collection
    from server.settings import ServerSettings

    corpus = _big_corpus(tmp_path / "big", 1)
    run("build", "--collection", "lumen", "--source", str(corpus))
    settings = ServerSettings.load()
    assert verify_collection(settings, "lumen").ok

    _big_corpus(tmp_path / "big2", 12)
    for i in range(12):
        shutil.move(str(tmp_path / "big2" / f"copy-{i:02d}"), str(corpus / f"more-{i:02d}"))
    process = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "build", "--collection", "lumen", "--source", str(corpus)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    new_gen = isolated_env / "collections" / "lumen" / "gen-2"
    deadline = time.monotonic() + 120
    while not (new_gen / "vectors").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (new_gen / "vectors").exists(), "the build never started writing"
    time.sleep(1.0)  # well inside embedding: hundreds of chunks at tens per second
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    assert gens.current_generation(settings.collections_dir, "lumen") == 1
    assert verify_collection(settings, "lumen").ok
    assert not (new_gen / "manifest.json").exists()

    # The server side opens the old generation as if nothing happened.
    from indexer.embedding import shared_embedder
    from server.retrieval.catalog import Catalog

    embedder = shared_embedder(settings.embedding, settings.models_dir)
    catalog = Catalog(settings, embedder.model_id, embedder.dimension)
    assert catalog.view().generations == {"lumen": 1}

    # The next build removes the leftover and publishes cleanly.
    rebuilt = json.loads(
        run("build", "--collection", "lumen", "--source", str(FIXTURE_CORPUS), "--json").stdout
    )
    assert rebuilt["generation"] == 3
    assert not new_gen.exists()
    assert verify_collection(settings, "lumen").ok

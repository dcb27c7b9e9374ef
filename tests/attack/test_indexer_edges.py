"""Review items on the indexer: drop against a running build, leftovers of a failed build, and
files too large to index, which must be named rather than dropped silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from indexer import generations as gens
from indexer.settings import IndexerSettings
from indexer.sources import MAX_FILE_BYTES


def index_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "indexer.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ.copy(),
    )


def _folder(root: Path, *, oversized: int = 0) -> Path:
    root.mkdir()
    (root / "index.md").write_text(
        "# Lumen\n\nThe orchid theme ships with every install.\n", encoding="utf-8"
    )
    for n in range(oversized):
        with (root / f"dump-{n}.md").open("wb") as handle:
            handle.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    return root


def test_drop_while_a_build_holds_the_lock_exits_7_and_keeps_the_collection(
    isolated_env: Path, tmp_path: Path
) -> None:
    source = _folder(tmp_path / "docs")
    assert index_cli("build", "--collection", "lumen", "--source", str(source)).returncode == 0
    collections = IndexerSettings.load(None).collections_dir
    with gens.build_lock(collections, "lumen"):  # as a running build holds it
        dropped = index_cli("drop", "lumen")
    assert dropped.returncode == 7, dropped.stderr
    assert "Traceback" not in dropped.stderr and "running" in dropped.stderr
    assert (collections / "lumen" / "CURRENT").is_file()
    assert index_cli("drop", "lumen").returncode == 0


def test_failed_first_build_leaves_no_collection_directory(isolated_env: Path, tmp_path: Path) -> None:
    source = tmp_path / "nothing"
    source.mkdir()
    (source / "image.png").write_bytes(b"\x89PNG")
    failed = index_cli("build", "--collection", "ghost", "--source", str(source))
    assert failed.returncode != 0
    assert not (IndexerSettings.load(None).collections_dir / "ghost").exists()


def test_oversized_files_in_a_folder_are_reported_as_skipped_by_name(
    isolated_env: Path, tmp_path: Path
) -> None:
    source = _folder(tmp_path / "docs", oversized=2)
    built = index_cli("build", "--collection", "lumen", "--source", str(source), "--json")
    assert built.returncode == 0, built.stderr
    summary = json.loads(built.stdout)
    skipped = {s["path"]: s["reason"] for s in summary["skipped_files"]}
    assert set(skipped) == {"dump-0.md", "dump-1.md"}
    assert all("MiB limit" in reason for reason in skipped.values())
    assert summary["documents_skipped"] == 2 and summary["documents"] == 1
    terminal = index_cli("build", "--collection", "other", "--source", str(source))
    assert terminal.returncode == 0
    assert "skipped dump-0.md" in terminal.stderr and "skipped dump-1.md" in terminal.stderr


def test_oversized_file_given_as_the_source_is_refused(isolated_env: Path, tmp_path: Path) -> None:
    source = _folder(tmp_path / "docs", oversized=1) / "dump-0.md"
    refused = index_cli("build", "--collection", "lumen", "--source", str(source))
    assert refused.returncode != 0
    assert "MiB limit" in refused.stderr and "Traceback" not in refused.stderr
    assert refused.stderr.strip().count("\n") == 0


def test_stats_measures_sizes_from_files_and_hides_an_unfinished_generation(
    isolated_env: Path, tmp_path: Path
) -> None:
    source = _folder(tmp_path / "docs")
    assert index_cli("build", "--collection", "lumen", "--source", str(source)).returncode == 0
    collections = IndexerSettings.load(None).collections_dir
    half_written = gens.generation_dir(collections, "lumen", 2)
    (half_written / "tantivy").mkdir(parents=True)
    (half_written / "tantivy" / "segment").write_bytes(b"x" * 4096)  # no manifest yet
    stats = json.loads(index_cli("stats", "lumen", "--json").stdout)
    assert stats["generations_on_disk"] == [1]
    gen_dir = gens.generation_dir(collections, "lumen", 1)
    on_disk = sum(p.stat().st_size for p in gen_dir.rglob("*") if p.is_file())
    assert stats["generation_bytes"] == on_disk == stats["disk_bytes"]
    assert stats["bm25_bytes"] == sum(
        p.stat().st_size for p in (gen_dir / "tantivy").rglob("*") if p.is_file()
    )


def test_update_reuses_the_recorded_options_and_refuses_another_source(
    isolated_env: Path, tmp_path: Path
) -> None:
    source = _folder(tmp_path / "docs")
    (source / "drafts").mkdir()
    (source / "drafts" / "wip.md").write_text("# WIP\n\nNot ready.\n", encoding="utf-8")
    built = index_cli(
        "build",
        "--collection",
        "lumen",
        "--source",
        str(source),
        "--version",
        "2.1",
        "--exclude",
        "drafts/*",
        "--json",
    )
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["documents"] == 1
    (source / "more.md").write_text("# More\n\nAnother page about the orchid theme.\n", encoding="utf-8")
    updated = index_cli("update", "--collection", "lumen", "--json")  # no source, version or globs given
    assert updated.returncode == 0, updated.stderr
    summary = json.loads(updated.stdout)
    assert summary["version"] == "2.1"
    assert summary["documents"] == 2  # more.md added, drafts/ still excluded
    other = _folder(tmp_path / "elsewhere")
    refused = index_cli("update", "--collection", "lumen", "--source", str(other))
    assert refused.returncode == 2 and "--force" in refused.stderr and "Traceback" not in refused.stderr
    forced = index_cli("update", "--collection", "lumen", "--source", str(other), "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["version"] == "2.1"

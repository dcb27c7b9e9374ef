"""`write_atomic`: readers see the old file or the new one; failures leave the old file and no debris."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest

from indexer.atomic import write_atomic


def test_replaces_the_file_with_the_requested_mode(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "state.json"
    write_atomic(target, b"one", mode=0o600)
    write_atomic(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "CURRENT"
    write_atomic(target, b"gen-1\n")

    def refuse(self: Path, other: Path) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"gen-2\n")
    assert target.read_bytes() == b"gen-1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["CURRENT"]


def test_concurrent_writers_never_tear_the_file(tmp_path: Path) -> None:
    # A shared temp name (the old `.<name>.tmp`) lets one writer rename another's half-written file.
    target = tmp_path / "manifest.json"
    payloads = [json.dumps({"writer": n, "pad": "x" * 50_000}).encode() for n in range(8)]
    errors: list[BaseException] = []

    def write(payload: bytes) -> None:
        try:
            for _ in range(10):
                write_atomic(target, payload)
        except BaseException as error:  # collected: a thread's exception would be lost otherwise
            errors.append(error)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]

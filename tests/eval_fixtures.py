"""Session fixtures of the eval tests: the MCP specification docs indexed with one version per revision."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.build import BuildRequest, build_collection
from indexer.embedding import Embedder
from tests.conftest import MCP_TARBALL, extract, settings_for

# Each spec revision (`specification/2025-06-18/...`) is its own version label; other pages are `docs`.
MCP_VERSION_FROM_PATH = "^specification/([^/]+)/"


@pytest.fixture(scope="session")
def mcp_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not MCP_TARBALL.is_file():
        pytest.skip(f"{MCP_TARBALL} not found: the shared corpora sit beside a development checkout")
    return extract(MCP_TARBALL, tmp_path_factory.mktemp("mcp-docs"))


@pytest.fixture(scope="session")
def mcp_data_dir(
    tmp_path_factory: pytest.TempPathFactory, mcp_docs: Path, model_dir: Path, embedder: Embedder
) -> Iterator[Path]:
    """The MCP docs as collection `mcp` (label `docs`, spec pages labelled by revision), built once (minutes)."""
    data_dir = tmp_path_factory.mktemp("mcp-data")
    settings = settings_for(data_dir, model_dir)
    build_collection(
        settings,
        BuildRequest(
            collection="mcp", source=mcp_docs, version="docs", version_from_path=MCP_VERSION_FROM_PATH
        ),
        embedder=embedder,
    )
    yield data_dir

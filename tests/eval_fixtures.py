"""Session fixtures of the eval tests: the MCP specification docs indexed with one version per revision."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.build import BuildRequest
from indexer.embedding import Embedder
from tests.conftest import CORPORA, MCP_TARBALL, build_corpus, unpack_corpus

# Each spec revision (`specification/2025-06-18/...`) is its own version label; other pages are `docs`.
MCP_VERSION_FROM_PATH = "^specification/([^/]+)/"


@pytest.fixture(scope="session")
def mcp_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack_corpus(MCP_TARBALL, tmp_path_factory, "mcp-docs")


@pytest.fixture(scope="session")
def mcp_data_dir(
    tmp_path_factory: pytest.TempPathFactory, mcp_docs: Path, model_dir: Path, embedder: Embedder
) -> Path:
    """The MCP docs as collection `mcp` (label `docs`, spec pages labelled by revision), built once (minutes)."""
    request = BuildRequest(
        collection="mcp", source=mcp_docs, version="docs", version_from_path=MCP_VERSION_FROM_PATH
    )
    return build_corpus(tmp_path_factory, model_dir, embedder, request)


SCRAPY_TARBALL = CORPORA / "scrapy-2.8-docs-html.tar.gz"
GIT_TARBALL = CORPORA / "git-2.39-docs-html.tar.gz"


@pytest.fixture(scope="session")
def scrapy_data_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, embedder: Embedder) -> Path:
    """The Scrapy 2.8 docs without their FAQ page (the FAQ is the eval set), built once (a minute)."""
    docs = unpack_corpus(SCRAPY_TARBALL, tmp_path_factory, "scrapy-docs")
    request = BuildRequest(collection="scrapy", source=docs, version="2.8", exclude=["faq.html"])
    return build_corpus(tmp_path_factory, model_dir, embedder, request)


@pytest.fixture(scope="session")
def git_data_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, embedder: Embedder) -> Path:
    """The Git 2.39 manual without gitfaq (the FAQ is the eval set), built once (minutes)."""
    docs = unpack_corpus(GIT_TARBALL, tmp_path_factory, "git-docs")
    request = BuildRequest(collection="git", source=docs, version="2.39", exclude=["gitfaq.html"])
    return build_corpus(tmp_path_factory, model_dir, embedder, request)

"""Session fixtures of the eval tests: the MCP specification docs (one version per revision), Scrapy and Git."""

from __future__ import annotations

from indexer.build import BuildRequest
from tests.conftest import CORPORA, MCP_TARBALL, built_corpus, unpacked_corpus

# Each spec revision (`specification/2025-06-18/...`) is its own version label; other pages are `docs`.
MCP_VERSION_FROM_PATH = "^specification/([^/]+)/"


mcp_docs = unpacked_corpus("mcp_docs", MCP_TARBALL)
# The MCP docs as collection `mcp`: label `docs`, spec pages labelled by revision.
mcp_data_dir = built_corpus(
    "mcp_data_dir",
    "mcp_docs",
    lambda docs: BuildRequest(
        collection="mcp", source=docs, version="docs", version_from_path=MCP_VERSION_FROM_PATH
    ),
)

SCRAPY_TARBALL = CORPORA / "scrapy-2.8-docs-html.tar.gz"
GIT_TARBALL = CORPORA / "git-2.39-docs-html.tar.gz"

# Scrapy 2.8 and Git 2.39 without their FAQ pages: the FAQs are the eval sets.
scrapy_docs = unpacked_corpus("scrapy_docs", SCRAPY_TARBALL)
scrapy_data_dir = built_corpus(
    "scrapy_data_dir",
    "scrapy_docs",
    lambda docs: BuildRequest(collection="scrapy", source=docs, version="2.8", exclude=["faq.html"]),
)
git_docs = unpacked_corpus("git_docs", GIT_TARBALL)
git_data_dir = built_corpus(
    "git_data_dir",
    "git_docs",
    lambda docs: BuildRequest(collection="git", source=docs, version="2.39", exclude=["gitfaq.html"]),
)

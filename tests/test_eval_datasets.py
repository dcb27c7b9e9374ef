"""The hand-written eval datasets are well formed and point at pages that exist in their corpora."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

EVALS = Path(__file__).resolve().parent / "evals"
CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
FIELDS = {"id", "question", "expected_sources", "answerable", "must_mention", "version", "notes"}
MCP_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2}|draft)$")


def load(name: str) -> list[dict[str, Any]]:
    lines = (EVALS / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def corpus_pages(tarball: Path, marker: str) -> set[str]:
    """File paths relative to the corpus root: the shallowest folder holding `marker`.

    The Django tree has an index.html in many folders, hence the shallowest one.
    """
    with tarfile.open(tarball) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    root = min((n[: n.index(marker)] for n in names if n.startswith(marker) or f"/{marker}" in n), key=len)
    return {n[len(root) :] for n in names if n.startswith(root)}


@pytest.mark.parametrize(("name", "prefix"), [("django.jsonl", "dj"), ("mcp-spec.jsonl", "mcp")])
def test_every_case_has_the_harness_fields_and_consistent_labels(name: str, prefix: str) -> None:
    cases = load(name)
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids))
    for case in cases:
        assert set(case) == FIELDS, case["id"]
        assert re.fullmatch(rf"{prefix}-\d{{3}}", case["id"])
        assert case["question"].strip()
        if case["answerable"]:
            assert case["expected_sources"], case["id"]
            assert 1 <= len(case["must_mention"]) <= 3, case["id"]
        else:
            assert case["expected_sources"] == [] and case["must_mention"] == [], case["id"]
        assert all("#" not in s and not s.startswith("/") for s in case["expected_sources"])


def test_django_set_has_the_planned_size_and_no_faq_sources() -> None:
    cases = load("django.jsonl")
    unanswerable = [c for c in cases if not c["answerable"]]
    assert 40 <= len(cases) <= 60
    assert 0.2 <= len(unanswerable) / len(cases) <= 0.3
    assert all(c["version"] is None for c in cases)
    assert not any(s.startswith("faq/") for c in cases for s in c["expected_sources"])


def test_mcp_cases_expect_pages_of_the_version_they_ask_about() -> None:
    cases = load("mcp-spec.jsonl")
    assert 20 <= len(cases) <= 30
    for case in cases:
        version = case["version"]
        assert version is None or MCP_VERSION.match(version), case["id"]
        for source in case["expected_sources"]:
            assert source.startswith(f"specification/{version}/"), case["id"]


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("name", "tarball", "marker"),
    [
        ("django.jsonl", "django-3.2-docs-html.tar.gz", "index.html"),
        ("mcp-spec.jsonl", "mcp-spec-docs-md.tar.gz", "specification/"),
    ],
)
def test_expected_sources_exist_in_the_corpus(name: str, tarball: str, marker: str) -> None:
    path = CORPORA / tarball
    if not path.is_file():
        pytest.skip(f"corpus not found at {path}")
    pages = corpus_pages(path, marker)
    missing = {s for c in load(name) for s in c["expected_sources"]} - pages
    assert not missing

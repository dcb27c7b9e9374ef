"""Version labels: ordering, `latest`, ranges, per-collection defaults, and what search reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.embedding import Embedder
from server.errors import UnknownVersion
from server.retrieval.catalog import Catalog
from server.retrieval.service import Access, DocService
from server.retrieval.versions import describe, parse_label, resolve, validate_version_spec
from server.security.guards import InvalidArgument
from tests.conftest import open_service, settings_for
from tests.versioned_fixture import MARKERS

MCP_LABELS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "draft", "docs"]
LIB_LABELS = ["3.2", "4.0", "4.2", "5.0rc1", "5.0", "5.1", "6.0.dev1", "main"]
EVERYONE = Access(tenant="t", allowed=lambda name: True)


@pytest.mark.parametrize(
    ("label", "kind"),
    [
        ("3.2", "release"),
        ("v5.0.1", "release"),
        ("2025-06-18", "release"),
        ("2025-06", "release"),
        ("5.0rc1", "prerelease"),
        ("1.2.3-beta.1", "prerelease"),
        ("6.0.dev1", "prerelease"),
        ("draft", "prerelease"),
        ("main", "prerelease"),
        ("docs", "unversioned"),
        ("stable", "unversioned"),
        ("2025-13-01", "unversioned"),
    ],
)
def test_labels_are_releases_prereleases_or_unversioned(label, kind):
    assert parse_label(label).kind == kind


def test_latest_is_the_newest_release_plus_unversioned_labels_never_a_draft():
    assert resolve("latest", MCP_LABELS) == ("2025-11-25", "docs")
    assert resolve("latest", LIB_LABELS) == ("5.1",)


def test_an_exact_label_wins_even_when_it_is_called_latest():
    assert resolve("latest", ["latest", "1.0"]) == ("latest",)
    assert resolve("draft", MCP_LABELS) == ("draft",)
    assert resolve("docs", MCP_LABELS) == ("docs",)


def test_a_collection_without_releases_reads_every_label_as_latest():
    assert set(resolve("latest", ["draft", "docs"])) == {"draft", "docs"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("4.x", ("4.2",)),
        ("4.*", ("4.2",)),
        (">=5.0,<6", ("5.1",)),
        ("~=3.2", ("3.2",)),
        ("<4", ("3.2",)),
        (">=6.0.dev1", ("6.0.dev1",)),  # a range naming a pre-release may select one
        (">=7", ()),
    ],
)
def test_a_range_selects_its_newest_release(spec, expected):
    assert resolve(spec, LIB_LABELS) == expected


def test_date_ranges_order_dates_and_keep_unversioned_pages():
    assert resolve(">=2025-01-01,<2025-06-01", MCP_LABELS) == ("2025-03-26", "docs")
    assert resolve("<2025", MCP_LABELS) == ("2024-11-05", "docs")


@pytest.mark.parametrize("spec", [">=abc", "==4.*.1", ">5.0<6", "4.x<", "=>5"])
def test_a_malformed_range_is_an_invalid_argument_that_says_the_forms(spec):
    with pytest.raises(InvalidArgument, match="version"):
        validate_version_spec(spec)


def test_labels_and_ranges_pass_validation_unchanged():
    assert validate_version_spec("2025-06-18") == "2025-06-18"
    assert validate_version_spec(">=5.0,<6") == ">=5.0,<6"
    with pytest.raises(InvalidArgument):
        validate_version_spec("; rm -rf /")


def test_describe_marks_latest_default_and_dates_newest_first():
    info = {v.label: v for v in describe(MCP_LABELS, "latest")}
    assert [v.label for v in describe(MCP_LABELS, "latest")][:4] == [
        "2025-11-25",
        "2025-06-18",
        "2025-03-26",
        "2024-11-05",
    ]
    assert info["2025-11-25"].latest and info["2025-11-25"].default
    assert info["docs"].default and not info["docs"].latest
    assert not info["draft"].latest and not info["draft"].default
    assert info["2025-06-18"].date == "2025-06-18"


# ---------------------------------------------------------------- over a built index


@pytest.fixture(scope="module")
def service(shop_data_dir: Path, model_dir: Path, embedder: Embedder) -> DocService:
    return open_service(shop_data_dir, model_dir, embedder)


def _versions(service: DocService, query: str, version: str | None = None) -> set[str]:
    hits = service.search(EVERYONE, query, version=version, k=20, max_tokens=20000).result.hits
    assert hits
    return {hit.version for hit in hits}


def test_search_without_version_reads_latest_and_unversioned_pages_only(service):
    assert _versions(service, "checkout coupons refunds") <= {"2.0", "docs"}
    # A word only the 1.0 guide has is not found in the default view.
    hits = service.search(EVERYONE, MARKERS["1.0"], k=20).result.hits
    assert all(hit.version in {"2.0", "docs"} for hit in hits)
    assert _versions(service, f"{MARKERS['docs']} garden market") <= {"2.0", "docs"}


@pytest.mark.parametrize(
    ("version", "expected"),
    [("1.0", {"1.0"}), ("1.x", {"1.0", "docs"}), (">=2.1rc1", {"2.1rc1", "docs"}), ("draft", {"draft"})],
)
def test_search_reads_exactly_the_labels_a_version_selects(service, version, expected):
    assert _versions(service, "checkout coupons refunds garden market", version) <= expected
    assert _versions(service, "checkout coupons refunds", version) & expected


def test_a_version_that_selects_nothing_lists_the_available_versions(service):
    with pytest.raises(UnknownVersion) as caught:
        service.search(EVERYONE, "checkout", version="9.9")
    message = str(caught.value)
    assert "'9.9'" in message and "shop: 2.1rc1, 2.0, 1.0, draft, docs" in message


def test_a_configured_default_version_replaces_latest(shop_data_dir: Path, model_dir: Path, embedder):
    settings = settings_for(shop_data_dir, model_dir, collections={"shop": {"default_version": "1.0"}})
    service = DocService(
        settings, Catalog(settings, embedder.model_id, embedder.dimension, 3600), embedder, b"k" * 32
    )
    assert _versions(service, "checkout coupons refunds") == {"1.0"}
    listing = service.collections(EVERYONE).collections[0]
    assert listing.default_version == "1.0" and listing.latest == "2.0"
    assert [v.label for v in listing.version_details if v.default] == ["1.0"]


def test_list_collections_shows_versions_with_kinds_and_latest(service):
    listing = service.collections(EVERYONE).collections[0]
    assert listing.latest == "2.0"
    kinds = {v.label: v.kind for v in listing.version_details}
    assert kinds == {
        "2.1rc1": "prerelease",
        "2.0": "release",
        "1.0": "release",
        "draft": "prerelease",
        "docs": "unversioned",
    }
    assert listing.base_url == "https://shop.example/docs/"


def test_a_wildcard_never_selects_a_prerelease_over_a_release():
    assert resolve("2.x", ["2.0", "2.1rc1", "docs"]) == ("2.0", "docs")
    assert resolve("2.x", ["2.1rc1"]) == ()

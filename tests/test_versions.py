"""Version labels: ordering, `latest`, ranges, per-collection defaults, and what search reads."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession

from indexer import generations as gens
from indexer.build import BuildRequest, build_collection
from indexer.build.publish import version_dates
from indexer.embedding import Embedder
from indexer.status import collection_stats
from server.errors import UnknownVersion
from server.retrieval.catalog import Catalog
from server.retrieval.service import Access, DocService
from server.retrieval.versions import describe, parse_label, resolve, validate_version_spec
from server.security.guards import InvalidArgument
from server.settings import ServerSettings
from tests.conftest import open_service, settings_for, strip_manifest_dates
from tests.mcp_harness import call, run_session, session_factory
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


# ---------------------------------------------------------------- when each version was last updated


# Noon UTC, so the day is the same in every time zone the tests might run in.
def _noon(day: str) -> float:
    return datetime.fromisoformat(f"{day}T12:00:00+00:00").timestamp()


# path → (text, the file's mtime day). Version 1.0's newest file is not its first one.
DATED_PAGES = {
    "v1.0/api.md": ("# API\n\nThe 1.0 API has one function, fetch_orders.\n", "2021-01-10"),
    "v1.0/guide.md": ("# Guide\n\nVersion 1.0 ships orders by post.\n", "2021-03-04"),
    "v2.0/guide.md": ("# Guide\n\nVersion 2.0 ships orders by courier.\n", "2023-08-09"),
    "v2025-06-18/spec.md": ("# Spec\n\nThe 2025-06-18 protocol revision.\n", "2020-02-02"),
    "about.md": ("# About\n\nThe project has three maintainers.\n", "2022-05-06"),
}
DATED_UPDATED = {"1.0": "2021-03-04", "2.0": "2023-08-09", "2025-06-18": "2020-02-02", "docs": "2022-05-06"}


def _write_dated(source: Path) -> Path:
    for path, (text, day) in DATED_PAGES.items():
        file = source / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text, encoding="utf-8")
        os.utime(file, (_noon(day), _noon(day)))
    return source


def _build_dated(settings: ServerSettings, source: Path, embedder: Embedder, *, incremental: bool = False):
    request = BuildRequest(
        collection="dated",
        source=source,
        version="docs",
        version_from_path=r"^v([^/]+)/",
        incremental=incremental,
    )
    return build_collection(settings, request, embedder=embedder)


def _updated(data_dir: Path, model_dir: Path, embedder: Embedder) -> dict[str, str | None]:
    listing = open_service(data_dir, model_dir, embedder).collections(EVERYONE).collections[0]
    return {v.label: v.updated for v in listing.version_details}


def _manifest(settings: ServerSettings) -> gens.Manifest:
    return gens.require_current(settings.collections_dir, "dated")[1]


@pytest.fixture
def dated(settings: ServerSettings, tmp_path: Path, embedder: Embedder) -> Path:
    source = _write_dated(tmp_path / "dated-docs")
    _build_dated(settings, source, embedder)
    return source


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_list_collections_shows_when_each_version_was_last_updated(dated, isolated_env, transport):
    async def body(session: ClientSession) -> list[dict[str, Any]]:
        listing = await call(session, "list_collections")
        return list(listing["collections"][0]["version_details"])

    with session_factory(transport, isolated_env) as factory:
        details = {v["label"]: v for v in run_session(factory, body)}
    assert {label: v["updated"] for label, v in details.items()} == DATED_UPDATED
    # `date` still means the date a label names; `updated` is when its pages last changed.
    assert details["2025-06-18"]["date"] == "2025-06-18"
    assert details["1.0"]["date"] is None and details["docs"]["date"] is None
    assert details["2025-06-18"]["latest"]


def test_dates_come_from_the_files_not_the_build(dated, settings):
    manifest = _manifest(settings)
    # Every date lies years before the build: a build-time date would be today's.
    assert manifest.created_at.date() > max(date.fromisoformat(day) for day in DATED_UPDATED.values())
    assert {label: day.isoformat() for label, day in manifest.version_dates.items()} == DATED_UPDATED
    guide = manifest.documents["v1.0/guide.md"].modified
    assert guide == datetime.fromtimestamp(_noon("2021-03-04"), UTC)
    assert guide is not None and guide.tzinfo == UTC
    assert collection_stats(settings, "dated", sizes=False)["version_dates"] == DATED_UPDATED


def test_an_update_moves_only_the_date_of_the_version_it_changed(
    dated, settings, isolated_env, model_dir, embedder
):
    changed = dated / "v2.0" / "guide.md"
    changed.write_text("# Guide\n\nVersion 2.0 ships orders by drone.\n", encoding="utf-8")
    os.utime(changed, (_noon("2024-05-06"), _noon("2024-05-06")))
    # Touched without a change of content: the page keeps the date recorded for it.
    touched = dated / "about.md"
    os.utime(touched, (_noon("2024-12-24"), _noon("2024-12-24")))

    summary = _build_dated(settings, dated, embedder, incremental=True)

    assert summary.status == "published" and summary.documents_parsed == 1
    assert _updated(isolated_env, model_dir, embedder) == {**DATED_UPDATED, "2.0": "2024-05-06"}


def test_an_unchanged_update_keeps_every_date(dated, settings, isolated_env, model_dir, embedder):
    before = _manifest(settings)
    summary = _build_dated(settings, dated, embedder, incremental=True)
    assert summary.status == "unchanged"
    after = _manifest(settings)
    assert after.version_dates == before.version_dates
    assert {k: r.modified for k, r in after.documents.items()} == {
        k: r.modified for k, r in before.documents.items()
    }
    assert _updated(isolated_env, model_dir, embedder) == DATED_UPDATED


def test_a_manifest_without_dates_loads_shows_null_and_an_update_fills_them_in(
    dated, settings, isolated_env, model_dir, embedder
):
    strip_manifest_dates(settings, "dated")
    assert _manifest(settings).version_dates == {}
    assert _updated(isolated_env, model_dir, embedder) == dict.fromkeys(DATED_UPDATED)
    assert set(collection_stats(settings, "dated", sizes=False)["version_dates"].values()) == {None}

    # Nothing changed, but the dates the old manifest lacked are worth one publish (no re-embedding).
    summary = _build_dated(settings, dated, embedder, incremental=True)

    assert summary.status == "published" and summary.documents_parsed == 0 and summary.chunks_embedded == 0
    assert _updated(isolated_env, model_dir, embedder) == DATED_UPDATED
    assert _build_dated(settings, dated, embedder, incremental=True).status == "unchanged"


def test_version_dates_take_each_labels_newest_document():
    def record(when: str | None) -> gens.DocumentRecord:
        return gens.DocumentRecord(content_hash="h", chunks=1, modified=when)

    records = {
        "a/1": record("2024-01-02T23:30:00-02:00"),  # 2024-01-03 in UTC
        "a/2": record("2023-12-31T00:00:00Z"),
        "b/1": record(None),
        "c/1": record("2022-06-01T08:00:00"),  # written without a zone: UTC
    }
    dates = version_dates(records, lambda key: key.split("/")[0])
    assert dates == {"a": date(2024, 1, 3), "c": date(2022, 6, 1)}
    assert {v.label: v.updated for v in describe(["a", "b", "c"], "latest", dates)} == {
        "a": "2024-01-03",
        "b": None,
        "c": "2022-06-01",
    }

"""Which page a request names, and the pages a tenant may list.

A page is named by a `docgate://{collection}/{version}/{path}` URI, a live URL (a crawled page's, or
one built from the collection's `--base-url`), or its path, each optionally with `#anchor`. Pages are
looked up only in collections the tenant may read; any other page answers exactly like one that does
not exist.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from indexer.models import Chunk
from server.errors import UnknownPage
from server.retrieval import links
from server.retrieval.catalog import CatalogView, Snapshot
from server.retrieval.versions import resolve
from server.security.guards import InvalidArgument

RESOURCE_SCHEME = "docgate://"


@dataclass(frozen=True)
class PageRequest:
    source: str
    collection: str | None
    section: str | None
    max_tokens: int
    cursor: str | None


@dataclass(frozen=True)
class PageRef:
    """A page a request asks for: the collection when named, its path, and a section anchor."""

    collection: str | None
    version: str | None
    path: str
    anchor: str | None


@dataclass
class Page:
    snapshot: Snapshot
    chunks: list[Chunk]

    @property
    def first(self) -> Chunk:
        return self.chunks[0]

    @property
    def url(self) -> str | None:
        return links.page_url(self.first.url, self.snapshot.manifest.base_url, self.first.path)

    @property
    def uri(self) -> str:
        return resource_uri(self.first.collection, self.first.version, self.first.path)


def resource_uri(collection: str, version: str, path: str) -> str:
    return f"{RESOURCE_SCHEME}{collection}/{version}/{path}"


def parse_source(source: str, collection: str | None) -> PageRef:
    """`docgate://c/v/path`, a live URL, or a path, each optionally with `#anchor`."""
    text = source.strip()
    anchor: str | None = None
    if "#" in text:
        text, anchor = text.split("#", 1)
        anchor = anchor or None
    if text.startswith(RESOURCE_SCHEME):
        parts = text[len(RESOURCE_SCHEME) :].split("/", 2)
        if len(parts) < 3 or not all(parts):
            raise InvalidArgument(
                f"source: {source[:120]!r} is not a page URI; the form is docgate://{{collection}}/{{version}}/{{path}}",
                argument="source",
            )
        return PageRef(parts[0], parts[1], parts[2], anchor)
    return PageRef(collection, None, text.lstrip("/") if not _is_url(text) else text, anchor)


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


# Per open generation: live URL → path, built on first use (a generation never changes).
_URL_MAPS: weakref.WeakKeyDictionary[Snapshot, dict[str, str]] = weakref.WeakKeyDictionary()


def _url_map(snapshot: Snapshot) -> dict[str, str]:
    found = _URL_MAPS.get(snapshot)
    if found is None:
        found = {}
        manifest = snapshot.manifest
        for path, record in manifest.documents.items():
            live = links.page_url(record.url, manifest.base_url, path)
            if live:
                found[live.rstrip("/")] = path
        _URL_MAPS[snapshot] = found
    return found


def locate_page(view: CatalogView, allowed: Sequence[str], ref: PageRef) -> Page:
    """The page in a readable collection, or exactly the unknown-page error."""
    names = [ref.collection] if ref.collection is not None else list(allowed)
    found: list[Page] = []
    for name in names:
        snapshot = view.snapshots.get(name)
        if snapshot is None or name not in allowed:
            continue
        path = _url_map(snapshot).get(ref.path.rstrip("/")) if _is_url(ref.path) else ref.path
        if path is None:
            continue
        chunks = snapshot.lexical.document_chunks(path)
        # A URI's version may be `latest` or a range too: it names the page's label if it selects it.
        if chunks and (ref.version is None or chunks[0].version in resolve(ref.version, snapshot.versions)):
            found.append(Page(snapshot, chunks))
    if not found:
        raise UnknownPage(
            f"unknown page {ref.path[:200]!r}: it is not in any collection available to you "
            "(pass a hit's `source`, `url` or path, or a docgate:// resource URI)"
        )
    if len(found) > 1:
        raise InvalidArgument(
            f"source: {ref.path[:200]!r} is a page in several collections "
            f"({', '.join(p.snapshot.collection for p in found)}); pass `collection` to choose one",
            argument="collection",
        )
    return found[0]


def page_version(snapshot: Snapshot, path: str) -> str:
    """A document's version label, by the rule its build used (`--version-from-path`, else `--version`)."""
    manifest = snapshot.manifest
    if manifest.version_from_path is not None:
        match = re.search(manifest.version_from_path, path)
        if match and match.group(1):
            return match.group(1)
    return manifest.version


@dataclass(frozen=True)
class PageEntry:
    collection: str
    version: str
    path: str
    title: str

    @property
    def uri(self) -> str:
        return resource_uri(self.collection, self.version, self.path)


def list_pages(view: CatalogView, allowed: Sequence[str]) -> list[PageEntry]:
    """Every page of the readable collections, by collection then path."""
    out: list[PageEntry] = []
    for name in sorted(allowed):
        snapshot = view.snapshots.get(name)
        if snapshot is None:
            continue
        for path, record in sorted(snapshot.manifest.documents.items()):
            if record.chunks > 0:
                out.append(PageEntry(name, page_version(snapshot, path), path, record.title or path))
    return out


def hidden_page_exists(view: CatalogView, hidden: Sequence[str], request: PageRequest) -> bool:
    """For the audit log only: was an unknown-page answer a refusal of a page that exists?"""
    try:
        locate_page(
            view,
            hidden,
            parse_source(request.source, request.collection if request.collection in hidden else None),
        )
    except (UnknownPage, InvalidArgument):
        return False
    return True

"""Who may read what, resolved once per request: the tenant's grants → the collections searched,
and per collection the version labels read (`versions`: an exact label, `latest`, a range, or the
collection's configured default when the request names none).

Unknown and ungranted collections fail with the same message, so a client cannot probe for the
existence of collections it may not read; `denial_reason` tells the audit log which it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from server.errors import IndexUnavailable, UnknownCollection, UnknownVersion
from server.retrieval import links, versions
from server.retrieval.catalog import CatalogView


def _latest(_collection: str) -> str:
    return "latest"


@dataclass(frozen=True)
class Access:
    """What one request may read: the tenant and its collection grants."""

    tenant: str
    allowed: Callable[[str], bool]


@dataclass(frozen=True)
class Scope:
    """One request's resolved search scope, on the generations it started with."""

    tenant: str
    view: CatalogView
    collections: tuple[str, ...]
    version: str | None = None
    path_prefix: str | None = None
    # Per collection, the version labels this request reads (see `versions.resolve_scope`).
    versions: Mapping[str, tuple[str, ...]] | None = None
    code_only: bool = False


def resolve_scope(
    access: Access,
    requested: Sequence[str] | None,
    version: str | None,
    view: CatalogView,
    path_prefix: str | None = None,
    *,
    default_version: Callable[[str], str] = _latest,
    code_only: bool = False,
) -> Scope:
    """Collections this request searches and the labels each reads; unknown and ungranted names
    fail identically, and a version that selects nothing names the versions that exist.

    `default_version` gives a collection's default when `version` is None (`latest` unless set).
    """
    visible = sorted(name for name in view.snapshots if access.allowed(name))
    # Published but refused (e.g. embedded with another model): say why, to tenants granted it.
    broken = {name: why for name, why in view.unavailable.items() if access.allowed(name)}
    if requested:
        for name in requested:
            if name not in visible and name in broken:
                raise IndexUnavailable(f"collection {name!r} cannot be served: {broken[name]}")
            if name not in visible:
                raise UnknownCollection(
                    f"unknown collection {name!r}; available: {', '.join(visible) or 'none'} "
                    "(list_collections shows them)"
                )
        chosen = list(requested)
    else:
        chosen = visible
    if not chosen and broken:
        name, why = sorted(broken.items())[0]
        raise IndexUnavailable(f"collection {name!r} cannot be served: {why}")
    if not chosen:
        raise IndexUnavailable(
            "no documentation collection is available to you yet; an operator must publish one "
            "with `docgate-index build`"
        )
    labels = versions.resolve_scope(
        chosen, lambda name: view.snapshots[name].versions, version, default_version
    )
    if not labels:
        raise UnknownVersion(versions.no_match_message(version, chosen, view.snapshots))
    chosen = [name for name in chosen if name in labels]
    if code_only:
        links.require_code_labels(view.snapshots[name] for name in chosen)
    return Scope(access.tenant, view, tuple(chosen), version, path_prefix, labels, code_only)


def denial_reason(
    access: Access,
    view: CatalogView,
    *,
    collections: Sequence[str] | None = None,
    chunk_id: str | None = None,
) -> str | None:
    """For the audit log only: was an "unknown" answer really a refusal of something that exists?

    The client never learns this; it got the same message either way. The unknown-chunk path
    always looks in every collection here, so refusal and true absence cost the same.
    """
    hidden = [name for name in sorted(view.snapshots) if not access.allowed(name)]
    if collections and any(name in hidden for name in collections):
        return "collection_not_granted"
    if chunk_id is not None:
        found = [name for name in hidden if view.snapshots[name].lexical.get(chunk_id) is not None]
        if found:
            return "chunk_not_granted"
    return None

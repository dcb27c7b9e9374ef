"""Who may read what, resolved once per request: the tenant's grants → the collections searched.

Unknown and ungranted collections fail with the same message, so a client cannot probe for the
existence of collections it may not read; `denial_reason` tells the audit log which it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from server.errors import IndexUnavailable, UnknownCollection
from server.retrieval.catalog import CatalogView


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


def resolve_scope(
    access: Access,
    requested: Sequence[str] | None,
    version: str | None,
    view: CatalogView,
    path_prefix: str | None = None,
) -> Scope:
    """Collections this request searches; unknown and ungranted names fail identically."""
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
    if version is not None:
        matching = [name for name in chosen if version in view.snapshots[name].versions]
        if not matching:
            versions = sorted({v for name in chosen for v in view.snapshots[name].versions})
            raise UnknownCollection(
                f"no collection in scope has version {version!r}; available versions: {', '.join(versions)}"
            )
        chosen = matching
    return Scope(access.tenant, view, tuple(chosen), version, path_prefix)


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

"""Version labels: how they order, what `latest` means, and how a request's `version` resolves.

A collection's documents carry version labels (`3.2`, `2025-06-18`, `draft`, `docs`). Each label is
one of three kinds:

- **release**: a PEP 440 / semver version (`3.2`, `v5.0.1`, `2.0.0+build.5`) or a date (`2025-06-18`, `2025-06`). Dates order as the version `2025.6.18`, so every release
  label of a collection sits on one scale.
- **pre-release**: a version with a pre/dev part (`5.0rc1`, `1.2.3-beta.1`, `6.0.dev1`) or a word
  that names unreleased docs (`draft`, `dev`, `next`, `main`, `master`, `unstable`, `nightly`,
  `canary`, `preview`, `trunk`). Never `latest`; reachable by its exact label.
- **unversioned**: anything else (`docs`, `stable`, `guides`): pages that belong to no single
  version, such as the MCP site's non-spec pages. `latest` and ranges always include them.

A request's `version` resolves per collection, in this order:
1. an exact label of the collection (even one called `latest`) → that label only;
2. `latest` → the newest release label plus every unversioned label (a collection without release
   labels: every label);
3. a range — `4.x` / `4.*` (`==4.*`), or PEP 440 specifiers such as `>=5.0,<6`, `~=3.2`,
   `>=2025-01-01` (dates allowed) → the newest release label inside it, plus every unversioned
   label; pre-releases only when the range itself names one;
4. anything else matches nothing in that collection.

Without `version`, a search uses each collection's default (`collections.<name>.default_version`,
`latest` unless set), so results never mix versions by accident. Every hit names its version.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, Field

from server.security.guards import InvalidArgument, validate_version

LabelKind = Literal["release", "prerelease", "unversioned"]
LATEST = "latest"
SPEC_MAX_CHARS = 64

PRERELEASE_WORDS = frozenset(
    {"draft", "dev", "next", "main", "master", "unstable", "nightly", "canary", "preview", "trunk"}
)
_DATE = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?$")
_DATE_IN_SPEC = re.compile(r"(?<![\d.])(\d{4})-(\d{2})(?:-(\d{2}))?(?![\d-])")
_RANGE_CHARS = re.compile(r"[<>=!~,*]|\.x$|^\d+(?:\.\d+)*\.x$", re.IGNORECASE)
_SPEC_ALLOWED = re.compile(r"^[A-Za-z0-9._+\-<>=!~,* ]+$")
_WILDCARD_X = re.compile(r"^v?(\d+(?:\.\d+)*)\.[xX*]$")


class VersionInfo(BaseModel):
    """One version label of a collection, as `list_collections` shows it."""

    label: str
    kind: LabelKind = Field(
        description="release, prerelease (never latest) or unversioned (always included)."
    )
    date: str | None = Field(
        default=None,
        description="The date the label itself names (YYYY-MM-DD, or YYYY-MM), for date labels only.",
    )
    updated: str | None = Field(
        default=None,
        description="The day (YYYY-MM-DD, UTC) the newest page of this version was modified: its file's "
        "mtime, or a crawled page's Last-Modified (else its fetch); null for indexes built before dates "
        "were recorded.",
    )
    latest: bool = Field(description="True for the newest release label.")
    default: bool = Field(description="True when searches without `version` read this label.")


@dataclass(frozen=True)
class ParsedLabel:
    label: str
    kind: LabelKind
    key: Version | None = None
    date: str | None = None


def parse_label(label: str) -> ParsedLabel:
    """A label's kind and its place on the version scale (None for unversioned labels)."""
    match = _DATE.match(label)
    if match:
        year, month, day = int(match.group(1)), int(match.group(2)), int(match.group(3) or 1)
        try:
            when = date(year, month, day)
        except ValueError:
            return ParsedLabel(label=label, kind="unversioned")
        shown = when.isoformat() if match.group(3) else when.isoformat()[:7]
        return ParsedLabel(label=label, kind="release", key=Version(f"{year}.{month}.{day}"), date=shown)
    if label.lower() in PRERELEASE_WORDS:
        return ParsedLabel(label=label, kind="prerelease")
    try:
        version = Version(label)
    except InvalidVersion:
        return ParsedLabel(label=label, kind="unversioned")
    kind: LabelKind = "prerelease" if version.is_prerelease else "release"
    return ParsedLabel(label=label, kind=kind, key=version)


def newest_release(labels: Iterable[str]) -> str | None:
    releases = [p for p in map(parse_label, labels) if p.kind == "release" and p.key is not None]
    if not releases:
        return None
    return max(releases, key=lambda p: (p.key, p.label)).label


def ordered(labels: Iterable[str]) -> list[str]:
    """Newest first: releases and versioned pre-releases by version, then word pre-releases, then the rest."""
    parsed = [parse_label(label) for label in labels]

    def rank(p: ParsedLabel) -> tuple[int, Version, str]:
        if p.key is not None:
            return (0, p.key, p.label)
        return (1 if p.kind == "prerelease" else 2, Version("0"), p.label)

    versioned = sorted((p for p in parsed if p.key is not None), key=rank, reverse=True)
    rest = sorted((p for p in parsed if p.key is None), key=lambda p: (rank(p)[0], p.label))
    return [p.label for p in [*versioned, *rest]]


def is_range(spec: str) -> bool:
    return spec != LATEST and bool(_RANGE_CHARS.search(spec))


def parse_range(spec: str) -> SpecifierSet:
    """`4.x` / `4.*` / PEP 440 specifiers (dates allowed) → a SpecifierSet; InvalidArgument when malformed."""
    text = spec.strip()
    wildcard = _WILDCARD_X.match(text)
    if wildcard:
        text = f"=={wildcard.group(1)}.*"
    text = _DATE_IN_SPEC.sub(lambda m: f"{int(m.group(1))}.{int(m.group(2))}.{int(m.group(3) or 1)}", text)
    try:
        return SpecifierSet(text)
    except InvalidSpecifier as error:
        raise InvalidArgument(
            f"version: {spec!r} is not a version range; use an exact label, 'latest', "
            "a wildcard such as '4.x', or specifiers such as '>=5.0,<6'",
            argument="version",
        ) from error


def validate_version_spec(value: object) -> str:
    """A version argument: a label (the usual label rules) or a range of the forms above."""
    if isinstance(value, str) and is_range(value):
        if len(value) > SPEC_MAX_CHARS or not _SPEC_ALLOWED.fullmatch(value):
            raise InvalidArgument(
                f"version: {value[:80]!r} is not a version range (at most {SPEC_MAX_CHARS} characters of "
                "letters, digits and . _ + - < > = ! ~ , *)",
                argument="version",
            )
        parse_range(value)
        return value.strip()
    return validate_version(value)


def resolve(spec: str, labels: Sequence[str]) -> tuple[str, ...]:
    """The labels of one collection that `spec` selects (empty when none); see the module docstring."""
    if spec in labels:
        return (spec,)
    unversioned = [label for label in labels if parse_label(label).kind == "unversioned"]
    if spec == LATEST:
        newest = newest_release(labels)
        if newest is None:
            return tuple(ordered(labels))
        return (newest, *sorted(unversioned))
    if not is_range(spec):
        return ()
    specifier = parse_range(spec)
    # Pre-releases only when the range itself names one (`>=6.0rc1`), never through `2.x`.
    allow_pre = bool(specifier.prereleases)
    inside = [
        p
        for p in map(parse_label, labels)
        if p.key is not None and specifier.contains(p.key, prereleases=allow_pre)
    ]
    if not inside:
        return ()
    newest = max(inside, key=lambda p: (p.key, p.label)).label
    return (newest, *sorted(unversioned))


def resolve_scope(
    names: Sequence[str],
    labels_of: Callable[[str], Sequence[str]],
    version: str | None,
    default_of: Callable[[str], str],
) -> dict[str, tuple[str, ...]]:
    """Per collection, the labels a request reads; collections that resolve to nothing are left out."""
    out: dict[str, tuple[str, ...]] = {}
    for name in names:
        chosen = resolve(version if version is not None else default_of(name), labels_of(name))
        if chosen:
            out[name] = chosen
    return out


def describe(
    labels: Sequence[str], default: str, updated: Mapping[str, date] | None = None
) -> list[VersionInfo]:
    """Every label of a collection, newest first, with its kind, dates and latest/default marks.

    `updated` maps a label to the day its newest document changed (the manifest's `version_dates`).
    """
    updated = updated or {}
    newest = newest_release(labels)
    defaults = set(resolve(default, labels))
    out = []
    for label in ordered(labels):
        parsed = parse_label(label)
        out.append(
            VersionInfo(
                label=label,
                kind=parsed.kind,
                date=parsed.date,
                updated=updated[label].isoformat() if label in updated else None,
                latest=label == newest,
                default=label in defaults,
            )
        )
    return out


def no_match_message(version: str | None, names: Sequence[str], snapshots: Mapping[str, Any]) -> str:
    """The error for a version that selects nothing: what exists, per collection in scope."""
    available = "; ".join(f"{name}: {', '.join(ordered(snapshots[name].versions))}" for name in names)
    wanted = repr(version) if version is not None else "the configured default version"
    return (
        f"no collection in scope has version {wanted}; available versions: {available} "
        "(pass an exact label, 'latest', or a range such as '4.x' or '>=5.0,<6')"
    )

"""Immutable index generations and their atomic publication.

Layout under the data dir:

    collections/<name>/
        CURRENT            "gen-<n>\\n": the published generation (replaced by atomic rename)
        .lock              held (flock) by the one build of this collection that may run
        gen-<n>/
            tantivy/       BM25 index + chunk store
            vectors/       qdrant-edge shard (embedded mode; absent with a Qdrant server)
            manifest.json  written last: a generation without it was never finished

A build writes a new `gen-<n>` and, only when everything is written and fsynced, renames a new
CURRENT over the old one. A crash at any moment leaves the old CURRENT and its generation
untouched; the next build removes unfinished directories. The previous generation is kept one
build longer so requests already running on it can finish.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

import structlog
from pydantic import BaseModel, Field, ValidationError, field_validator

from indexer import __version__
from indexer.atomic import fsync_dir, write_atomic
from indexer.embedding.base import EmbeddingConfig
from indexer.errors import (
    BuildLocked,
    CollectionNotFound,
    CorruptGeneration,
    FormatMismatch,
    InvalidCollectionName,
    ModelMismatch,
)

log = structlog.get_logger()

# 2: BM25 fields hold folded text analysed by the text core's analyzer (was Tantivy's `en_stem`).
FORMAT_VERSION = 2
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_GEN_DIR = re.compile(r"^gen-(\d+)$")


class DocumentRecord(BaseModel):
    """What the manifest remembers of each source document (drives incremental updates).

    For a crawled page, `content_hash`, `etag`, `last_modified` and `links` are the crawler's
    validators: the next refresh sends them back as conditional requests, and `links` lets it keep
    discovering pages through a page that answers 304 (no body to read links from).
    """

    content_hash: str
    chunks: int
    title: str = ""
    url: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    links: list[str] = Field(default_factory=list)
    modified: datetime | None = Field(
        default=None,
        description="When the document last changed (UTC): a file's mtime, a crawled page's Last-Modified, "
        "else when it was fetched; kept while its content stays the same. None in older manifests.",
    )

    @field_validator("modified")
    @classmethod
    def _utc(cls, when: datetime | None) -> datetime | None:
        # Always UTC, so a version's day never depends on the zone a date was written in.
        if when is None:
            return None
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


class VectorBackend(BaseModel):
    kind: Literal["edge", "qdrant"] = "edge"
    qdrant_collection: str | None = None


class Manifest(BaseModel):
    format_version: int = FORMAT_VERSION
    collection: str
    version: str
    version_from_path: str | None = None
    versions: list[str] = Field(default_factory=list, description="Every version label the chunks carry.")
    version_dates: dict[str, date] = Field(
        default_factory=dict,
        description="Per version label, the day (UTC) its most recently modified document last changed; "
        "empty in older manifests.",
    )
    base_url: str | None = Field(
        default=None, description="Public URL of a folder's root (`--base-url`): pages link to it + path."
    )
    generation: int
    embedding_model: str
    embedding_dimension: int
    # How the vectors were made beyond the model name (older manifests: the in-process default).
    embedding_backend: Literal["fastembed", "openai"] = "fastembed"
    embedding_mode: Literal["symmetric", "asymmetric"] = "symmetric"
    embedding_query_prefix: str = ""
    embedding_passage_prefix: str = ""
    chunking: dict[str, int]
    parser_version: str
    chunk_count: int
    document_count: int
    documents: dict[str, DocumentRecord]
    source: str
    source_kind: Literal["folder", "site"] = "folder"
    include: list[str] = Field(default_factory=list, description="Folder globs the build used.")
    exclude: list[str] = Field(default_factory=list, description="Folder globs the build used.")
    vector_backend: VectorBackend = Field(default_factory=VectorBackend)
    created_at: datetime
    indexer_version: str = __version__
    build_seconds: float = 0.0


def manifest_versions(manifest: Manifest) -> list[str]:
    """Version labels served by a generation (older manifests list only the collection's label)."""
    return manifest.versions or [manifest.version]


def validate_collection_name(name: str) -> str:
    if not COLLECTION_NAME.match(name):
        raise InvalidCollectionName(
            f"invalid collection name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def collection_dir(collections_dir: Path, name: str) -> Path:
    return collections_dir / validate_collection_name(name)


def generation_dir(collections_dir: Path, name: str, generation: int) -> Path:
    return collection_dir(collections_dir, name) / f"gen-{generation}"


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under `root` (the generation must be durable before it is published)."""
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(Path(directory) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(directory))


def write_manifest(gen_dir: Path, manifest: Manifest) -> None:
    write_atomic(gen_dir / "manifest.json", manifest.model_dump_json(indent=2).encode("utf-8"))


def read_manifest(gen_dir: Path) -> Manifest:
    path = gen_dir / "manifest.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError as error:
        raise CorruptGeneration(
            f"{gen_dir} has no manifest.json (unfinished or damaged generation)"
        ) from error
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValidationError as error:
        raise CorruptGeneration(
            f"{path} is unreadable ({error.error_count()} problems, first: {error.errors()[0]['msg']}); "
            "rebuild the collection with `docgate-index build`"
        ) from error
    if manifest.format_version != FORMAT_VERSION:
        raise FormatMismatch(
            f"{path} has index format {manifest.format_version}, this docgate reads format {FORMAT_VERSION}; "
            "rebuild the collection with `docgate-index build`"
        )
    return manifest


def current_generation(collections_dir: Path, name: str) -> int | None:
    """The published generation number, or None when the collection was never published."""
    pointer = collection_dir(collections_dir, name) / "CURRENT"
    try:
        text = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    match = _GEN_DIR.match(text)
    if not match:
        raise CorruptGeneration(f"{pointer} does not name a generation (found {text[:40]!r})")
    return int(match.group(1))


def require_current(collections_dir: Path, name: str) -> tuple[int, Manifest]:
    generation = current_generation(collections_dir, name)
    if generation is None:
        raise CollectionNotFound(
            f"collection {name!r} does not exist; build it with `docgate-index build --collection {name} --source PATH`"
        )
    return generation, read_manifest(generation_dir(collections_dir, name, generation))


def list_collections(collections_dir: Path) -> list[str]:
    if not collections_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in collections_dir.iterdir()
        if p.is_dir() and COLLECTION_NAME.match(p.name) and (p / "CURRENT").is_file()
    )


def existing_generations(collections_dir: Path, name: str) -> list[int]:
    root = collection_dir(collections_dir, name)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _GEN_DIR.match(entry.name)
        if match and entry.is_dir():
            found.append(int(match.group(1)))
    return sorted(found)


def next_generation(collections_dir: Path, name: str) -> int:
    numbers = existing_generations(collections_dir, name)
    current = current_generation(collections_dir, name) or 0
    return max([current, *numbers]) + 1


def publish(collections_dir: Path, name: str, generation: int) -> None:
    """Atomically make `generation` the one every reader opens."""
    gen_dir = generation_dir(collections_dir, name, generation)
    if not (gen_dir / "manifest.json").is_file():
        raise CorruptGeneration(f"refusing to publish {gen_dir}: it has no manifest")
    write_atomic(collection_dir(collections_dir, name) / "CURRENT", f"gen-{generation}\n".encode())
    log.info("generation_published", collection=name, generation=generation)


def collect_garbage(collections_dir: Path, name: str, keep_previous: int = 1) -> list[int]:
    """Remove unfinished generations and published ones older than the previous `keep_previous`."""
    current = current_generation(collections_dir, name)
    keep = set(range(current - keep_previous, current + 1)) if current is not None else set()
    removed = []
    for number in existing_generations(collections_dir, name):
        gen_dir = generation_dir(collections_dir, name, number)
        if number in keep and (gen_dir / "manifest.json").is_file():
            continue
        shutil.rmtree(gen_dir, ignore_errors=True)
        removed.append(number)
    if removed:
        log.info("generations_removed", collection=name, generations=removed)
    return removed


@contextlib.contextmanager
def build_lock(collections_dir: Path, name: str) -> Iterator[None]:
    """One build (or drop) per collection at a time; the OS drops the lock if the builder dies.

    A collection directory this lock created is removed again when nothing was published in it
    (a failed first build), so no empty collection or stray lock is left behind.
    """
    root = collection_dir(collections_dir, name)
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise BuildLocked(
                f"another build or drop of collection {name!r} is running; wait for it to finish"
            ) from error
        try:
            yield
        finally:
            if created and not (root / "CURRENT").exists():
                shutil.rmtree(root, ignore_errors=True)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def manifest_embedding(manifest: Manifest) -> EmbeddingConfig:
    return EmbeddingConfig(
        model=manifest.embedding_model,
        dimension=manifest.embedding_dimension,
        backend=manifest.embedding_backend,
        query_prefix=manifest.embedding_query_prefix,
        passage_prefix=manifest.embedding_passage_prefix,
    )


def _describe(config: EmbeddingConfig) -> str:
    prefixes = (
        f", query prefix {config.query_prefix!r}, passage prefix {config.passage_prefix!r}"
        if config.mode == "asymmetric"
        else ""
    )
    return f"{config.model} via {config.backend} (dim {config.dimension}{prefixes})"


def check_model(manifest: Manifest, model: str | EmbeddingConfig, dimension: int | None = None) -> None:
    """Refuse a generation whose vectors another embedding configuration made: its search would be noise.

    With a bare model name only the name (and `dimension`, if given) is compared; with a full
    `EmbeddingConfig` the backend and the query/passage prefixes must match too.
    """
    built = manifest_embedding(manifest)
    if isinstance(model, EmbeddingConfig):
        expected = model
        matches = built == expected
    else:
        expected = built.model_copy(update={"model": model, "dimension": dimension or built.dimension})
        matches = built.model == model and (dimension is None or built.dimension == dimension)
    if not matches:
        raise ModelMismatch(
            f"collection {manifest.collection!r} was embedded with {_describe(built)} but the "
            f"configured embedding is {_describe(expected)}; rebuild it or change embedding.model"
        )


def drop_collection(collections_dir: Path, name: str) -> None:
    root = collection_dir(collections_dir, name)
    if not (root / "CURRENT").is_file():
        raise CollectionNotFound(f"collection {name!r} does not exist")
    # Under the build lock: a running build would otherwise lose its directory mid-write (BuildLocked,
    # exit 7, tells the operator to wait).
    with build_lock(collections_dir, name):
        # Unpublish first (atomic), then delete: a reader never sees a half-deleted generation as current.
        (root / "CURRENT").unlink()
        fsync_dir(root)
        shutil.rmtree(root, ignore_errors=True)


def now() -> datetime:
    return datetime.now(UTC)


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

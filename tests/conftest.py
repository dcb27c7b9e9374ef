"""Shared fixtures: isolated settings per test, one embedding model and one index build per session."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from indexer import generations as gens
from indexer.build import BuildRequest, build_collection
from indexer.embedding import Embedder, assemble_offline_model, shared_embedder
from indexer.settings import EmbeddingSettings
from server.retrieval.catalog import Catalog
from server.retrieval.service import DocService
from server.settings import ServerSettings

REPO = Path(__file__).resolve().parents[1]
FIXTURE_CORPUS = REPO / "tests" / "fixtures" / "corpus"
CORPORA = REPO.parent / "shared" / "corpora"
DJANGO_TARBALL = CORPORA / "django-3.2-docs-html.tar.gz"
MCP_TARBALL = CORPORA / "mcp-spec-docs-md.tar.gz"


def needs_corpus(tarball: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not tarball.is_file(),
        reason=f"{tarball.name} not found under {CORPORA} (the shared corpora sit beside a development checkout)",
    )


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline model, assembled once per session."""
    return assemble_offline_model(tmp_path_factory.mktemp("models"), 256)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path) -> Path:
    """No DOCGATE_* variable leaks in; every test gets its own data dir; the model is shared."""
    for name in list(os.environ):
        if name.startswith("DOCGATE_"):
            monkeypatch.delenv(name)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("DOCGATE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DOCGATE_EMBEDDING__MODEL_DIR", str(model_dir))
    return data_dir


def settings_for(data_dir: Path, model_dir: Path, **overrides: Any) -> ServerSettings:
    return ServerSettings.load(
        None, data_dir=data_dir, embedding=EmbeddingSettings(model_dir=model_dir), **overrides
    )


def open_service(data_dir: Path, model_dir: Path, embedder: Embedder) -> DocService:
    """A service over a built data dir, as the server has it (a fixed cursor key; no hot reload)."""
    settings = settings_for(data_dir, model_dir)
    catalog = Catalog(settings, embedder.config, interval=3600)
    return DocService(settings, catalog, embedder, b"k" * 32)


@pytest.fixture(scope="session")
def embedder(model_dir: Path) -> Embedder:
    return shared_embedder(EmbeddingSettings(model_dir=model_dir), model_dir.parent)


@pytest.fixture
def settings(isolated_env: Path, model_dir: Path) -> ServerSettings:
    return settings_for(isolated_env, model_dir)


@pytest.fixture
def corpus_copy(tmp_path: Path) -> Path:
    """A private, editable copy of the small written fixture corpus."""
    target = tmp_path / "corpus"
    shutil.copytree(FIXTURE_CORPUS, target)
    return target


@pytest.fixture(scope="session")
def lumen_data_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, embedder: Embedder) -> Path:
    """A data dir holding the fixture corpus as collection `lumen`, built once per session.

    Tests must not modify it; copy it (`shutil.copytree`) to experiment.
    """
    request = BuildRequest(collection="lumen", source=FIXTURE_CORPUS, version="1.0")
    return build_corpus(tmp_path_factory, model_dir, embedder, request)


def extract(tarball: Path, target: Path) -> Path:
    """Unpack a corpus tarball and return the folder that holds its documents."""
    with tarfile.open(tarball) as archive:
        archive.extractall(target, filter="data")
    children = [p for p in target.iterdir() if p.is_dir()]
    return children[0] if len(children) == 1 else target


def unpack_corpus(tarball: Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A shared corpus unpacked into a fresh temp dir; the test is skipped when the corpus is absent."""
    if not tarball.is_file():
        pytest.skip(f"{tarball} not found: the shared corpora sit beside a development checkout")
    return extract(tarball, tmp_path_factory.mktemp(name))


def build_corpus(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, embedder: Embedder, request: BuildRequest
) -> Path:
    """A fresh data dir holding `request` built and published (minutes for the real corpora)."""
    data_dir = tmp_path_factory.mktemp(f"{request.collection}-data")
    build_collection(settings_for(data_dir, model_dir), request, embedder=embedder)
    return data_dir


def unpacked_corpus(name: str, tarball: Path) -> object:
    """A session fixture called `name`: `tarball` unpacked once (the test skips when it is absent)."""

    def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
        return unpack_corpus(tarball, tmp_path_factory, name)

    unpacked.__doc__ = f"{tarball.name} unpacked once per session."
    return pytest.fixture(scope="session", name=name)(unpacked)


def built_corpus(name: str, docs: str, build: Callable[[Path], BuildRequest]) -> object:
    """A session fixture called `name`: a data dir holding `build(folder)` built once (minutes).

    `folder` is the value of the session fixture called `docs`, so the tests that read the
    documents themselves and the tests that search their index share one unpacked copy.
    """

    def built(
        request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory,
        model_dir: Path,
        embedder: Embedder,
    ) -> Path:
        folder: Path = request.getfixturevalue(docs)
        return build_corpus(tmp_path_factory, model_dir, embedder, build(folder))

    built.__doc__ = f"The documents of `{docs}` built and published once per session."
    return pytest.fixture(scope="session", name=name)(built)


django_docs = unpacked_corpus("django_docs", DJANGO_TARBALL)
# The Django 3.2 docs without faq/: those pages are the eval questions' answer key.
django_data_dir = built_corpus(
    "django_data_dir",
    "django_docs",
    lambda docs: BuildRequest(collection="django", source=docs, version="3.2", exclude=["faq/*"]),
)


@pytest.fixture(scope="session")
def shop_data_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, embedder: Embedder) -> Path:
    """The several-versions corpus of `tests/versioned_fixture.py` as collection `shop` (with a base URL)."""
    from tests.versioned_fixture import BASE_URL, VERSION_FROM_PATH, write_shop

    source = write_shop(tmp_path_factory.mktemp("shop-docs"))
    request = BuildRequest(
        collection="shop",
        source=source,
        version="docs",
        version_from_path=VERSION_FROM_PATH,
        base_url=BASE_URL,
    )
    return build_corpus(tmp_path_factory, model_dir, embedder, request)


def strip_manifest_dates(settings: ServerSettings, collection: str) -> None:
    """Rewrite the published manifest of `collection` as a docgate from before page dates wrote it."""
    generation = gens.current_generation(settings.collections_dir, collection)
    assert generation is not None
    path = gens.generation_dir(settings.collections_dir, collection, generation) / "manifest.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    del raw["version_dates"]
    for record in raw["documents"].values():
        del record["modified"]
    path.write_text(json.dumps(raw), encoding="utf-8")

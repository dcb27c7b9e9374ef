"""A real `docgate serve --http` with two tenants, for the attack tests."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from server.security.keys_file import add_key
from tests.mcp_harness import http_server

TENANTS = """
[tenants.acme]
collections = ["lumen"]

[tenants.beta]
collections = ["lumen"]
"""


@dataclass
class Deployment:
    url: str
    data_dir: Path
    tenants_file: Path
    audit: Path
    keys: dict[str, str]

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "server" / "audit-keys"

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 0)

    @property
    def server_log(self) -> Path:
        """The server's stdout and stderr, as the harness writes them."""
        return self.data_dir.parent / f"server-{self.port}.log"

    def key_id(self, tenant: str) -> str:
        return self.keys[tenant].split("_")[1]


@contextlib.contextmanager
def deployed(root: Path, lumen_data_dir: Path, *, tenants: str = TENANTS, **env: str) -> Iterator[Deployment]:
    """Copy the fixture index into `root`, write tenants and keys, serve it; stop on exit."""
    data_dir = root / "data"
    shutil.copytree(lumen_data_dir, data_dir)
    tenants_file = root / "tenants.toml"
    tenants_file.write_text(tenants, encoding="utf-8")
    names = [line[len("[tenants.") : -1] for line in tenants.splitlines() if line.startswith("[tenants.")]
    keys = {name: add_key(tenants_file, name)[1] for name in names}
    audit = root / "audit.jsonl"
    server_env = {"DOCGATE_TENANTS_FILE": str(tenants_file), "DOCGATE_AUDIT_LOG": str(audit), **env}
    with http_server(data_dir, **server_env) as url:  # type: ignore[arg-type]  # no "args" key here
        yield Deployment(url=url, data_dir=data_dir, tenants_file=tenants_file, audit=audit, keys=keys)


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, lumen_data_dir: Path, model_dir: Path
) -> Iterator[Deployment]:
    """One server per test module (start-up costs seconds); tests must leave its tenants alone."""
    with pytest.MonkeyPatch.context() as patch:
        # The per-test environment fixture has not run yet at module scope.
        patch.setenv("DOCGATE_EMBEDDING__MODEL_DIR", str(model_dir))
        with deployed(tmp_path_factory.mktemp("attack"), lumen_data_dir) as running:
            yield running

"""The shipped config files: documented defaults match the code, client snippets actually start docgate."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from server.settings import ServerSettings
from tests.conftest import REPO
from tests.mcp_harness import server_env

CONFIG = REPO / "config"


def test_documented_toml_equals_the_built_in_defaults():
    documented = ServerSettings.load(CONFIG / "docgate.toml")
    defaults = ServerSettings.load()
    assert documented.model_dump() == defaults.model_dump()


def test_environment_beats_the_config_file(monkeypatch, tmp_path):
    config = tmp_path / "docgate.toml"
    config.write_text("[retrieval]\nrrf_k = 30\n[auth]\ntenants_file = '/from/toml'\n", encoding="utf-8")
    assert ServerSettings.load(config).retrieval.rrf_k == 30
    monkeypatch.setenv("DOCGATE_RETRIEVAL__RRF_K", "10")
    monkeypatch.setenv("DOCGATE_TENANTS_FILE", "/from/env/tenants.toml")
    monkeypatch.setenv("DOCGATE_AUDIT_LOG", "/from/env/audit.jsonl")
    settings = ServerSettings.load(config)
    assert settings.retrieval.rrf_k == 10
    assert settings.auth.tenants_file == Path("/from/env/tenants.toml")
    assert settings.audit_path == Path("/from/env/audit.jsonl")


def test_bad_config_files_are_named_in_the_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ServerSettings.load(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[retrieval\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid TOML"):
        ServerSettings.load(broken)


def test_chunks_larger_than_the_model_window_are_refused(tmp_path):
    config = tmp_path / "docgate.toml"
    config.write_text("[chunking]\nmax_tokens = 300\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"chunking.max_tokens \(300\) exceeds what the model embeds"):
        ServerSettings.load(config)
    # A longer model window makes room for longer chunks.
    config.write_text("[embedding]\nmax_length = 512\n[chunking]\nmax_tokens = 300\n", encoding="utf-8")
    assert ServerSettings.load(config).chunking.max_tokens == 300
    config.write_text("[chunking]\ntarget_tokens = 250\nmax_tokens = 200\n", encoding="utf-8")
    with pytest.raises(ValueError, match="target_tokens"):
        ServerSettings.load(config)


def _stdio_entries() -> list[tuple[str, dict[str, object]]]:
    entries = []
    for name in ("claude_desktop_config.json", "cursor-mcp.json", "vscode-mcp.json"):
        document = json.loads((CONFIG / name).read_text(encoding="utf-8"))
        servers = document.get("mcpServers") or document.get("servers")
        assert servers, name
        for server in servers.values():
            if "command" in server:
                entries.append((name, server))
            else:
                assert server["url"].startswith("http://127.0.0.1:8765/mcp")
                assert server["headers"]["Authorization"].startswith("Bearer ")
    return entries


@pytest.mark.parametrize(("name", "entry"), _stdio_entries(), ids=lambda v: v if isinstance(v, str) else "")
def test_client_config_snippets_start_a_working_server(name, entry, lumen_data_dir, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(lumen_data_dir, data_dir)
    command = str(entry["command"])
    args = [str(a) for a in entry["args"]]
    assert args == ["serve", "--stdio"]
    # Installed as a console script by scripts/setup; fall back to the module when run outside the venv.
    executable = shutil.which(command)
    argv = [executable, *args] if executable else [sys.executable, "-m", "server.cli", *args]
    env = server_env(data_dir)

    async def main() -> list[str]:
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=env)
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return [tool.name for tool in (await session.list_tools()).tools]

    assert "search" in anyio.run(main)


def test_quickstart_indexes_the_bundled_docs_and_serves_them(tmp_path):
    """The README's first command: the index step it runs must work on a fresh data dir."""
    script = (REPO / "scripts" / "quickstart").read_text(encoding="utf-8")
    index_line = next(line for line in script.splitlines() if line.startswith("docgate-index "))
    args = index_line.split()[1:]
    source = REPO / args[args.index("--source") + 1]
    assert source.is_dir() and any(source.glob("*.md"))
    data_dir = tmp_path / "data"
    env = server_env(data_dir)
    args[args.index("--source") + 1] = str(source)
    built = subprocess.run(
        [sys.executable, "-m", "indexer.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    assert json.loads(built.stdout)["status"] == "published"

    async def main() -> list[dict[str, object]]:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "server.cli", "serve", "--stdio"], env=env
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool("search", {"query": "how does reciprocal rank fusion work"})
            assert not result.is_error
            return list((result.structured_content or {})["hits"])

    hits = anyio.run(main)
    assert hits and hits[0]["collection"] == "docgate-docs"

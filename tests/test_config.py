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

from indexer.settings import IndexerSettings
from server.settings import RetrievalSettings, ServerSettings, SettingsError
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


def test_a_misspelled_key_in_the_config_file_is_refused_with_the_valid_keys(tmp_path):
    config = tmp_path / "docgate.toml"
    config.write_text("[retrieval]\nrrf = 30\n", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        ServerSettings.load(config)
    message = str(caught.value)
    assert "\n" not in message
    assert "'retrieval.rrf'" in message and str(config) in message
    assert "did you mean 'rrf_k'?" in message
    for key in RetrievalSettings.model_fields:
        assert key in message


@pytest.mark.parametrize(
    ("toml", "location", "valid"),
    [
        ("[answer.grounding]\nthreshhold = 0.4\n", "answer.grounding.threshhold", "relevance_threshold"),
        (
            "[answer]\nbackend = 'openai'\n[answer.provider]\nkind = 'openai'\nbase_url = 'http://x'\n"
            "model = 'm'\ntimeout = 3\n",
            "answer.provider.timeout",
            "connect_timeout_s",
        ),
        ("log_levl = 'DEBUG'\n", "log_levl", "log_level"),
        ("[serve]\nport = 9000\n", "serve.port", "reload_interval_s"),
        ("[collections.django]\ndefault = '3.2'\n", "collections.django.default", "default_version"),
    ],
)
def test_misspelled_keys_in_nested_tables_are_refused(tmp_path, toml, location, valid):
    config = tmp_path / "docgate.toml"
    config.write_text(toml, encoding="utf-8")
    with pytest.raises(SettingsError, match=rf"unknown setting '{location}' .*valid keys of .*{valid}"):
        ServerSettings.load(config)


def test_a_misspelled_environment_variable_is_refused(monkeypatch):
    monkeypatch.setenv("DOCGATE_RETRIEVAL__RRF", "30")
    with pytest.raises(
        SettingsError, match=r"'retrieval.rrf' in environment variable DOCGATE_RETRIEVAL__RRF"
    ):
        ServerSettings.load()
    monkeypatch.delenv("DOCGATE_RETRIEVAL__RRF")
    monkeypatch.setenv("DOCGATE_RETREIVAL__RRF_K", "30")
    with pytest.raises(SettingsError, match=r"table 'retreival' .*did you mean 'retrieval'"):
        IndexerSettings.load()
    monkeypatch.delenv("DOCGATE_RETREIVAL__RRF_K")
    monkeypatch.setenv("DOCGATE_ANSWER__GROUNDING__THRESHHOLD", "0.1")
    with pytest.raises(SettingsError, match=r"'answer.grounding.threshhold' in environment variable"):
        ServerSettings.load()
    monkeypatch.delenv("DOCGATE_ANSWER__GROUNDING__THRESHHOLD")
    monkeypatch.setenv("DOCGATE_LOG_LEVL", "DEBUG")
    with pytest.raises(SettingsError, match=r"DOCGATE_LOG_LEVL \(did you mean 'log_level'\?\)"):
        ServerSettings.load()


def test_per_collection_settings_come_from_the_file_or_the_environment(monkeypatch, tmp_path):
    config = tmp_path / "docgate.toml"
    config.write_text("[collections.django]\ndefault_version = '3.2'\n", encoding="utf-8")
    assert ServerSettings.load(config).default_version("django") == "3.2"
    assert ServerSettings.load(config).default_version("fastapi") == "latest"
    monkeypatch.setenv("DOCGATE_COLLECTIONS__FASTAPI__DEFAULT_VERSION", "0.x")
    assert ServerSettings.load(config).default_version("fastapi") == "0.x"
    monkeypatch.setenv("DOCGATE_COLLECTIONS__FASTAPI__DEFAULT_VERSON", "0.x")
    with pytest.raises(SettingsError, match=r"'collections.fastapi.default_verson' in environment variable"):
        ServerSettings.load(config)


def test_unrelated_docgate_variables_such_as_provider_keys_are_left_alone(monkeypatch):
    # A provider's api_key_env may name any variable, DOCGATE_* included: not a setting, not a typo.
    monkeypatch.setenv("DOCGATE_OPENAI_KEY", "sk-test")
    assert ServerSettings.load().log_level == "INFO"


def test_short_environment_names_fill_their_tables_and_beat_the_long_forms(monkeypatch, tmp_path):
    config = tmp_path / "docgate.toml"
    config.write_text("[serve]\ntenant = 'from-file'\n", encoding="utf-8")
    assert ServerSettings.load(config).serve.tenant == "from-file"
    monkeypatch.setenv("DOCGATE_TENANT", "acme")
    monkeypatch.setenv("DOCGATE_AUTH__TENANTS_FILE", "/long/tenants.toml")
    monkeypatch.setenv("DOCGATE_TENANTS_FILE", "/short/tenants.toml")
    settings = ServerSettings.load(config)
    assert settings.serve.tenant == "acme"
    assert settings.auth.tenants_file == Path("/short/tenants.toml")
    # The short forms are environment-only: no second place for the value in a dump.
    assert "short_tenant" not in settings.model_dump()


def test_an_invalid_value_names_its_key_and_source(monkeypatch):
    monkeypatch.setenv("DOCGATE_RETRIEVAL__RRF_K", "0")
    with pytest.raises(SettingsError, match=r"invalid value for 'retrieval.rrf_k' in environment variable"):
        ServerSettings.load()


@pytest.mark.parametrize(
    "command",
    [
        ["server.cli", "serve", "--stdio"],
        ["server.cli", "search", "anything"],
        ["indexer.cli", "build"],
        ["indexer.cli", "list"],
    ],
    ids=["docgate-serve", "docgate-search", "docgate-index-build", "docgate-index-list"],
)
def test_a_settings_typo_stops_every_command_with_one_line_and_exit_2(tmp_path, command):
    config = tmp_path / "docgate.toml"
    config.write_text("[retrieval]\nrrf = 30\n", encoding="utf-8")
    if command[1] == "build":
        command = ["indexer.cli", "build", "--source", str(tmp_path), "--collection", "c"]
    env = {**server_env(tmp_path / "data"), "DOCGATE_CONFIG": str(config)}
    result = subprocess.run(
        [sys.executable, "-m", *command], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: unknown setting 'retrieval.rrf'")
    assert "rrf_k" in lines[0] and "Traceback" not in result.stderr


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
                # Single-user servers take no key; with a tenants file the key goes in a header.
                if "headers" in server:
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


@pytest.mark.parametrize(
    ("args", "said", "served"),
    [
        ((), ["over stdio", '"args": ["serve", "--stdio"]', "Ctrl-C"], "serve --stdio"),
        (
            ("--http", "127.0.0.1:8799"),
            ["http://127.0.0.1:8799/mcp", "Ctrl-C"],
            "serve --http 127.0.0.1:8799",
        ),
    ],
)
def test_quickstart_says_how_to_connect_and_how_to_stop(tmp_path, args, said, served):
    """The script as it runs, with setup and the two commands replaced by stubs that record their arguments."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "quickstart", root / "scripts" / "quickstart")
    (root / "scripts" / "setup").write_text("#!/usr/bin/env bash\n", encoding="utf-8")
    (root / "scripts" / "setup").chmod(0o755)
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "activate").write_text(f'export PATH="{bin_dir}:$PATH"\n', encoding="utf-8")
    for command in ("docgate", "docgate-index"):
        stub = bin_dir / command
        stub.write_text(f'#!/usr/bin/env bash\necho "{command} $*" >> "{tmp_path}/calls"\n', encoding="utf-8")
        stub.chmod(0o755)
    done = subprocess.run(
        ["bash", str(root / "scripts" / "quickstart"), *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for text in said:
        assert text in done.stderr
    calls = (tmp_path / "calls").read_text(encoding="utf-8").splitlines()
    assert calls[0].startswith("docgate-index update --collection docgate-docs")
    assert calls[1] == f"docgate {served}"


def test_default_data_dirs_are_the_ones_the_readme_lists(monkeypatch, tmp_path):
    """README, Claude Desktop: the data dir without DOCGATE_DATA_DIR on Linux and macOS (Windows's
    `%LOCALAPPDATA%\\docgate` comes from the same platformdirs call and cannot be resolved here)."""
    import platformdirs.macos

    from indexer.settings import default_data_dir

    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".local" / "share" / "docgate"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "docgate"
    monkeypatch.delenv("XDG_DATA_HOME")
    mac = Path(platformdirs.macos.MacOS("docgate", appauthor=False).user_data_dir)
    assert mac == tmp_path / "Library" / "Application Support" / "docgate"

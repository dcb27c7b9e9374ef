"""`docgate`: serve | search | keys | audit.

`serve --stdio` speaks MCP on stdin/stdout (logs go to stderr only); `serve --http HOST:PORT`
serves streamable HTTP at /mcp. Without a tenants file the server is single-user and refuses
to bind anything but loopback.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path
from typing import Annotated

import anyio
import typer

from indexer.commands import command_app, version_option
from indexer.errors import IndexerError
from indexer.logs import configure_logging
from server.cli.admin import audit_app, keys_app
from server.observability.traces import trace_app
from server.settings import ServerSettings

app = command_app("docgate", "Documentation server for AI agents (Model Context Protocol).")
VersionFlag = Annotated[bool, version_option("docgate")]


@app.callback()
def _logging(version: VersionFlag = False) -> None:
    """Logs go to stderr from the first line on: stdout carries MCP messages and `--json` output."""
    configure_logging("INFO")


app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(trace_app, name="trace")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML settings file (default: DOCGATE_CONFIG).")
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(code)


def _settings(config: Path | None) -> ServerSettings:
    try:
        settings = ServerSettings.load(config)
    except (FileNotFoundError, ValueError) as error:
        _fail(str(error).splitlines()[0])
    configure_logging(settings.log_level)
    return settings


def parse_bind(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"expected HOST:PORT, e.g. 127.0.0.1:8765, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    stdio: Annotated[
        bool, typer.Option("--stdio", help="Serve MCP over stdin/stdout (for Claude Desktop, IDEs).")
    ] = False,
    http: Annotated[
        str | None, typer.Option("--http", help="Serve streamable HTTP on HOST:PORT (path /mcp).")
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", envvar="DOCGATE_TENANT", help="Tenant for stdio (the local operator)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Serve every published collection over MCP; new generations are picked up without restart."""
    if stdio == (http is not None):
        _fail("choose exactly one of --stdio or --http HOST:PORT")
    settings = _settings(config)
    if tenant:
        settings.serve.tenant = tenant
    from server.mcp.app import create_mcp_server
    from server.observability import otel

    otel.configure()  # before the server exists: the SDK's spans and docgate's share its provider
    from server.runtime import build_runtime

    try:
        runtime = build_runtime(settings)
        runtime.registry.tenant(settings.serve.tenant) if stdio else None
    except (IndexerError, OSError) as error:
        _fail(str(error), getattr(error, "exit_code", 1))
    except LookupError as error:
        _fail(f"{error}; check --tenant and the tenants file")
    except Exception as error:  # tenants file problems carry their own one-line message
        _fail(str(error).splitlines()[0] if str(error) else type(error).__name__)
    if stdio:
        mcp, _ = create_mcp_server(runtime, "stdio")
        anyio.run(mcp.run_stdio_async)  # the runtime is the server's lifespan: closed when stdio ends
        return
    assert http is not None
    host, port = parse_bind(http)
    if runtime.registry.single_user and not is_loopback(host):
        _fail(
            f"refusing to bind {host}: without a tenants file docgate is single-user and serves loopback only; "
            "set auth.tenants_file (DOCGATE_TENANTS_FILE) to require API keys"
        )
    import uvicorn

    from server.mcp.http import create_http_app

    asgi, _ = create_http_app(runtime, host, port)
    uvicorn.run(asgi, host=host, port=port, log_level="warning", access_log=False, lifespan="on")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Question or keywords.")],
    collection: Annotated[
        list[str] | None, typer.Option("--collection", "-c", help="Collection (repeatable).")
    ] = None,
    version: Annotated[str | None, typer.Option("--version")] = None,
    k: Annotated[int, typer.Option("-k")] = 8,
    tenant: Annotated[str | None, typer.Option("--tenant", envvar="DOCGATE_TENANT")] = None,
    config: ConfigOption = None,
) -> None:
    """Run the search tool's core from the shell and print its JSON result."""
    settings = _settings(config)
    from server.errors import ServiceError
    from server.retrieval.service import Access
    from server.runtime import build_runtime
    from server.security import guards

    try:
        runtime = build_runtime(settings)
        try:
            grant = runtime.registry.tenant(tenant or settings.serve.tenant)
            result = runtime.service.search(
                Access(grant.name, grant.may_read),
                guards.validate_query(query),
                collections=guards.validate_collections(collection or None),
                version=version,
                k=guards.validate_k(k),
            ).result
        finally:
            anyio.run(runtime.aclose)
    except (IndexerError, ServiceError, guards.InvalidArgument, LookupError) as error:
        _fail(str(error))
    sys.stdout.write(json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")


@app.command("eval")
def eval_command(
    dataset: Annotated[Path, typer.Argument(help="JSONL eval cases (see tests/evals/README.md).")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection to evaluate.")],
    version: Annotated[
        str | None, typer.Option("--version", help="Version filter for cases without their own.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="Earlier report; exit 3 if a headline metric dropped.")
    ] = None,
    tolerance: Annotated[
        float, typer.Option("--tolerance", min=0.0, max=1.0, help="Allowed absolute drop per metric.")
    ] = 0.02,
    answers: Annotated[
        bool, typer.Option("--answers/--no-answers", help="Also evaluate grounded answers.")
    ] = True,
    agent: Annotated[
        bool,
        typer.Option(
            "--agent/--no-agent", help="Also compare search, search + fetch_chunk and search + read_page."
        ),
    ] = True,
    config: ConfigOption = None,
) -> None:
    """Measure retrieval (bm25, dense, hybrid, hybrid+rewrites) and answers over a labelled dataset."""
    settings = _settings(config)
    from rich.console import Console

    from server.errors import ServiceError
    from server.evals.render import render
    from server.evals.report import compare, load_report
    from server.evals.runner import run_eval
    from server.runtime import build_runtime

    try:
        previous = load_report(baseline) if baseline is not None else None
        runtime = build_runtime(settings)
        try:
            report = run_eval(
                settings,
                runtime.service,
                runtime.answerer if answers else None,
                dataset,
                collection=collection,
                version=version,
                progress=lambda step: print(f"eval: {step}", file=sys.stderr),
                agent=agent,
            )
        finally:
            anyio.run(runtime.aclose)
    except (IndexerError, ServiceError, OSError, ValueError) as error:
        _fail(str(error).splitlines()[0] if str(error) else type(error).__name__)
    regressions = compare(report, previous, tolerance) if previous is not None else []
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    render(report, Console(width=None if sys.stdout.isatty() else 120), regressions)
    if previous is not None and previous.dataset_sha256 != report.dataset_sha256:
        sys.stderr.write("warning: the baseline was made from a different version of this dataset\n")
    if regressions:
        sys.stderr.write(
            f"error: {len(regressions)} metric(s) regressed beyond {tolerance} against {baseline}\n"
        )
        raise typer.Exit(3)


def main() -> None:
    app()

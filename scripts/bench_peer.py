"""Side-by-side benchmark: docgate against the official Qdrant MCP server, same chunks, same model.

Usage:
    python scripts/bench_peer.py --data-dir DIR [--collection django] [--work /tmp/docgate-peer]
                                 [--single 200] [--clients 20] [--requests 1000]
                                 [--out docs/bench/bench_peer.json]

The peer is `mcp-server-qdrant` 0.8.1 (dense search only, Qdrant in embedded mode), installed by
this script into its own virtual environment (`--peer-venv`, default /tmp/peer-venv); it is never
a dependency of docgate. Both servers get:

- the same texts: every chunk of the collection, as docgate embedded it (`Chunk.embedding_text`),
  stored in the peer through its own `qdrant-store` tool (once; `--work` keeps the store for reuse);
- the same model files: docgate's assembled all-MiniLM-L6-v2 is copied into a Hugging Face cache
  layout under the peer's `FASTEMBED_CACHE_PATH`, and the peer runs with `HF_HUB_OFFLINE=1`;
- the same transport and clients: streamable HTTP, MCP Python SDK `ClientSession`s (one HTTP
  connection and MCP session each), the questions of the eval sets in one seeded order.

Two phases per server, servers measured one after the other in one run (the other one idles):
`single` (one client, calls back to back) and `concurrent` (`--clients` clients sharing
`--requests` calls back to back). Docgate answers `search(k=10)`, the peer `qdrant-find` with
`QDRANT_SEARCH_LIMIT=10`. Docgate's query-vector cache is off unless `--query-cache` is given: the
question set is small and repeats, and a cache hit would skip exactly the work the peer must do.

The report has per phase and server: calls/s, client-side p50/p95, server CPU per call (the
server process's user + system CPU time over the phase / calls, from /proc), docgate's per-stage
breakdown from its trace events, and the ratios docgate / peer.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/bench_peer.py` from a checkout
    sys.path.insert(0, str(REPO))

from bench_common import (  # noqa: E402
    free_port,
    latency_summary,
    load_average,
    machine_info,
    running,
    say,
    write_report,
)
from bench_load import Tally, call, load_questions, session_at  # noqa: E402

from server.observability.traces import read_events  # noqa: E402

PEER_PACKAGE = "mcp-server-qdrant==0.8.1"
PEER_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PEER_REPO_DIR = "models--Qdrant--all-MiniLM-L6-v2-onnx"
# Any fixed 40-hex name: the snapshot is ours, not a download.
PEER_SNAPSHOT = "0" * 40
STARTUP_TIMEOUT_S = 180.0
STORE_CONCURRENCY = 4
K = 10


# ---------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the peer


def ensure_peer_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import mcp_server_qdrant"]
    if python.is_file() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    say(f"installing {PEER_PACKAGE} into {venv} …")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", PEER_PACKAGE], check=True)
    return python


def peer_model_cache(model_dir: Path, cache: Path) -> Path:
    """docgate's model files in the Hugging Face cache layout fastembed resolves offline."""
    repo = cache / PEER_REPO_DIR
    snapshot = repo / "snapshots" / PEER_SNAPSHOT
    snapshot.mkdir(parents=True, exist_ok=True)
    for source in model_dir.iterdir():
        if source.is_file():
            shutil.copyfile(source, snapshot / source.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(PEER_SNAPSHOT)
    return cache


def peer_env(work: Path, cache: Path, port: int, collection: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCGATE_", "FASTMCP_", "QDRANT_"))}
    env.update(
        HF_HUB_OFFLINE="1",
        FASTEMBED_CACHE_PATH=str(cache),
        QDRANT_LOCAL_PATH=str(work / "peer-qdrant"),
        COLLECTION_NAME=collection,
        QDRANT_SEARCH_LIMIT=str(K),
        EMBEDDING_MODEL=PEER_MODEL,
        FASTMCP_SERVER_HOST="127.0.0.1",
        FASTMCP_SERVER_PORT=str(port),
        FASTMCP_LOG_LEVEL="WARNING",
    )
    return env


async def store_all(url: str, texts: Sequence[tuple[str, str]]) -> None:
    """Every text through the peer's own `qdrant-store` tool, a few clients at a time."""
    queue = list(texts)
    done = 0

    async def worker() -> None:
        nonlocal done
        async with session_at(url) as session:
            while queue:
                chunk_id, text = queue.pop()
                result, message = await call_text(
                    session, "qdrant-store", {"information": text, "metadata": {"chunk_id": chunk_id}}
                )
                if result is None:
                    raise RuntimeError(f"qdrant-store failed: {message}")
                done += 1
                if done % 200 == 0:
                    say(f"  stored {done}/{len(texts)}")

    async with anyio.create_task_group() as group:
        for _ in range(STORE_CONCURRENCY):
            group.start_soon(worker)


async def call_text(session: Any, tool: str, arguments: dict[str, Any]) -> tuple[str | None, str]:
    """A tool's text result (the peer returns text, not structured content), or None and the error."""
    result = await session.call_tool(tool, arguments)
    text = "".join(getattr(part, "text", "") for part in result.content)
    if result.is_error:
        return None, text or "tool error without text"
    return text, ""


# ---------------------------------------------------------------- measuring


async def run_phase(
    url: str, pid: int, tool: str, argument: str, queries: Sequence[str], clients: int, requests: int
) -> tuple[Tally, float, float]:
    """`clients` sessions, one untimed warm-up call each, then `requests` calls shared back to back."""
    tally = Tally(remaining=requests, latencies={tool: []}, errors={tool: 0})
    order = iter(range(10**9))
    ready, go = anyio.Event(), anyio.Event()
    arrived: list[int] = []

    async def client(number: int) -> None:
        async with session_at(url) as session:
            await session.call_tool(tool, {argument: queries[number % len(queries)], **extra(tool)})
            arrived.append(number)
            if len(arrived) == clients:
                ready.set()
            await go.wait()
            while tally.take():
                query = queries[next(order) % len(queries)]
                started = time.perf_counter()
                ok = False
                try:
                    if tool == "search":
                        structured, message = await call(session, tool, {argument: query, **extra(tool)})
                        ok = structured is not None
                    else:
                        text, message = await call_text(session, tool, {argument: query})
                        ok = text is not None
                except Exception as exc:  # transport failures count as errors, the run goes on
                    message = f"{type(exc).__name__}: {exc}"
                tally.latencies[tool].append((time.perf_counter() - started) * 1000)
                if not ok:
                    tally.error(tool, message)

    async with anyio.create_task_group() as group:
        for number in range(clients):
            group.start_soon(client, number)
        with anyio.fail_after(STARTUP_TIMEOUT_S):
            await ready.wait()
        # CPU from here on: sessions and warm-up calls are set up, only the timed calls remain.
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        go.set()
    return tally, time.perf_counter() - started, cpu_seconds(pid) - cpu_before


def extra(tool: str) -> dict[str, Any]:
    return {"k": K} if tool == "search" else {}


def measure(
    url: str, pid: int, tool: str, argument: str, queries: Sequence[str], clients: int, requests: int
) -> dict[str, Any]:
    load_before = load_average()
    tally, elapsed, cpu = anyio.run(run_phase, url, pid, tool, argument, queries, clients, requests)
    latencies = tally.latencies[tool]
    done = len(latencies)
    return {
        "clients": clients,
        "calls": done,
        "duration_s": round(elapsed, 3),
        "calls_per_s": round(done / elapsed, 2) if elapsed > 0 else 0.0,
        "latency": latency_summary(latencies),
        "server_cpu_s": round(cpu, 3),
        # The server process's CPU from the start signal to the last answer, over the timed calls.
        "server_cpu_ms_per_call": round(cpu * 1000 / done, 2) if done else None,
        "errors": tally.errors[tool],
        "error_samples": tally.samples,
        "load_average_before": load_before,
    }


def stage_breakdown(log_path: Path, skip_lines: int) -> dict[str, Any]:
    """Mean and p50 of docgate's in-server latency and of each span, over the phase's search calls."""
    with log_path.open(encoding="utf-8", errors="replace") as handle:
        lines = handle.readlines()[skip_lines:]
    events, _ = read_events(lines)
    events = [e for e in events if e.get("tool") == "search" and e.get("outcome") == "ok"]
    series: dict[str, list[float]] = {"in_server_total": [float(e["latency_ms"]) for e in events]}
    for event in events:
        for name, value in (event.get("spans_ms") or {}).items():
            series.setdefault(name, []).append(float(value))
    out = {}
    for name, values in series.items():
        # A span a call did not have (e.g. "deepen") counts as zero in the mean over all calls.
        out[name] = {
            "mean_ms": round(sum(values) / len(events), 3) if events else 0.0,
            "p50_ms": latency_summary(values)["p50_ms"],
            "calls_with_span": len(values),
        }
    return {"calls": len(events), "stages": out}


def line_count(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


# ---------------------------------------------------------------- the run


def collection_texts(data_dir: Path, collection: str) -> tuple[list[tuple[str, str]], Path]:
    """(chunk_id, embedded text) of every chunk, and the model directory docgate embedded them with."""
    from indexer.embedding import assemble_offline_model
    from server.retrieval.catalog import open_snapshot
    from server.settings import ServerSettings

    settings = ServerSettings.load(None, data_dir=data_dir)
    snapshot = open_snapshot(settings, collection, settings.embedding.model, None)
    texts = [(chunk.chunk_id, chunk.embedding_text()) for chunk in snapshot.lexical.iter_chunks()]
    model_dir = settings.embedding.model_dir or assemble_offline_model(
        settings.models_dir, settings.embedding.max_length
    )
    return sorted(texts), Path(model_dir)


def run(args: argparse.Namespace) -> dict[str, Any]:
    machine = machine_info()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    texts, model_dir = collection_texts(args.data_dir, args.collection)
    say(f"{len(texts)} chunks of {args.collection!r}; model files from {model_dir}")
    peer_python = ensure_peer_venv(args.peer_venv)
    cache = peer_model_cache(model_dir, work / "fastembed-cache")

    queries = load_questions()
    random.Random(args.seed).shuffle(queries)

    # docgate serves a copy: it writes its own state (cursor key, audit log, usage) into its data dir.
    serve_dir = work / "docgate-data"
    if serve_dir.exists():
        shutil.rmtree(serve_dir)
    shutil.copytree(args.data_dir, serve_dir, ignore=shutil.ignore_patterns("audit", "server"))
    docgate_port, peer_port = free_port(), free_port()
    docgate_env = {k: v for k, v in os.environ.items() if not k.startswith("DOCGATE_")}
    docgate_env["DOCGATE_DATA_DIR"] = str(serve_dir)
    if not args.query_cache:
        docgate_env["DOCGATE_EMBEDDING__QUERY_CACHE_SIZE"] = "0"
    docgate_log, peer_log = work / "docgate.log", work / "peer.log"
    docgate_cmd = [sys.executable, "-m", "server.cli", "serve", "--http", f"127.0.0.1:{docgate_port}"]
    peer_cmd = [str(peer_python.parent / "mcp-server-qdrant"), "--transport", "streamable-http"]
    peer_url = f"http://127.0.0.1:{peer_port}/mcp/"
    docgate_url = f"http://127.0.0.1:{docgate_port}/mcp"

    marker = work / "peer-qdrant" / "docgate-stored.json"
    wanted = {"collection": args.collection, "chunks": len(texts), "ids": ids_digest(texts)}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        say("peer store already holds these chunks: reusing it")
    else:
        shutil.rmtree(work / "peer-qdrant", ignore_errors=True)
        say(f"storing {len(texts)} chunks through the peer's qdrant-store (it embeds each one) …")
        with running(
            peer_cmd,
            peer_env(work, cache, peer_port, args.collection),
            peer_port,
            peer_log,
            startup_timeout_s=STARTUP_TIMEOUT_S,
        ):
            anyio.run(store_all, peer_url, texts)
        marker.write_text(json.dumps(wanted))

    report: dict[str, Any] = {
        "benchmark": "peer",
        "collection": args.collection,
        "chunks": len(texts),
        "k": K,
        "peer": PEER_PACKAGE,
        "docgate_query_cache": bool(args.query_cache),
        "questions": len(queries),
        "phases": {},
    }
    with (
        running(
            docgate_cmd, docgate_env, docgate_port, docgate_log, startup_timeout_s=STARTUP_TIMEOUT_S
        ) as docgate_process,
        running(
            peer_cmd,
            peer_env(work, cache, peer_port, args.collection),
            peer_port,
            peer_log,
            startup_timeout_s=STARTUP_TIMEOUT_S,
        ) as peer_process,
    ):
        for phase, clients, requests in (
            ("single", 1, args.single),
            ("concurrent", args.clients, args.requests),
        ):
            say(f"{phase}: docgate …")
            skip = line_count(docgate_log)
            docgate = measure(docgate_url, docgate_process.pid, "search", "query", queries, clients, requests)
            docgate["stages"] = stage_breakdown(docgate_log, skip)
            say(f"{phase}: peer …")
            peer = measure(peer_url, peer_process.pid, "qdrant-find", "query", queries, clients, requests)
            report["phases"][phase] = {
                "docgate": docgate,
                "peer": peer,
                "ratios_docgate_to_peer": {
                    "calls_per_s": ratio(docgate["calls_per_s"], peer["calls_per_s"]),
                    "p50": ratio(docgate["latency"]["p50_ms"], peer["latency"]["p50_ms"]),
                    "p95": ratio(docgate["latency"]["p95_ms"], peer["latency"]["p95_ms"]),
                    "server_cpu_per_call": ratio(
                        docgate["server_cpu_ms_per_call"], peer["server_cpu_ms_per_call"]
                    ),
                },
            }
    single = report["phases"]["single"]
    concurrent = report["phases"]["concurrent"]["ratios_docgate_to_peer"]
    report["targets"] = {
        "docgate_cpu_ms_per_search_le_15": (single["docgate"]["server_cpu_ms_per_call"] or 1e9) <= 15,
        "docgate_single_p50_le_15_ms": single["docgate"]["latency"]["p50_ms"] <= 15,
        "concurrent_calls_per_s_ge_1_5x_peer": (concurrent["calls_per_s"] or 0) >= 1.5,
        "concurrent_p95_le_0_6x_peer": (concurrent["p95"] or 1e9) <= 0.6,
    }
    report["machine"] = machine
    report["load_average_at_end"] = load_average()
    return report


def ids_digest(texts: Sequence[tuple[str, str]]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(chunk_id for chunk_id, _ in texts).encode()).hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="Data dir with the published collection."
    )
    parser.add_argument("--collection", default="django")
    parser.add_argument("--work", type=Path, default=Path("/tmp/docgate-peer"), help="Scratch dir (kept).")
    parser.add_argument("--peer-venv", type=Path, default=Path("/tmp/peer-venv"))
    parser.add_argument("--single", type=int, default=200, help="Timed calls of the one-client phase.")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=1000, help="Timed calls of the concurrent phase.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--query-cache", action="store_true", help="Keep docgate's query-vector cache on.")
    parser.add_argument("--out", type=Path, help="Write the JSON report here.")
    args = parser.parse_args(argv)
    if args.single < 1 or args.clients < 1 or args.requests < 1:
        parser.error("--single, --clients and --requests must be at least 1")
    if not (args.data_dir / "collections" / args.collection).is_dir():
        parser.error(f"{args.data_dir} holds no collection {args.collection!r}; build it first")
    report = run(args)
    if args.out is not None:
        write_report(args.out, report)
    summary = {
        phase: values["ratios_docgate_to_peer"]
        | {
            "docgate_cpu_ms_per_call": values["docgate"]["server_cpu_ms_per_call"],
            "peer_cpu_ms_per_call": values["peer"]["server_cpu_ms_per_call"],
            "docgate_p50_ms": values["docgate"]["latency"]["p50_ms"],
            "peer_p50_ms": values["peer"]["latency"]["p50_ms"],
        }
        for phase, values in report["phases"].items()
    }
    sys.stdout.write(json.dumps({"phases": summary, "targets": report["targets"]}, indent=2) + "\n")
    errors = sum(v[s]["errors"] for v in report["phases"].values() for s in ("docgate", "peer"))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

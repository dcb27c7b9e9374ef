"""Load benchmark: N concurrent MCP clients over streamable HTTP against a real `docgate serve --http`.

Usage:
    python scripts/bench_load.py [--data-dir DIR] [--clients 20] [--requests 1000]
                                 [--fetch-ratio 0.3] [--out reports/bench_load.json]

The script starts the server itself on a free loopback port. With `--data-dir` the index there
is copied to a temporary directory first (the server writes its own state files — cursor key,
token usage, audit log — into its data dir, and a benchmark must not touch a real one; pass
`--in-place` to skip the copy). Without `--data-dir` the small fixture corpus is indexed first.

Every client is a real MCP `ClientSession` with its own HTTP connection and MCP session. After
one untimed warm-up search per client, the clients share a fixed budget of `--requests` tool
calls: each call is a `search` with a question from the eval sets, or — with probability
`--fetch-ratio` — a `fetch_chunk` (with neighbours) of a hit from that client's previous search.
By default calls go back to back (a saturation test: latency is mostly queueing once the CPU is
busy); `--think-ms` makes each client pause around that long before every call, like an agent
that reads what it got.
The report has throughput, p50/p95/p99 latency per tool as the client saw it, errors with a few
samples, and the server's own per-span latencies from its `tool_call` trace events.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/bench_load.py` from a checkout
    sys.path.insert(0, str(REPO))

from bench_common import free_port, latency_summary, machine_info, running, write_report  # noqa: E402

from server.observability.traces import percentile, summarize_file  # noqa: E402

FIXTURE_CORPUS = REPO / "tests" / "fixtures" / "corpus"
QUESTION_SETS = (REPO / "tests" / "evals" / "django.jsonl", REPO / "tests" / "evals" / "mcp-spec.jsonl")
# Questions about the fixture corpus, so a run on it also has queries that match well.
FIXTURE_QUESTIONS = (
    "How do I call build_site from Python?",
    "LUMEN_CACHE_DIR",
    "Where does the build cache live?",
    "How do I switch to the ink theme?",
    "template errors stop the build",
    "Can page names contain accents?",
    "publish a page on a future date",
    "BuildReport pages_skipped",
)
SEARCH_P95_TARGET_MS = 150.0
STARTUP_TIMEOUT_S = 120.0


def load_questions(paths: Sequence[Path] = QUESTION_SETS) -> list[str]:
    """Questions of the eval sets that exist, plus the fixture questions."""
    questions = list(FIXTURE_QUESTIONS)
    for path in paths:
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    questions.append(str(json.loads(line)["question"]))
    return questions


def build_fixture_index(data_dir: Path) -> None:
    """Index the fixture corpus as collection `lumen` (seconds)."""
    from indexer.build import BuildRequest, build_collection
    from server.settings import ServerSettings

    settings = ServerSettings.load(None, data_dir=data_dir)
    build_collection(settings, BuildRequest(collection="lumen", source=FIXTURE_CORPUS, version="1.0"))


@contextlib.contextmanager
def serve(data_dir: Path, log_path: Path) -> Iterator[str]:
    """`docgate serve --http` on a free loopback port until the block ends; yields the MCP URL."""
    port = free_port()
    env = dict(os.environ)
    env["DOCGATE_DATA_DIR"] = str(data_dir)
    command = [sys.executable, "-m", "server.cli", "serve", "--http", f"127.0.0.1:{port}"]
    with running(command, env, port, log_path, startup_timeout_s=STARTUP_TIMEOUT_S):
        yield f"http://127.0.0.1:{port}/mcp"


@dataclass
class Tally:
    """Shared by all clients: the request budget and what each call took."""

    remaining: int
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"search": [], "fetch_chunk": []})
    errors: dict[str, int] = field(default_factory=lambda: {"search": 0, "fetch_chunk": 0})
    samples: list[str] = field(default_factory=list)

    def take(self) -> bool:
        # Clients run on one event loop, so this check-and-decrement is never interleaved.
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True

    def error(self, tool: str, message: str) -> None:
        self.errors[tool] += 1
        if len(self.samples) < 10:
            self.samples.append(f"{tool}: {message[:300]}")


@contextlib.asynccontextmanager
async def session_at(url: str) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(timeout=60) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def call(
    session: ClientSession, tool: str, arguments: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """The structured result, or None and the error text."""
    result = await session.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        text = getattr(result.content[0], "text", "") if result.content else ""
        return None, text or "tool error without text"
    return dict(result.structured_content), ""


async def client(
    url: str,
    number: int,
    questions: Sequence[str],
    fetch_ratio: float,
    seed: int,
    tally: Tally,
    ready: anyio.Event,
    go: anyio.Event,
    arrived: list[int],
    clients: int,
    think_s: float,
) -> None:
    rng = random.Random(seed * 1000 + number)
    async with session_at(url) as session:
        await call(session, "search", {"query": rng.choice(questions), "k": 5})  # warm-up, untimed
        arrived.append(number)
        if len(arrived) == clients:
            ready.set()
        await go.wait()
        last_ids: list[str] = []
        while tally.take():
            if think_s > 0:  # a paced agent reads between calls: jittered around the mean
                await anyio.sleep(rng.uniform(0.5, 1.5) * think_s)
            if last_ids and rng.random() < fetch_ratio:
                tool = "fetch_chunk"
                arguments: dict[str, Any] = {"chunk_id": rng.choice(last_ids), "neighbors": 1}
            else:
                tool = "search"
                arguments = {"query": rng.choice(questions), "k": 8}
            started = time.perf_counter()
            try:
                result, message = await call(session, tool, arguments)
            except Exception as exc:  # transport failures count as errors, the run goes on
                result, message = None, f"{type(exc).__name__}: {exc}"
            tally.latencies[tool].append((time.perf_counter() - started) * 1000)
            if result is None:
                tally.error(tool, message)
            elif tool == "search":
                last_ids = [hit["chunk_id"] for hit in result["hits"]]


async def run_clients(
    url: str,
    clients: int,
    requests: int,
    fetch_ratio: float,
    seed: int,
    questions: Sequence[str],
    think_s: float = 0.0,
) -> tuple[Tally, float]:
    tally = Tally(remaining=requests)
    ready, go = anyio.Event(), anyio.Event()
    arrived: list[int] = []
    async with anyio.create_task_group() as group:
        for number in range(clients):
            group.start_soon(
                client, url, number, questions, fetch_ratio, seed, tally, ready, go, arrived, clients, think_s
            )
        with anyio.fail_after(STARTUP_TIMEOUT_S):
            await ready.wait()
        started = time.perf_counter()
        go.set()
    elapsed = time.perf_counter() - started
    return tally, elapsed


def run(
    data_dir: Path | None,
    *,
    clients: int,
    requests: int,
    fetch_ratio: float,
    seed: int,
    think_ms: float = 0.0,
    in_place: bool = False,
) -> dict[str, Any]:
    questions = load_questions()
    machine = machine_info()  # before the run: its load average is the context of every timing
    with tempfile.TemporaryDirectory(prefix="docgate-bench-load-") as scratch:
        work = Path(scratch)
        if data_dir is None:
            serve_dir = work / "data"
            build_fixture_index(serve_dir)
            source = "fixture corpus (collection lumen)"
        elif in_place:
            serve_dir, source = data_dir, str(data_dir)
        else:
            serve_dir, source = work / "data", str(data_dir)
            shutil.copytree(data_dir, serve_dir)
        log_path = work / "server.log"
        with serve(serve_dir, log_path) as url:
            tally, elapsed = anyio.run(
                run_clients, url, clients, requests, fetch_ratio, seed, questions, think_ms / 1000
            )
        server_side = summarize_file(log_path)

    done = sum(len(v) for v in tally.latencies.values())
    errors = sum(tally.errors.values())
    search_p95 = percentile(tally.latencies["search"], 95)
    return {
        "benchmark": "load",
        "data": source,
        "clients": clients,
        "requests": done,
        "fetch_ratio": fetch_ratio,
        "think_ms": think_ms,
        "seed": seed,
        "duration_s": round(elapsed, 3),
        "throughput_rps": round(done / elapsed, 2) if elapsed > 0 else 0.0,
        "errors": errors,
        "error_samples": tally.samples,
        "tools": {
            tool: {**latency_summary(v), "errors": tally.errors[tool]} for tool, v in tally.latencies.items()
        },
        "server": server_side.model_dump(mode="json"),
        "targets": {
            "search_p95_ms": SEARCH_P95_TARGET_MS,
            "search_p95_met": search_p95 <= SEARCH_P95_TARGET_MS,
            "zero_errors": errors == 0,
        },
        "machine": machine,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, help="Data dir with a published index (copied first).")
    parser.add_argument("--in-place", action="store_true", help="Serve --data-dir itself, without copying.")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=1000, help="Timed tool calls over all clients.")
    parser.add_argument("--fetch-ratio", type=float, default=0.3, help="Share of calls that are fetch_chunk.")
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="Mean pause of each client before a call (0: back-to-back calls, a saturation test).",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="Write the JSON report here.")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests < 1 or not 0 <= args.fetch_ratio <= 1 or args.think_ms < 0:
        parser.error(
            "--clients and --requests must be at least 1, --fetch-ratio within 0..1, --think-ms >= 0"
        )
    if args.data_dir is not None and not (args.data_dir / "collections").is_dir():
        parser.error(f"{args.data_dir} holds no collections/ folder; build an index there first")

    report = run(
        args.data_dir,
        clients=args.clients,
        requests=args.requests,
        fetch_ratio=args.fetch_ratio,
        seed=args.seed,
        think_ms=args.think_ms,
        in_place=args.in_place,
    )
    if args.out is not None:
        write_report(args.out, report)
    summary = {k: report[k] for k in ("clients", "requests", "duration_s", "throughput_rps", "errors")}
    sys.stdout.write(json.dumps({**summary, "tools": report["tools"]}, indent=2) + "\n")
    return 0 if report["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Shared pieces of the benchmark scripts: latency summaries, machine info, corpora, reports, servers.

The benchmark scripts print a short table on stdout and write the full figures as a JSON
report; nothing here asserts a timing, because timings depend on the machine and its load.
The end-to-end tests start their servers with `running` too.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from indexer.logs import configure_logging
from server.observability.traces import percentile

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "django-3.2-docs-html.tar.gz"
DEFAULT_EXCLUDE = ("faq/*",)  # the FAQ pages are the eval questions' answer key, never indexed
STOP_TIMEOUT_S = 15.0


def setup_logging() -> None:
    """Library logs to stderr, warnings only: stdout carries the summary table."""
    configure_logging("WARNING")


def latency_summary(values_ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max of a series of milliseconds, rounded for the report."""
    mean = sum(values_ms) / len(values_ms) if values_ms else 0.0
    return {
        "count": len(values_ms),
        "p50_ms": round(percentile(values_ms, 50), 3),
        "p95_ms": round(percentile(values_ms, 95), 3),
        "p99_ms": round(percentile(values_ms, 99), 3),
        "mean_ms": round(mean, 3),
        "max_ms": round(max(values_ms, default=0.0), 3),
    }


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.processor() or None
    for line in text.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def _memory_mb() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def load_average() -> list[float] | None:
    """1/5/15-minute load averages: on a shared machine, the context every timing needs."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare two reports: hardware, load at start, library versions."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_mb": _memory_mb(),
        "load_average_at_start": load_average(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {
            name: _version(name)
            for name in ("docgate", "fastembed", "onnxruntime", "tantivy", "qdrant-edge-py")
        },
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def extract_corpus(source: Path, target: Path) -> Path:
    """A folder of documents: `source` itself if it is a folder, else the unpacked tarball's root."""
    if source.is_dir():
        return source
    if not source.is_file():
        raise FileNotFoundError(
            f"corpus {source} not found; pass --corpus with a documentation folder or .tar.gz"
        )
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(source) as archive:
        archive.extractall(target, filter="data")
    children = [p for p in target.iterdir() if p.is_dir()]
    # Tarballs usually wrap the docs in one top folder; that folder is the corpus root.
    return children[0] if len(children) == 1 else target


def write_report(path: Path, report: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


Report = TypeVar("Report", bound=Mapping[str, Any])


def finish(out: Path, report: Report, print_summary: Callable[[Report], None]) -> int:
    """Write the JSON report to `out`, show its summary and where it went; the run's exit status."""
    path = write_report(out, report)
    print_summary(report)
    print(f"report written to {path}")
    return 0


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    table = Table(title=title, title_justify="left")
    for index, name in enumerate(columns):
        table.add_column(name, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    Console(width=120).print(table)


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if value and abs(value) < 0.01:
            return f"{value:.1e}"
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def say(message: str) -> None:
    """Progress for the person running the benchmark (stderr: stdout holds the results)."""
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(process: subprocess.Popen[bytes], port: int, log_path: Path, timeout_s: float) -> None:
    """Return once `process` accepts connections on loopback `port`; fail early if it exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not listen on port {port} within {timeout_s:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def running(
    command: Sequence[str], env: Mapping[str, str], port: int, log_path: Path, *, startup_timeout_s: float
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server (output to `log_path`), wait until it listens on `port`, yield it, stop it.

    The caller may end the process itself (a crash test kills it): stopping one that is gone is a no-op.
    """
    with log_path.open("w") as log:
        process = subprocess.Popen(
            list(command), cwd=REPO, env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_listening(process, port, log_path, startup_timeout_s)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                # A server stuck in shutdown must not outlive the run that started it.
                process.kill()
                process.wait()

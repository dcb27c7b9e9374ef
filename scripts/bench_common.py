"""Shared pieces of the benchmark scripts: latency summaries, machine info, corpora, reports.

The benchmark scripts print a short table on stdout and write the full figures as a JSON
report; nothing here asserts a timing, because timings depend on the machine and its load.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tarfile
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from indexer.logs import configure_logging
from server.observability.traces import percentile

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "django-3.2-docs-html.tar.gz"
DEFAULT_EXCLUDE = ("faq/*",)  # the FAQ pages are the eval questions' answer key, never indexed


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

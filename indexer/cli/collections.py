"""`docgate-index list`, `stats`, `verify` and `drop`: the published collections, looked at or removed."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from indexer import generations as gens
from indexer.cli.common import ConfigOption, JsonOption, emit_json, fail, indexer_command, stderr
from indexer.status import collection_stats, verify_collection

NameArgument = Annotated[str, typer.Argument(help="Collection name.")]


def list_(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List published collections."""
    rows = []
    with indexer_command(config) as settings:
        for name in gens.list_collections(settings.collections_dir):
            rows.append(collection_stats(settings, name, sizes=False))
    if as_json:
        emit_json(rows)
        return
    table = Table("collection", "version", "generation", "documents", "chunks", "model", "created_at")
    for row in rows:
        table.add_row(
            *(
                str(row[k])
                for k in ("collection", "version", "generation", "documents", "chunks", "model", "created_at")
            )
        )
    Console().print(table)


def stats(
    name: NameArgument,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Documents, chunks, generation, model, sizes and creation time of one collection."""
    with indexer_command(config) as settings:
        row = collection_stats(settings, name, sizes=True)
    if as_json:
        emit_json(row)
        return
    table = Table("field", "value")
    for key, value in row.items():
        table.add_row(key, _cell(value))
    Console().print(table)


def verify(
    name: NameArgument,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check the published generation: manifest consistent, Tantivy and vector ID sets identical."""
    with indexer_command(config) as settings:
        report = verify_collection(settings, name)
    if as_json:
        emit_json(report.model_dump())
    if not report.ok:
        fail(f"{name} generation {report.generation} is inconsistent: {'; '.join(report.problems)}", 4)
    if not as_json:
        stderr.print(f"{name}: generation {report.generation} ok ({report.chunks} chunks)")


def drop(name: NameArgument, config: ConfigOption = None) -> None:
    """Unpublish and delete a collection and all its generations."""
    with indexer_command(config) as settings:
        gens.drop_collection(settings.collections_dir, name)
    stderr.print(f"{name}: dropped")


def _cell(value: Any) -> str:
    # A mapping (the per-version dates) reads as `label: value` lines rather than a Python dict.
    if isinstance(value, dict):
        return "\n".join(f"{key}: {item if item is not None else '-'}" for key, item in value.items())
    return str(value)
